import Foundation
import Glibc

/// Where the package, its fixtures and the built `nstrace` are.
public enum Paths {
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures")

    /// The build products folder: the test runner lives beside the `nstrace` executable.
    public static let products: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On Linux the runner is `<products>/nstracePackageTests.xctest`; on some setups it sits one deeper.
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("nstrace").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }()

    public static var nstrace: String { products.appendingPathComponent("nstrace").path }

    /// A scratch folder for this test run, removed by nobody (it is under /tmp and small).
    public static let scratch: URL = {
        let url = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("nstrace-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
}

public struct CommandResult: CustomStringConvertible {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool

    public var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    public var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    public var description: String {
        "exit \(status)\(timedOut ? " (timed out)" : "")\n--- stdout\n\(stdout.prefix(4000))\n--- stderr\n\(stderr.prefix(4000))"
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a command to completion, killing it (and failing) after `timeout` seconds: a hung test is
/// worse than a red one.
public func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120,
                environment: [String: String]? = nil, stdin: String? = nil) throws -> CommandResult {
    let process = try Subprocess(executable, arguments, environment: environment, stdin: stdin)
    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    let outData = DrainedPipe(process.stdoutHandle), errData = DrainedPipe(process.stderrHandle)
    var timedOut = false
    if process.wait(timeout: timeout) == nil {
        timedOut = true
        process.kill(SIGKILL)
        _ = process.wait(timeout: 30)
    }
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: outData.wait(), as: UTF8.self),
                         stderr: String(decoding: errData.wait(), as: UTF8.self), timedOut: timedOut)
}

/// Reads a pipe to its end on a thread of its own.
public final class DrainedPipe: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    public init(_ handle: FileHandle?) {
        guard let handle else {
            done.signal()
            return
        }
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    public func wait() -> Data {
        done.wait()
        done.signal()
        return data
    }

    /// What the pipe held once its last writer closed it; nil if that took longer than `timeout`.
    public func wait(timeout: TimeInterval) -> Data? {
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        done.signal()
        return data
    }
}

/// Runs the built `nstrace`.
public func nstrace(_ arguments: [String], timeout: TimeInterval = 120,
                    environment: [String: String]? = nil) throws -> CommandResult {
    guard FileManager.default.isExecutableFile(atPath: Paths.nstrace) else {
        throw TestFailure("nstrace is not built at \(Paths.nstrace); run `swift build` first")
    }
    return try run(Paths.nstrace, arguments, timeout: timeout, environment: environment)
}

/// C fixtures under Tests/Fixtures, compiled with gcc at test time, once per flag set per run.
public enum Fixtures {
    private static let lock = NSLock()
    private static var built: [String: String] = [:]

    /// Compiles `Tests/Fixtures/<name>.c` (plus `extraSources`) and returns the executable's path.
    public static func build(_ name: String, flags: [String] = [], variant: String = "",
                             extraSources: [String] = []) throws -> String {
        let key = ([name, variant] + flags).joined(separator: " ")
        lock.lock()
        defer { lock.unlock() }
        if let path = built[key] { return path }
        let suffix = variant.isEmpty ? "\(built.count)" : variant
        let output = Paths.scratch.appendingPathComponent("\(name)-\(suffix)").path
        let sources = ([name] + extraSources).map { Paths.fixtures.appendingPathComponent("\($0).c").path }
        let result = try run("/usr/bin/gcc", sources + flags + ["-o", output], timeout: 120)
        guard result.status == 0 else { throw TestFailure("gcc \(name) \(flags) failed:\n\(result.stderr)") }
        built[key] = output
        return output
    }

    /// Compiles `Tests/Fixtures/<name>.cpp` with g++ and returns the executable's path.
    public static func buildCxx(_ name: String, flags: [String] = [], variant: String = "") throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/g++") else {
            throw TestFailure("g++ is not installed: the C++ fixtures need it (Scripts/setup installs g++)")
        }
        return try compile("g++:" + name, variant: variant, flags: flags) { output in
            ("/usr/bin/g++", [Paths.fixtures.appendingPathComponent("\(name).cpp").path] + flags + ["-o", output])
        }
    }

    /// rustc where rustup or Debian put it, if installed.
    public static let rustCompiler: String? = {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
        return ["\(home)/.cargo/bin/rustc", "/usr/local/cargo/bin/rustc", "/usr/bin/rustc"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    /// Compiles `Tests/Fixtures/<name>.rs` with rustc (nil when rustc is not installed).
    public static func buildRust(_ name: String, flags: [String] = [], variant: String = "") throws -> String? {
        guard let rustc = rustCompiler else { return nil }
        return try compile("rustc:" + name, variant: variant, flags: flags) { output in
            (rustc, [Paths.fixtures.appendingPathComponent("\(name).rs").path] + flags + ["-o", output])
        }
    }

    /// swiftc on PATH: the toolchain that builds nstrace.
    public static let swiftCompiler: String? = (ProcessInfo.processInfo.environment["PATH"] ?? "")
        .split(separator: ":").map { "\($0)/swiftc" }.first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Compiles `Tests/Fixtures/<name>.swift` with swiftc (nil when swiftc is not on PATH).
    public static func buildSwift(_ name: String, flags: [String] = [], variant: String = "") throws -> String? {
        guard let swiftc = swiftCompiler else { return nil }
        return try compile("swiftc:" + name, variant: variant, flags: flags) { output in
            (swiftc, [Paths.fixtures.appendingPathComponent("\(name).swift").path, "-module-name", name] + flags + ["-o", output])
        }
    }

    /// Runs `command(output)` once per name, variant and flags, and returns `output`.
    private static func compile(_ name: String, variant: String, flags: [String],
                                _ command: (String) -> (String, [String])) throws -> String {
        let key = ([name, variant] + flags).joined(separator: " ")
        lock.lock()
        defer { lock.unlock() }
        if let path = built[key] { return path }
        let suffix = variant.isEmpty ? "\(built.count)" : variant
        let output = Paths.scratch.appendingPathComponent("\(name.replacingOccurrences(of: ":", with: "-"))-\(suffix)").path
        let (compiler, arguments) = command(output)
        let result = try run(compiler, arguments, timeout: 300)
        guard result.status == 0 else { throw TestFailure("\(compiler) \(arguments) failed:\n\(result.stderr)") }
        built[key] = output
        return output
    }

    /// Where Debian's Go toolchain is, if installed.
    public static let goCompiler: String? = ["/usr/bin/go", "/usr/lib/go/bin/go"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Builds the Go module in `Tests/Fixtures/go/<name>` and returns the executable's path.
    public static func buildGo(_ name: String) throws -> String {
        guard let go = goCompiler else { throw TestFailure("go is not installed (Scripts/setup installs golang-go)") }
        lock.lock()
        defer { lock.unlock() }
        if let path = built["go:" + name] { return path }
        let output = Paths.scratch.appendingPathComponent("go-\(name)").path
        let source = Paths.fixtures.appendingPathComponent("go/\(name)").path
        let result = try run("/bin/sh", ["-c", "cd '\(source)' && exec '\(go)' build -buildvcs=false -o '\(output)' ."],
                             timeout: 300, environment: ["GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"])
        guard result.status == 0 else { throw TestFailure("go build \(name) failed:\n\(result.stderr)") }
        built["go:" + name] = output
        return output
    }

    /// Runs a tool (strip, objcopy, …) that must succeed.
    @discardableResult
    public static func tool(_ path: String, _ arguments: [String]) throws -> CommandResult {
        let result = try run(path, arguments, timeout: 120)
        guard result.status == 0 else { throw TestFailure("\(path) \(arguments) failed: \(result)") }
        return result
    }
}

/// A fixture running in the background, started and reaped by the test. It must print a line
/// containing `ready` on stdout once it is in its steady state; the test waits for that line (never
/// for a fixed time) and kills the process when done. Its stdout is read continuously, so a chatty
/// fixture never blocks on a full pipe.
public final class RunningFixture {
    public let pid: pid_t
    private let process: Subprocess
    private let lines: LineCollector

    public init(_ executable: String, _ arguments: [String] = [], readyText: String = "ready",
                readyTimeout: TimeInterval = 30) throws {
        process = try Subprocess(executable, arguments, stdout: .pipe, stderr: .inherit)
        pid = process.pid
        lines = LineCollector(process.stdoutHandle)
        guard lines.waitForLine(containing: readyText, timeout: readyTimeout) != nil else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: 30)
            throw TestFailure("fixture \(executable) never said ready")
        }
    }

    /// The next line (after those already consumed) that contains `text`, or nil after `timeout`.
    public func waitForLine(containing text: String, timeout: TimeInterval = 30) -> String? {
        lines.waitForLine(containing: text, timeout: timeout)
    }

    /// Forgets the lines printed so far: the next wait sees only new ones.
    public func skipPrinted() { lines.skipToEnd() }

    /// Whether any line it ever printed contains `text`.
    public func hasPrinted(_ text: String) -> Bool { lines.any { $0.contains(text) } }

    public var isRunning: Bool { process.isRunning }

    /// How it ended, for failure messages: "running", "exit N" or "killed by signal N".
    public var state: String {
        if process.isRunning { return "running" }
        let status = process.terminationStatus
        return status > 128 ? "killed by signal \(status - 128)" : "exit \(status)"
    }

    /// Sends `signal` and waits for the exit; returns the termination status.
    @discardableResult
    public func stop(signal: Int32 = SIGKILL, timeout: TimeInterval = 30) -> Int32 {
        if process.isRunning { process.kill(signal) }
        if process.wait(timeout: timeout) == nil {
            process.kill(SIGKILL)
            _ = process.wait(timeout: 30)
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            process.kill(SIGKILL)
            _ = process.wait(timeout: 30)
        }
    }
}

/// Collects a pipe's lines on a thread of its own; readers wait on a condition with a deadline.
final class LineCollector: @unchecked Sendable {
    private let condition = NSCondition()
    private var lines: [String] = []
    private var cursor = 0
    private var closed = false

    init(_ handle: FileHandle?) {
        Thread.detachNewThread { [self] in
            var pending = Data()
            while let handle {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                var complete: [String] = []
                while let newline = pending.firstIndex(of: 0x0a) {
                    complete.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
                condition.lock()
                lines += complete
                condition.broadcast()
                condition.unlock()
            }
            condition.lock()
            closed = true
            condition.broadcast()
            condition.unlock()
        }
    }

    func waitForLine(containing text: String, timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            while cursor < lines.count {
                let line = lines[cursor]
                cursor += 1
                if line.contains(text) { return line }
            }
            if closed || !condition.wait(until: deadline) { return nil }
        }
    }

    func skipToEnd() {
        condition.lock()
        cursor = lines.count
        condition.unlock()
    }

    func any(_ predicate: (String) -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return lines.contains(where: predicate)
    }
}

/// Parses JSON Lines output into dictionaries; a line that does not parse is a test failure.
public func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { line in
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(line)")
        }
        return object
    }
}

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
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()

    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    let outData = DrainedPipe(out), errData = DrainedPipe(err)

    let finished = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { process.waitUntilExit(); finished.signal() }
    var timedOut = false
    if finished.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        kill(process.processIdentifier, SIGKILL)
        finished.wait()
    }
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: outData.wait(), as: UTF8.self),
                         stderr: String(decoding: errData.wait(), as: UTF8.self), timedOut: timedOut)
}

/// Reads a pipe to its end on a thread of its own.
private final class DrainedPipe: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> Data {
        done.wait()
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
/// for a fixed time) and kills the process when done.
public final class RunningFixture {
    public let pid: pid_t
    private let process: Process
    private let stdoutReader: LineReader

    public init(_ executable: String, _ arguments: [String] = [], readyTimeout: TimeInterval = 30) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        try process.run()
        pid = process.processIdentifier
        stdoutReader = LineReader(fd: out.fileHandleForReading.fileDescriptor, handle: out.fileHandleForReading)
        guard stdoutReader.waitForLine(containing: "ready", timeout: readyTimeout) != nil else {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            throw TestFailure("fixture \(executable) never said ready")
        }
    }

    /// The next stdout line that contains `text`, or nil after `timeout` seconds.
    public func waitForLine(containing text: String, timeout: TimeInterval = 30) -> String? {
        stdoutReader.waitForLine(containing: text, timeout: timeout)
    }

    public var isRunning: Bool { process.isRunning }

    /// Sends `signal` and waits for the exit; returns the termination status.
    @discardableResult
    public func stop(signal: Int32 = SIGKILL, timeout: TimeInterval = 30) -> Int32 {
        if process.isRunning { kill(pid, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() } }
}

/// Reads lines from a pipe with a deadline, using poll so nothing blocks forever.
final class LineReader {
    private let fd: Int32
    private let handle: FileHandle
    private var buffer = [UInt8]()

    init(fd: Int32, handle: FileHandle) {
        self.fd = fd
        self.handle = handle
    }

    func waitForLine(containing text: String, timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            while let newline = buffer.firstIndex(of: 0x0a) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                if line.contains(text) { return line }
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining, 1) * 1000))
            if ready < 0 && errno != EINTR { return nil }
            if ready > 0 {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { return nil }
                buffer.append(contentsOf: chunk[..<n])
            }
        }
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

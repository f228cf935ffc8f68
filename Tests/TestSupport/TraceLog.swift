import Foundation
import Glibc

/// nstrace's JSON Lines output, parsed, with the counts tests compare against a fixture's own.
public struct TraceLog {
    public let events: [[String: Any]]

    public init(file: String) throws {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        events = try jsonLines(text)
    }

    /// The complete lines of a trace nstrace is still writing (or was killed while writing).
    public init(growingFile file: String) throws {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let complete = text.hasSuffix("\n") ? Substring(text) : text[..<(text.lastIndex(of: "\n") ?? text.startIndex)]
        events = try jsonLines(String(complete))
    }

    public func count(_ event: String, function: String? = nil, pid: Int? = nil) -> Int {
        events.filter { e in
            e["event"] as? String == event
                && (function == nil || e["function"] as? String == function)
                && (pid == nil || e["pid"] as? Int == pid)
        }.count
    }

    public func of(_ event: String) -> [[String: Any]] { events.filter { $0["event"] as? String == event } }

    /// Calls per function (optionally for one pid).
    public func calls(pid: Int? = nil) -> [String: Int] {
        var counts: [String: Int] = [:]
        for e in of("call") where pid == nil || e["pid"] as? Int == pid {
            counts[e["function"] as? String ?? "?", default: 0] += 1
        }
        return counts
    }

    public func returns(pid: Int? = nil) -> [String: Int] {
        var counts: [String: Int] = [:]
        for e in of("return") where pid == nil || e["pid"] as? Int == pid {
            counts[e["function"] as? String ?? "?", default: 0] += 1
        }
        return counts
    }

    /// `function@depth` for each event of a kind, counted: a call tree's shape.
    public func shape(_ kind: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for e in of(kind) { counts["\(e["function"] as? String ?? "?")@\(e["depth"] as? Int ?? -1)", default: 0] += 1 }
        return counts
    }
}

/// A JSON Lines trace too large to parse whole (millions of events): calls and returns counted per
/// function from each line's first fields as nstrace writes them, `lost` events parsed.
public struct TraceTally {
    public private(set) var calls: [String: Int] = [:]
    public private(set) var returns: [String: Int] = [:]
    public private(set) var lost: [[String: Any]] = []
    /// Lines that are neither: other events, or lines this reader does not recognise.
    public private(set) var others = 0

    public init(file: String) throws {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw TraceTallyError(file: file) }
        defer { try? handle.close() }
        var pending: [UInt8] = []
        while let chunk = try handle.read(upToCount: 16 << 20), !chunk.isEmpty {
            pending += chunk
            var start = 0
            while let end = pending[start...].firstIndex(of: 0x0a) {
                count(pending[start..<end])
                start = end + 1
            }
            pending.removeFirst(start)
        }
        if !pending.isEmpty { count(pending[...]) }
    }

    public var lostCalls: Int { lost.compactMap { $0["calls"] as? Int }.reduce(0, +) }
    public var lostReturns: Int { lost.compactMap { $0["returns"] as? Int }.reduce(0, +) }

    private mutating func count(_ line: ArraySlice<UInt8>) {
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix(#"{"event":"call","#) {
            calls[TraceTally.function(in: text), default: 0] += 1
        } else if text.hasPrefix(#"{"event":"return","#) {
            returns[TraceTally.function(in: text), default: 0] += 1
        } else if text.hasPrefix(#"{"event":"lost","#),
                  let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] {
            lost.append(object)
        } else {
            others += 1
        }
    }

    private static func function(in line: String) -> String {
        guard let key = line.range(of: #""function":""#), let end = line[key.upperBound...].firstIndex(of: "\"") else { return "?" }
        return String(line[key.upperBound..<end])
    }
}

struct TraceTallyError: Error, CustomStringConvertible {
    let file: String
    var description: String { "cannot read \(file)" }
}

/// "calls fx_jmp8 2400" lines a fixture prints: function → count.
public func fixtureCounts(_ output: String, prefix: String = "calls ") -> [String: Int] {
    var counts: [String: Int] = [:]
    for line in output.split(separator: "\n") where line.hasPrefix(prefix) {
        let parts = line.dropFirst(prefix.count).split(separator: " ")
        if parts.count == 2, let n = Int(parts[1]) { counts[String(parts[0])] = n }
    }
    return counts
}

/// nstrace running in the background (attached to a process), stopped with a signal as a user would.
public final class BackgroundTrace {
    public let process: Subprocess
    public let outputFile: String
    private let stderr: DrainedPipe

    public init(_ arguments: [String], outputFile: String, environment: [String: String]? = nil) throws {
        self.outputFile = outputFile
        try? FileManager.default.removeItem(atPath: outputFile)
        process = try Subprocess(Paths.nstrace, arguments, environment: environment, stdout: .null, stderr: .pipe)
        stderr = DrainedPipe(process.stderrHandle)
    }

    /// Waits for nstrace to exit by itself; nil if it did not within `timeout` (it is then killed).
    public func waitForExit(timeout: TimeInterval = 60) -> (status: Int32, stderr: String)? {
        guard let status = process.wait(timeout: timeout) else {
            process.kill(SIGKILL)
            _ = process.wait(timeout: 30)
            return nil
        }
        return (status, String(decoding: stderr.wait(), as: UTF8.self))
    }

    /// Waits until the trace file holds at least `n` lines containing `text`, or the deadline passes.
    @discardableResult
    public func waitForLines(containing text: String, count n: Int, timeout: TimeInterval = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: outputFile) {
                let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
                if lines.filter({ $0.contains(text) }).count >= n { return true }
            }
            if !process.isRunning { return false }
            usleep(20_000)
        }
        return false
    }

    /// Sends `signal` and waits for nstrace to exit; nil if it did not within `timeout` (it is then
    /// killed, and the test fails on the nil).
    public func stop(signal: Int32 = SIGINT, timeout: TimeInterval = 60) -> (status: Int32, stderr: String)? {
        process.kill(signal)
        return waitForExit(timeout: timeout)
    }

    deinit {
        if process.isRunning {
            process.kill(SIGKILL)
            _ = process.wait(timeout: 30)
        }
    }
}

/// Every task of a process and who traces it (0 for nobody).
public func tracers(of pid: pid_t) -> [pid_t: Int] {
    var result: [pid_t: Int] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
        guard let tid = pid_t(name),
              let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(name)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("TracerPid:") }),
              let tracer = Int(line.dropFirst("TracerPid:".count).trimmingCharacters(in: .whitespaces))
        else { continue }
        result[tid] = tracer
    }
    return result
}

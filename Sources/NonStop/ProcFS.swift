import Foundation
import Glibc
import Symbols

/// What /proc says about a process.
enum ProcFS {
    /// Thread ids of a process now; empty when it is gone.
    static func tasks(of pid: pid_t) -> [pid_t] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [] }
        return names.compactMap { pid_t($0) }.sorted()
    }

    static func text(_ path: String) -> String? {
        ProcFile.contents(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func statusField(_ name: String, of tid: pid_t) -> String? {
        guard let text = text("/proc/\(tid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// Whether a stop signal (SIGTSTP, SIGTTIN, SIGTTOU) would stop the thread: neither caught nor
    /// ignored. SIGSTOP always does.
    static func stopsThread(_ signal: Int32, thread tid: pid_t) -> Bool {
        if signal == SIGSTOP { return true }
        let bit = UInt64(1) << UInt64(signal - 1)
        for field in ["SigCgt", "SigIgn"] {
            if let mask = statusField(field, of: tid).flatMap({ UInt64($0, radix: 16) }), mask & bit != 0 { return false }
        }
        return true
    }

    /// Whether `signal` is pending for the thread itself (SigPnd, not the process-wide ShdPnd).
    static func isPending(_ signal: Int32, thread tid: pid_t) -> Bool {
        guard let mask = statusField("SigPnd", of: tid).flatMap({ UInt64($0, radix: 16) }) else { return false }
        return mask & (1 << UInt64(signal - 1)) != 0
    }

    /// Gone, or a zombie or dead task that can no longer be traced.
    static func isExiting(_ tid: pid_t, of pid: pid_t) -> Bool {
        guard let state = ProcStat.state(of: pid, task: tid) else { return true }
        return state == "Z" || state == "X" || state == "x"
    }

    static func threadGroup(of tid: pid_t) -> pid_t? { statusField("Tgid", of: tid).flatMap { pid_t($0) } }

    static func tracer(of pid: pid_t) -> pid_t? { statusField("TracerPid", of: pid).flatMap { pid_t($0) } }

    /// A CET user shadow stack in use (kernel 6.6+: "x86_Thread_features: shstk").
    static func usesShadowStack(_ pid: pid_t) -> Bool {
        statusField("x86_Thread_features", of: pid)?.split(separator: " ").contains("shstk") ?? false
    }

    /// AT_ENTRY from /proc/PID/auxv: the program's entry point.
    static func entryPoint(of pid: pid_t) -> UInt64? {
        guard let data = ProcFile.contents("/proc/\(pid)/auxv") else { return nil }
        let words = data.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
        var i = 0
        while i + 1 < words.count {
            if words[i] == 9 { return words[i + 1] }  // AT_ENTRY
            if words[i] == 0 { break }
            i += 2
        }
        return nil
    }

    static func executable(of pid: pid_t) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"
    }
}

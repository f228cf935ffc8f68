import Glibc

/// What /proc/PID/stat (or /proc/PID/task/TID/stat) says of a task.
public enum ProcStat {
    /// The task's state letter (R, S, D, T, t, Z, X…); nil when it is gone. The command name before it
    /// is in parentheses and may hold spaces and ")" itself: the state is the first field after the
    /// last ")".
    public static func state(of pid: pid_t, task tid: pid_t? = nil) -> Character? {
        guard let line = ProcFile.contents(tid.map { "/proc/\(pid)/task/\($0)/stat" } ?? "/proc/\(pid)/stat"),
              let end = line.lastIndex(of: UInt8(ascii: ")")),
              let state = line[(end + 1)...].first(where: { $0 != UInt8(ascii: " ") })
        else { return nil }
        return Character(Unicode.Scalar(state))
    }
}

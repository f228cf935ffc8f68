import Glibc

/// `--debug`: one line per engine decision (stop, step, fixup, site), on stderr. Off by default and
/// free when off: the message is not even built.
public enum DebugLog {
    nonisolated(unsafe) public static var enabled = false

    @inline(__always)
    static func log(_ message: @autoclosure () -> String) {
        guard enabled else { return }
        let line = "nstrace[debug] \(message())\n"
        line.withCString { _ = fputs($0, stderr) }
    }
}

import Glibc

/// A failed operation on a tracee: which operation, on which thread, and the errno.
public struct TraceError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let tid: pid_t
    public let errno: Int32

    public init(_ operation: String, tid: pid_t, errno: Int32) {
        self.operation = operation
        self.tid = tid
        self.errno = errno
    }

    /// The thread is gone (exited, or killed): an event to handle, not a failure.
    public var threadGone: Bool { errno == ESRCH }

    public var description: String {
        "\(operation) on thread \(tid): \(String(cString: strerror(errno)))"
    }
}

/// Why nstrace cannot start tracing: one line for a person.
public enum StartError: Error, CustomStringConvertible, Equatable {
    case noSuchProcess(pid_t)
    case permissionDenied(pid_t, detail: String)
    case alreadyTraced(pid_t, by: pid_t)
    case tracingItself
    case programNotFound(String)
    case programNotExecutable(String)
    case launchFailed(String)
    case attachFailed(String)
    case shadowStack(pid_t)

    public var description: String {
        switch self {
        case .noSuchProcess(let pid): return "no such process: \(pid)"
        case .permissionDenied(let pid, let detail): return "permission denied: cannot trace process \(pid) (\(detail))"
        case .alreadyTraced(let pid, let tracer): return "process \(pid) is already traced by process \(tracer)"
        case .tracingItself: return "nstrace cannot trace itself"
        case .programNotFound(let p): return "no such program: \(p)"
        case .programNotExecutable(let p): return "permission denied: cannot execute \(p)"
        case .launchFailed(let why): return "cannot launch: \(why)"
        case .attachFailed(let why): return "cannot attach: \(why)"
        case .shadowStack(let pid):
            return "process \(pid) runs with a CET shadow stack, which nstrace's emulated calls and returns would break"
        }
    }
}

import Glibc

/// Why a process or a file could not be read for symbols. Each case renders as one line for a person.
public enum SymbolError: Error, Equatable, CustomStringConvertible {
    case noSuchProcess(pid_t)
    case processPermissionDenied(pid_t)
    case noSuchFile(String)
    case filePermissionDenied(String)
    case notAnELFFile(String)
    case elfutils(String, context: String)

    public var description: String {
        switch self {
        case .noSuchProcess(let pid): return "no such process: \(pid)"
        case .processPermissionDenied(let pid):
            return "permission denied: cannot read process \(pid) (run as its owner or as root; check kernel.yama.ptrace_scope)"
        case .noSuchFile(let path): return "no such file: \(path)"
        case .filePermissionDenied(let path): return "permission denied: \(path)"
        case .notAnELFFile(let path): return "not an ELF file: \(path)"
        case .elfutils(let message, let context): return "\(context): \(message)"
        }
    }
}

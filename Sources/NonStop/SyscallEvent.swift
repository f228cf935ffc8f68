import CShim
import Glibc
import Symbols

/// One finished syscall of a traced thread (`-S`), decoded as strace shows it; or one that never
/// returns (exit, exit_group), told at its entry.
public struct SyscallEvent: Sendable, Equatable {
    public let number: Int
    /// `openat`; `syscall_N` for a number the table has no name for.
    public let name: String
    public let arguments: [SyscallArgument]
    /// What the libc wrapper returns: -1 on error (then `errno` says which).
    public let result: Int64
    /// The error (ENOENT is 2), 0 on success.
    public let errno: Int32
    /// Shown in hex, as an address (mmap, brk).
    public let resultIsAddress: Bool
    /// False for exit and exit_group: the thread (or process) ends in the kernel, so there is no result
    /// (strace's `= ?`), and the event is made at the entry.
    public let returns: Bool

    public init(number: Int, name: String, arguments: [SyscallArgument], result: Int64, errno: Int32, resultIsAddress: Bool = false,
                returns: Bool = true) {
        self.number = number
        self.name = name
        self.arguments = arguments
        self.result = result
        self.errno = errno
        self.resultIsAddress = resultIsAddress
        self.returns = returns
    }
}

public struct SyscallArgument: Sendable, Equatable {
    /// The kernel's parameter name (`dfd`, `filename`, `flags`).
    public let name: String
    public let value: SyscallValue

    public init(name: String, value: SyscallValue) {
        self.name = name
        self.value = value
    }
}

/// An argument as the kernel ABI says to read it.
public enum SyscallValue: Sendable, Equatable {
    case signed(Int64)
    case unsigned(UInt64)
    /// An address or a value with no better reading.
    case hex(UInt64)
    /// A file mode: 0644.
    case octal(UInt64)
    /// Bytes from the tracee (a path, a buffer): shown quoted, `...` after when cut at the limit.
    case string([UInt8], truncated: Bool)
    /// Flags or a constant by name: `O_RDONLY|O_CLOEXEC`, `AT_FDCWD`, `NULL`.
    case symbol(String)
}

/// ENOENT rather than 2.
public func errnoName(_ number: Int32) -> String {
    if let name = nst_errno_name(number) { return String(cString: name) }
    return "E\(number)"
}

/// "No such file or directory".
public func errnoMessage(_ number: Int32) -> String {
    String(cString: strerror(number))
}

/// Which syscalls `-S` reports, by number.
public struct SyscallSelection: Sendable {
    private let chosen: [Bool]

    /// `pattern` is matched against each whole syscall name, as strace's `-e trace=` names them:
    /// `openat`, `read|write`, `open.*`; commas separate alternatives too (`openat,close`). nil for every
    /// syscall.
    public init(pattern source: String?) throws(InvalidPattern) {
        guard let source, !source.isEmpty else {
            chosen = syscallNames.map { !$0.isEmpty }
            return
        }
        let alternatives = source.split(separator: ",").map { "(?:\($0))" }.joined(separator: "|")
        let pattern = try NamePattern("^(?:\(alternatives))$")
        chosen = syscallNames.map { !$0.isEmpty && pattern.matches($0) }
    }

    public var isEmpty: Bool { !chosen.contains(true) }

    public func contains(_ number: UInt64) -> Bool { number < UInt64(chosen.count) && chosen[Int(number)] }

    /// The name of syscall `number`, as the kernel headers spell it.
    public static func name(of number: Int) -> String? {
        number >= 0 && number < syscallNames.count && !syscallNames[number].isEmpty ? syscallNames[number] : nil
    }

    /// The highest number in the table.
    public static var highestNumber: Int { syscallNames.count - 1 }
}

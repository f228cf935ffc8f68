import Glibc
@testable import Relocator

/// A general register of a user_regs_struct, by GPR. The Relocator has the same subscript, but here
/// the compiler does not find it: CShim includes <sys/user.h> textually, and with OracleSupport among
/// this target's dependencies (an empty C target does the same) the struct is taken for CShim's and
/// the Relocator's extension of Glibc's is not seen. `Emulation.apply` still accepts it.
extension user_regs_struct {
    private static let paths: [WritableKeyPath<user_regs_struct, UInt64>] = [
        \.rax, \.rcx, \.rdx, \.rbx, \.rsp, \.rbp, \.rsi, \.rdi,
        \.r8, \.r9, \.r10, \.r11, \.r12, \.r13, \.r14, \.r15, \.rip,
    ]

    subscript(gpr register: GPR) -> UInt64 {
        get { self[keyPath: Self.paths[register.rawValue]] }
        set { self[keyPath: Self.paths[register.rawValue]] = newValue }
    }
}

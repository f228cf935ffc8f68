import Relocator

/// An int3 in a trap pad (jump strategy): reached only through a window's jump into memory only nstrace
/// writes, so a SIGTRAP stop with RIP just past it is nstrace's for certain — no siginfo to ask for, no
/// site to look up by a byte other code could also hold, and no RIP to set: the thread continues on
/// the relocated window right after the int3.
final class TrapSite {
    enum Role {
        /// A traced function's entry. `stackAdjust`: the entry's stack pointer from the one at the
        /// window (the function's first instruction, left in place, may have pushed).
        case entry(TracedFunction, stackAdjust: Int32)
        /// Just before a `ret` of a traced function whose returns are all seen at its exits.
        case exit(TracedFunction)
    }

    /// The traced function whose entry or return this is.
    var function: TracedFunction {
        switch role {
        case .entry(let function, _), .exit(let function): function
        }
    }

    /// The int3's address, in the pad.
    let address: UInt64
    /// The window's start in the program's code: where a fault of its first instruction is delivered.
    let window: UInt64
    let role: Role

    init(address: UInt64, window: UInt64, role: Role) {
        self.address = address
        self.window = window
        self.role = role
    }
}

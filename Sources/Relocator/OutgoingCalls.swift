import CCapstone

/// A transfer of control from a function to another: a `call`, or a `jmp` that leaves the function
/// (a tail call). What `--follow-calls` follows.
public struct OutgoingCall: Sendable, Hashable {
    /// The call (or jump) instruction.
    public let address: UInt64
    public let target: BranchTarget
    /// A jump out of the function rather than a call: the callee returns to the function's caller.
    public let isJump: Bool

    /// The target when the instruction names it: `call rel32` (`.address`), `call [rip+slot]` (`.slot`:
    /// the GOT word the dynamic linker fills); nil for a target known only when the call runs (`call
    /// rax`, `call [rbx+8]`).
    public var staticTarget: StaticTarget? {
        switch target {
        case .absolute(let address): return .address(address)
        case .memory(nil, nil, _, let displacement, nil, 64): return .slot(UInt64(bitPattern: displacement))
        default: return nil
        }
    }

    public enum StaticTarget: Sendable, Hashable {
        case address(UInt64)
        case slot(UInt64)
    }

    /// The call or jump `insn` is; nil for any other instruction, or a jump whose target cannot be
    /// named (an operand Capstone gives in another form).
    public init?(_ insn: Instruction) {
        let isCall = insn.isInstruction(X86_INS_CALL)
        guard isCall || insn.isInstruction(X86_INS_JMP), let target = Relocator.branchTarget(insn) else { return nil }
        self.init(address: insn.address, target: target, isJump: !isCall)
    }

    init(address: UInt64, target: BranchTarget, isJump: Bool) {
        self.address = address
        self.target = target
        self.isJump = isJump
    }
}

extension FunctionAnalysis {
    /// Every call the function makes and every jump out of its body, in address order. A jump through
    /// a register or a computed address stays inside the function (a switch's jump table) and is not
    /// one; a jump through a RIP-relative slot is (a tail call through the GOT).
    public var outgoingCalls: [OutgoingCall] {
        let end = instructions.last?.next ?? start
        return instructions.compactMap { insn -> OutgoingCall? in
            guard let call = OutgoingCall(insn) else { return nil }
            guard call.isJump else { return call }
            switch call.staticTarget {
            case .address(let address)?: return address >= start && address < end ? nil : call
            case .slot?: return call
            case nil: return nil
            }
        }
    }
}

/// A procedure linkage table entry (`.plt`, `.plt.sec`): `[endbr64;] [bnd] jmp [rip+slot]`, where the
/// slot is the GOT word the dynamic linker binds to the callee. Lazy binding's `push n; jmp .plt0`
/// after it is not needed to know the slot.
public enum PLTEntry {
    /// The GOT slot an entry at `address` jumps through; nil unless `bytes` (the entry's, from the
    /// file) begin as one.
    public static func slot(_ bytes: [UInt8], at address: UInt64, decoder: Decoder) -> UInt64? {
        for insn in decoder.decodeAll(bytes, at: address).prefix(2) {
            if insn.isInstruction(X86_INS_ENDBR64) { continue }
            guard let jump = OutgoingCall(insn), jump.isJump, case .slot(let slot)? = jump.staticTarget else { return nil }
            return slot
        }
        return nil
    }
}

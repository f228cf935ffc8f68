import CCapstone

/// Why an instruction cannot be run anywhere but where it is. A refused instruction makes its function
/// untraceable, said plainly; nstrace never falls back to lifting the breakpoint.
public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: String

    public init(reason: String) { self.reason = reason }

    public var description: String { reason }
}

/// What nstrace refuses on purpose, with why. Modelled on the opcode tables Linux uprobes keeps in
/// arch/x86/kernel/uprobes.c (good_insns_64), but by instruction class rather than by byte.
enum RefusalTable {
    /// Instruction ids refused in every form.
    static let byInstruction: [UInt32: String] = {
        var table: [UInt32: String] = [:]
        func refuse(_ ids: [x86_insn], _ reason: String) {
            for id in ids { table[id.rawValue] = reason }
        }
        refuse([X86_INS_INT3, X86_INS_INT, X86_INS_INT1, X86_INS_INTO],
               "a software interrupt: the tracer's own breakpoint mechanism, or a trap meant for another debugger")
        refuse([X86_INS_LCALL, X86_INS_LJMP, X86_INS_RETF, X86_INS_RETFQ, X86_INS_IRET, X86_INS_IRETD, X86_INS_IRETQ],
               "a far control transfer: changes the code segment, which a relocated copy cannot reproduce")
        refuse([X86_INS_SYSENTER, X86_INS_SYSEXIT, X86_INS_SYSRET],
               "a legacy fast system call: not used by 64-bit Linux user code")
        refuse([X86_INS_XBEGIN],
               "a transaction start with a relative abort address: an abort would jump from the copy, not the original")
        refuse([X86_INS_HLT], "privileged: faults in user mode")
        return table
    }()

    /// The reason a decoded instruction is refused in every form, or nil.
    static func reason(for insn: Instruction) -> String? {
        if let reason = byInstruction[insn.id] { return reason }
        if insn.inGroup(Int32(X86_GRP_PRIVILEGE.rawValue)) {
            return "privileged: faults in user mode"
        }
        if insn.id == X86_INS_MOV.rawValue, insn.operands.count == 2, insn.bytes[insn.afterLegacyPrefixes] == 0x8e,
           insn.modrmOffset > 0, (insn.bytes[insn.modrmOffset] >> 3) & 7 == 2 {
            return "mov to SS: inhibits interrupts and the single-step trap for one instruction"
        }
        if insn.isRIPRelative, insn.hasAddressSizePrefix {
            return "RIP-relative with an address-size prefix: EIP-relative, truncated to 32 bits"
        }
        if insn.touchesRIPImplicitly, !insn.isRIPRelative, !isControlFlow(insn), insn.id != X86_INS_SYSCALL.rawValue {
            return "reads the instruction pointer in a way nstrace does not model"
        }
        return nil
    }

    /// Refused only in a per-thread step slot: a `clone` made from the slot would start the child
    /// thread inside the slot, which belongs to the parent thread and is rewritten on its next hit.
    static let syscallInStepSlot =
        "a system call in a per-thread step slot: a clone would start the new thread inside the slot"

    static func isControlFlow(_ insn: Instruction) -> Bool {
        insn.inGroup(Int32(X86_GRP_JUMP.rawValue)) || insn.inGroup(Int32(X86_GRP_CALL.rawValue))
            || insn.inGroup(Int32(X86_GRP_RET.rawValue)) || insn.inGroup(Int32(X86_GRP_BRANCH_RELATIVE.rawValue))
    }
}

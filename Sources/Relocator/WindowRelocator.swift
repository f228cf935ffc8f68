import CCapstone

/// Relocates a run of whole instructions — an inline window — into a pad, one small function per
/// instruction class, as frida-gum's gumx86relocator does for prologues: copy what does not depend on
/// where it runs, re-target RIP-relative operands (the pad is within ±2 GiB), rewrite relative branches
/// to reach their original targets from the pad, and refuse what cannot run there.
public enum WindowRelocator {
    /// Writes `insn` at `writer.pc` so that it does what it did at its own address; the refusal when it
    /// cannot. `isLast`: the window's last instruction, the only place a call may be.
    public static func relocate(_ insn: Instruction, isLast: Bool = false, into writer: inout X86Writer) -> Refusal? {
        if let reason = RefusalTable.reason(for: insn) { return Refusal(reason: reason) }
        if isLast, insn.inGroup(Int32(X86_GRP_CALL.rawValue)) { return rewriteCall(insn, into: &writer) }
        if let reason = refusedInWindow(insn) { return Refusal(reason: reason) }
        if RefusalTable.isControlFlow(insn) { return rewriteBranch(insn, into: &writer) }
        if insn.isRIPRelative { return rewriteIfRIPRelative(insn, into: &writer) }
        writer.putBytes(insn.bytes)
        return nil
    }

    /// What a window may never hold, beyond what nothing can relocate.
    static func refusedInWindow(_ insn: Instruction) -> String? {
        if insn.id == X86_INS_SYSCALL.rawValue {
            return "a system call: the kernel restarts an interrupted one by moving RIP back onto it"
        }
        if insn.inGroup(Int32(X86_GRP_CALL.rawValue)) {
            return "a call: its return address would point into the pad, which unwinders cannot read"
        }
        if insn.hasOperandSizePrefix, RefusalTable.isControlFlow(insn) {
            return "a 16-bit operand-size branch: truncates RIP"
        }
        return nil
    }

    /// A call that ends a window: push the original return address (the window's end, so the callee
    /// returns into the program's own code and unwinders see a real return address), then jump where
    /// the call went. Written with moves and a push, which leave the flags alone.
    private static func rewriteCall(_ insn: Instruction, into writer: inout X86Writer) -> Refusal? {
        if let reason = refusedAsLast(insn) { return Refusal(reason: reason) }
        let target = insn.operands.first
        writer.putLea(.rsp, base: .rsp, displacement: -8)
        writer.putPush(.rax)
        writer.putMovImm64(.rax, insn.next)
        writer.putStore(.rax, base: .rsp, displacement: 8)
        writer.putPop(.rax)
        switch target {
        case .immediate(let raw)?:
            writer.putJmpAddress(UInt64(bitPattern: raw))
            return nil
        case .register(let r?, 8)? where r != .rip:
            writer.putJmpRegister(r)
            return nil
        case .memory(let m)? where m.size == 8:
            // FF /2 (call r/m64) becomes FF /4 (jmp r/m64): the same operand, another ModRM reg field.
            guard insn.modrmOffset > 0, insn.modrmOffset < insn.length else {
                return Refusal(reason: "a call through memory nstrace cannot re-encode (\(insn))")
            }
            var bytes = insn.bytes
            bytes[insn.modrmOffset] = (bytes[insn.modrmOffset] & 0b1100_0111) | (4 << 3)
            if insn.isRIPRelative {
                guard let retargeted = Relocator.retargetedBytes(insn.replacingBytes(bytes), at: writer.pc) else {
                    return Refusal(reason: "RIP-relative operand out of ±2 GiB reach of the pad at \(hex(writer.pc))")
                }
                bytes = retargeted
            }
            writer.putBytes(bytes)
            return nil
        default:
            return Refusal(reason: "a call nstrace cannot relocate (\(insn))")
        }
    }

    /// Why a call cannot end a window, or nil when it can.
    static func refusedAsLast(_ insn: Instruction) -> String? {
        if insn.hasOperandSizePrefix { return "a 16-bit operand-size call: truncates RIP" }
        switch insn.operands.first {
        case .immediate?: return nil
        case .register(.rsp?, _)?: return "a call through the stack pointer, which pushing the return address moves"
        case .register(let r?, 8)? where r != .rip: return nil
        case .memory(let m)? where m.size == 8:
            if m.base == .rsp || m.index == .rsp { return "a call through memory addressed by the stack pointer, which pushing moves" }
            return insn.modrmOffset > 0 ? nil : "a call through memory nstrace cannot re-encode"
        default: return "a call nstrace cannot relocate (\(insn))"
        }
    }

    private static func rewriteIfRIPRelative(_ insn: Instruction, into writer: inout X86Writer) -> Refusal? {
        guard let bytes = Relocator.retargetedBytes(insn, at: writer.pc) else {
            return Refusal(reason: "RIP-relative operand out of ±2 GiB reach of the pad at \(hex(writer.pc))")
        }
        writer.putBytes(bytes)
        return nil
    }

    private static func rewriteBranch(_ insn: Instruction, into writer: inout X86Writer) -> Refusal? {
        let id = insn.id
        if id == X86_INS_RET.rawValue {
            writer.putBytes(insn.bytes)
            return nil
        }
        guard case .immediate(let raw)? = insn.operands.first else {
            // Indirect: through a register or memory, it goes where it went from anywhere.
            return insn.isRIPRelative ? rewriteIfRIPRelative(insn, into: &writer) : copyIndirect(insn, into: &writer)
        }
        let target = UInt64(bitPattern: raw)
        if id == X86_INS_JMP.rawValue {
            writer.putJmpAddress(target)
            return nil
        }
        if let condition = conditions[id] {
            writer.putJccAddress(condition, target)
            return nil
        }
        if [X86_INS_LOOP, X86_INS_LOOPE, X86_INS_LOOPNE, X86_INS_JRCXZ, X86_INS_JECXZ].map(\.rawValue).contains(id) {
            return rewriteShortOnlyBranch(insn, target: target, into: &writer)
        }
        return Refusal(reason: "control flow nstrace does not relocate (\(insn))")
    }

    private static func copyIndirect(_ insn: Instruction, into writer: inout X86Writer) -> Refusal? {
        guard insn.inGroup(Int32(X86_GRP_JUMP.rawValue)) else {
            return Refusal(reason: "control flow nstrace does not relocate (\(insn))")
        }
        writer.putBytes(insn.bytes)
        return nil
    }

    /// loop, loope, loopne, jrcxz and jecxz exist only with rel8: keep the instruction with a rel8 that
    /// skips a short jump, which (not taken) jumps over a long jump to the target (taken).
    private static func rewriteShortOnlyBranch(_ insn: Instruction, target: UInt64, into writer: inout X86Writer) -> Refusal? {
        writer.putBytes(Array(insn.bytes.dropLast()) + [2])
        var long = X86Writer(base: writer.pc &+ 2)
        long.putJmpAddress(target)
        writer.putBytes([0xeb, UInt8(long.code.count)])
        writer.putBytes(long.code)
        return nil
    }

    static let conditions: [UInt32: X86Writer.Condition] = [
        X86_INS_JO.rawValue: .o, X86_INS_JNO.rawValue: .no, X86_INS_JB.rawValue: .b, X86_INS_JAE.rawValue: .ae,
        X86_INS_JE.rawValue: .e, X86_INS_JNE.rawValue: .ne, X86_INS_JBE.rawValue: .be, X86_INS_JA.rawValue: .a,
        X86_INS_JS.rawValue: .s, X86_INS_JNS.rawValue: .ns, X86_INS_JP.rawValue: .p, X86_INS_JNP.rawValue: .np,
        X86_INS_JL.rawValue: .l, X86_INS_JGE.rawValue: .ge, X86_INS_JLE.rawValue: .le, X86_INS_JG.rawValue: .g,
    ]
}

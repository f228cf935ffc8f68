import CCapstone

/// What to run instead of an instruction under a breakpoint. Pure functions of an instruction (decoded
/// at its own address) and the address the copy will run at: no process, no ptrace.
public enum Relocator {
    // MARK: Strategies

    /// For the step strategy: the instruction single-stepped in a per-thread slot at `slot`, which may
    /// be any distance away. Emulation first (no step at all), then a plain copy, a re-targeted
    /// disp32 when the slot is near, a scratch register when it is not.
    public static func stepPlan(_ insn: Instruction, slot: UInt64) -> RelocationPlan {
        if let reason = RefusalTable.reason(for: insn) { return .refused(insn, reason) }
        if let emulation = emulation(for: insn) { return .emulated(insn, emulation) }
        if RefusalTable.isControlFlow(insn) { return .refused(insn, unemulatedControlFlow(insn)) }
        if insn.id == X86_INS_SYSCALL.rawValue { return .refused(insn, RefusalTable.syscallInStepSlot) }
        guard insn.isRIPRelative else { return copy(insn, at: slot) }
        return retarget(insn, at: slot) ?? rewriteWithScratchRegister(insn, at: slot)
    }

    /// For the jump strategy: control flow is emulated (it cannot run from a trampoline as it is); the
    /// rest runs from a trampoline at `trampoline`, which must be within ±2 GiB of a RIP-relative
    /// operand's target. The commonest first instructions (`push rbp`, `endbr64`) are emulated too when
    /// that costs no more than entering a trampoline.
    public static func trampolinePlan(_ insn: Instruction, at trampoline: UInt64) -> RelocationPlan {
        if let reason = RefusalTable.reason(for: insn) { return .refused(insn, reason) }
        if let emulation = emulation(for: insn) {
            // push needs a memory write the trampoline does for free; everything else is a RIP change.
            if case .push = emulation, let plan = self.trampoline(insn, at: trampoline) { return plan }
            return .emulated(insn, emulation)
        }
        if RefusalTable.isControlFlow(insn) { return .refused(insn, unemulatedControlFlow(insn)) }
        return self.trampoline(insn, at: trampoline)
            ?? .refused(insn, "RIP-relative operand out of ±2 GiB reach of the trampoline at \(hex(trampoline))")
    }

    /// Every plan that applies to the instruction, for `near` (within reach of any RIP-relative
    /// target) and `far` addresses: what the execution oracle checks. A refusal among other plans
    /// says that one strategy refuses what the other can run (`syscall`: no step slot, a trampoline).
    public static func allPlans(_ insn: Instruction, near: UInt64, far: UInt64) -> [RelocationPlan] {
        var plans: [RelocationPlan] = []
        if let reason = RefusalTable.reason(for: insn) { return [.refused(insn, reason)] }
        if let emulation = emulation(for: insn) { plans.append(.emulated(insn, emulation)) }
        if RefusalTable.isControlFlow(insn) {
            return plans.isEmpty ? [.refused(insn, unemulatedControlFlow(insn))] : plans
        }
        // The step strategy's slot forms, as stepPlan makes them.
        if insn.id == X86_INS_SYSCALL.rawValue {
            plans.append(.refused(insn, RefusalTable.syscallInStepSlot))
        } else if insn.isRIPRelative {
            if let plan = retarget(insn, at: near) { plans.append(plan) }
            plans.append(rewriteWithScratchRegister(insn, at: far))
        } else {
            plans.append(copy(insn, at: far))
        }
        // The jump strategy's trampolines: near, and when nothing needs reaching, far too (where the
        // jump back is the absolute form).
        if let plan = trampoline(insn, at: near) { plans.append(plan) }
        if !insn.isRIPRelative, let plan = trampoline(insn, at: far) { plans.append(plan) }
        return plans
    }

    // MARK: One function per instruction class

    /// An instruction that does not depend on where it runs.
    static func copy(_ insn: Instruction, at to: UInt64) -> RelocationPlan {
        RelocationPlan(kind: .copy, instruction: insn, runAt: to, code: insn.bytes, scratch: nil,
                       emulation: nil, refusal: nil, clearsTrapFlagOnStack: pushesFlags(insn))
    }

    /// A RIP-relative operand given the disp32 that reaches the same address from `to`; nil when the
    /// target is out of a disp32's reach from there.
    static func retarget(_ insn: Instruction, at to: UInt64) -> RelocationPlan? {
        guard let code = retargetedBytes(insn, at: to) else { return nil }
        return RelocationPlan(kind: .retarget, instruction: insn, runAt: to, code: code, scratch: nil,
                              emulation: nil, refusal: nil, clearsTrapFlagOnStack: pushesFlags(insn))
    }

    /// `[rip + disp]` becomes `[tmp + disp]` (ModRM mod 00→10, rm = tmp, REX.B / VEX.B̄ / EVEX.B̄
    /// cleared), with tmp a low register the instruction neither reads nor writes, loaded with the
    /// original next-RIP. As GDB's amd64 fixup_riprel and uprobes' riprel_pre_xol do.
    static func rewriteWithScratchRegister(_ insn: Instruction, at to: UInt64) -> RelocationPlan {
        guard insn.displacementSize == 4, insn.modrmOffset > 0, insn.displacementOffset > 0 else {
            return .refused(insn, "RIP-relative operand without a ModRM disp32 encoding")
        }
        let candidates: [GPR] = [.rax, .rcx, .rdx, .rbx, .rsi, .rdi]
        guard let tmp = candidates.first(where: { !insn.registersAccessed.contains($0) }) else {
            return .refused(insn, "RIP-relative operand and no free scratch register among rax, rcx, rdx, rbx, rsi, rdi")
        }
        var code = insn.bytes
        let modrm = code[insn.modrmOffset]
        code[insn.modrmOffset] = 0b10 << 6 | (modrm & 0b0011_1000) | UInt8(tmp.rawValue)
        let lead = insn.afterLegacyPrefixes
        switch code[lead] {
        case 0x40...0x4f:
            code[lead] &= ~0x01  // REX.B = 0
        case 0xc4, 0x62:
            // VEX3 / EVEX (in 64-bit mode always prefixes: LES and BOUND are gone): B̄ = 1 means B = 0.
            // EVEX's disp32 is never scaled (only a disp8 is, by N), so mod 10 keeps it as it is.
            code[lead + 1] |= 0x20
        case 0x8f where insn.bytes[lead + 1] & 0x1f >= 8:
            // XOP: its map select is 8 or more. Below that, 0x8f is `pop r/m64` and the next byte its
            // ModRM, already rewritten.
            code[lead + 1] |= 0x20
        default:
            break  // VEX2 (0xc5) and legacy encodings have no B bit
        }
        return RelocationPlan(kind: .scratchRegister, instruction: insn, runAt: to, code: code,
                              scratch: ScratchRegister(register: tmp, value: insn.next), emulation: nil,
                              refusal: nil, clearsTrapFlagOnStack: pushesFlags(insn))
    }

    /// The relocated instruction followed by a jump back to the original next instruction.
    static func trampoline(_ insn: Instruction, at to: UInt64) -> RelocationPlan? {
        let body: [UInt8]
        if insn.isRIPRelative {
            guard let retargeted = retargetedBytes(insn, at: to) else { return nil }
            body = retargeted
        } else {
            body = insn.bytes
        }
        let code = body + jump(from: to &+ UInt64(body.count), to: insn.next)
        return RelocationPlan(kind: .trampoline, instruction: insn, runAt: to, code: code, scratch: nil,
                              emulation: nil, refusal: nil, clearsTrapFlagOnStack: false)
    }

    /// What the tracer does instead of running the instruction, for the instructions it emulates.
    public static func emulation(for insn: Instruction) -> Emulation? {
        let id = insn.id
        if id == X86_INS_NOP.rawValue || id == X86_INS_ENDBR64.rawValue { return .advance(to: insn.next) }
        if id == X86_INS_PUSH.rawValue, !insn.hasOperandSizePrefix,
           case .register(let r?, 8)? = insn.operands.first, r != .rip {
            return .push(r, next: insn.next)
        }
        guard RefusalTable.isControlFlow(insn), !insn.hasOperandSizePrefix else { return nil }
        let counterBits = insn.hasAddressSizePrefix ? 32 : 64
        if id == X86_INS_RET.rawValue {
            if case .immediate(let n)? = insn.operands.first { return .ret(popBytes: UInt16(truncatingIfNeeded: n)) }
            return .ret(popBytes: 0)
        }
        guard let target = branchTarget(insn) else { return nil }
        if id == X86_INS_JMP.rawValue { return .jump(target) }
        if id == X86_INS_CALL.rawValue { return .call(target, returnAddress: insn.next) }
        guard case .absolute(let destination) = target else { return nil }
        if let condition = conditions[id] {
            return .conditionalJump(condition, target: destination, next: insn.next)
        }
        switch id {
        case X86_INS_LOOP.rawValue: return .loop(.always, counterBits: counterBits, target: destination, next: insn.next)
        case X86_INS_LOOPE.rawValue: return .loop(.whileEqual, counterBits: counterBits, target: destination, next: insn.next)
        case X86_INS_LOOPNE.rawValue: return .loop(.whileNotEqual, counterBits: counterBits, target: destination, next: insn.next)
        case X86_INS_JRCXZ.rawValue: return .jumpIfCounterZero(counterBits: 64, target: destination, next: insn.next)
        case X86_INS_JECXZ.rawValue: return .jumpIfCounterZero(counterBits: 32, target: destination, next: insn.next)
        default: return nil
        }
    }

    // MARK: Pieces

    static func branchTarget(_ insn: Instruction) -> BranchTarget? {
        switch insn.operands.first {
        case .immediate(let target)?:
            return .absolute(UInt64(bitPattern: target))
        case .register(let r?, 8)? where r != .rip:
            return .register(r)
        case .memory(let m)? where m.size == 8:
            if m.base == .rip {
                let absolute = Int64(bitPattern: insn.next) &+ m.displacement
                return .memory(base: nil, index: nil, scale: 1, displacement: absolute,
                               segment: m.segment.map(segmentBase), addressBits: 64)
            }
            return .memory(base: m.base, index: m.index, scale: m.scale, displacement: m.displacement,
                           segment: m.segment.map(segmentBase), addressBits: insn.hasAddressSizePrefix ? 32 : 64)
        default:
            return nil
        }
    }

    private static func segmentBase(_ s: Segment) -> BranchTarget.SegmentBase { s == .fs ? .fs : .gs }

    private static let conditions: [UInt32: Emulation.Condition] = [
        X86_INS_JO.rawValue: .o, X86_INS_JNO.rawValue: .no, X86_INS_JB.rawValue: .b, X86_INS_JAE.rawValue: .ae,
        X86_INS_JE.rawValue: .e, X86_INS_JNE.rawValue: .ne, X86_INS_JBE.rawValue: .be, X86_INS_JA.rawValue: .a,
        X86_INS_JS.rawValue: .s, X86_INS_JNS.rawValue: .ns, X86_INS_JP.rawValue: .p, X86_INS_JNP.rawValue: .np,
        X86_INS_JL.rawValue: .l, X86_INS_JGE.rawValue: .ge, X86_INS_JLE.rawValue: .le, X86_INS_JG.rawValue: .g,
    ]

    private static func unemulatedControlFlow(_ insn: Instruction) -> String {
        if insn.hasOperandSizePrefix { return "a 16-bit operand-size branch: truncates RIP" }
        return "control flow nstrace does not emulate (\(insn))"
    }

    private static func pushesFlags(_ insn: Instruction) -> Bool {
        insn.id == X86_INS_PUSHF.rawValue || insn.id == X86_INS_PUSHFQ.rawValue
    }

    /// The instruction with its RIP-relative disp32 recomputed for `to`, or nil when out of reach.
    static func retargetedBytes(_ insn: Instruction, at to: UInt64) -> [UInt8]? {
        guard let operand = insn.ripRelativeOperand, insn.displacementSize == 4, insn.displacementOffset > 0
        else { return nil }
        let target = Int64(bitPattern: insn.next) &+ operand.displacement
        let newNext = Int64(bitPattern: to &+ UInt64(insn.length))
        let (displacement, overflow) = target.subtractingReportingOverflow(newNext)
        guard !overflow, let disp32 = Int32(exactly: displacement) else { return nil }
        var code = insn.bytes
        withUnsafeBytes(of: disp32.littleEndian) { raw in
            for i in 0..<4 { code[insn.displacementOffset + i] = raw[i] }
        }
        return code
    }

    /// A jump from `from` to `to`: `jmp rel32` when it reaches, else `jmp [rip+pad]` over an 8-byte
    /// absolute address (14 to 21 bytes, any distance). The address is 8-byte aligned, int3s padding
    /// up to it: with alignment checking on (a `popf` can set EFLAGS.AC), a misaligned load of it
    /// would raise SIGBUS in the jump back, where the original instruction raises nothing.
    public static func jump(from: UInt64, to: UInt64) -> [UInt8] {
        let (delta, overflow) = Int64(bitPattern: to).subtractingReportingOverflow(Int64(bitPattern: from &+ 5))
        if !overflow, let rel32 = Int32(exactly: delta) {
            return [0xe9] + withUnsafeBytes(of: rel32.littleEndian) { Array($0) }
        }
        let pad = Int((8 &- (from &+ 6) % 8) % 8)
        return [0xff, 0x25, UInt8(pad), 0, 0, 0] + [UInt8](repeating: 0xcc, count: pad)
            + withUnsafeBytes(of: to.littleEndian) { Array($0) }
    }
}

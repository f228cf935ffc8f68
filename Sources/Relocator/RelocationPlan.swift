/// How to run one instruction, decoded at its own address, somewhere else — or why not.
public struct RelocationPlan: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// The bytes as they are: nothing in them depends on where they run.
        case copy
        /// A RIP-relative operand given a new disp32 that reaches the same address from `runAt`.
        case retarget
        /// A RIP-relative operand rewritten to `[scratch + disp]`, with the scratch register loaded with
        /// the original next-RIP before the step and restored after: works at any distance.
        case scratchRegister = "scratch-register"
        /// Carried out by the tracer: see `Emulation`.
        case emulate
        /// A shared, immutable trampoline: the relocated instruction, then a jump back to the original
        /// next instruction. Entered by setting RIP; no single-step.
        case trampoline
        case refuse
    }

    public let kind: Kind
    public let instruction: Instruction
    /// Where `code` must be placed (and run) for the plan to hold.
    public let runAt: UInt64
    /// Machine code to place at `runAt`; empty for `emulate` and `refuse`.
    public let code: [UInt8]
    public let scratch: ScratchRegister?
    public let emulation: Emulation?
    public let refusal: Refusal?
    /// `pushf` single-stepped pushes RFLAGS with TF set; the tracer clears TF in the pushed word.
    public let clearsTrapFlagOnStack: Bool

    /// Where the thread continues once the relocated instruction has completed at
    /// `runAt + instruction.length` (for the step forms).
    public var resumeAt: UInt64 { instruction.next }

    public var description: String {
        switch kind {
        case .emulate: return "emulate \(emulation.map { "\($0)" } ?? "")"
        case .refuse: return "refuse: \(refusal?.reason ?? "")"
        case .scratchRegister: return "scratch-register \(scratch?.register.description ?? "") at \(hex(runAt))"
        default: return "\(kind.rawValue) at \(hex(runAt))"
        }
    }

    static func refused(_ insn: Instruction, _ reason: String) -> RelocationPlan {
        RelocationPlan(kind: .refuse, instruction: insn, runAt: 0, code: [], scratch: nil, emulation: nil,
                       refusal: Refusal(reason: reason), clearsTrapFlagOnStack: false)
    }

    static func emulated(_ insn: Instruction, _ emulation: Emulation) -> RelocationPlan {
        RelocationPlan(kind: .emulate, instruction: insn, runAt: 0, code: [], scratch: nil, emulation: emulation,
                       refusal: nil, clearsTrapFlagOnStack: false)
    }
}

/// A register borrowed to stand in for RIP: load `value` before the step, restore the thread's own
/// value after.
public struct ScratchRegister: Sendable, Hashable {
    public let register: GPR
    public let value: UInt64
}

import Relocator
import Symbols

/// Whether a breakpoint can go on an instruction under a strategy: the one decision `nstrace list`
/// shows and the engine acts on (the engine may still refuse for what only a live process tells: no
/// scratch memory within reach, a page it cannot write).
public enum Traceability {
    public static func refusal(of insn: Instruction, strategy: Strategy) -> Refusal? {
        switch strategy {
        case .step:
            // A thread's slot may be anywhere: the plan a far slot gets (a borrowed register instead of
            // a re-targeted disp32), which refuses more.
            return Relocator.stepPlan(insn, slot: insn.address ^ (1 << 46)).refusal
        case .jump, .inline:
            // A trampoline near the code (scratch is mapped within reach of it).
            return Relocator.trampolinePlan(insn, at: insn.address &+ 0x1000).refusal
        }
    }

    /// A function's refusal: its entry breakpoint's, where it has one — under the inline and jump
    /// strategies only when no window records the entry (`plan`: the function's inline plan).
    public static func refusal(of function: Function, in image: ProcessImage, decoder: Decoder, strategy: Strategy,
                               plan: InlinePlan) -> Refusal? {
        if strategy != .step, plan.windows.contains(where: \.recordsEntry) { return nil }
        let entry = strategy == .inline
            ? plan.fallbacks.first(where: { $0.kind == .entry })?.address ?? InlineSites.entry(of: function, in: image, decoder: decoder)
            : InlineSites.entry(of: function, in: image, decoder: decoder)
        guard let bytes = image.fileBytes(at: entry, count: 16), !bytes.isEmpty else {
            return Refusal(reason: "no code in the file at \(hex(entry))")
        }
        guard let insn = decoder.decode(bytes, at: entry) else {
            return Refusal(reason: "the bytes there do not decode as an instruction")
        }
        return refusal(of: insn, strategy: strategy)
    }
}

import Relocator
import Symbols

/// Whether nstrace can put a breakpoint at a function's entry: the instruction there must be one the
/// Relocator can run elsewhere.
enum EntryCheck {
    static func refusal(for function: Function, in image: ProcessImage, decoder: Decoder) -> Refusal? {
        guard let bytes = image.fileBytes(at: function.address, count: 16), !bytes.isEmpty else {
            return Refusal(reason: "no code in the file at \(hex(function.address))")
        }
        guard let insn = decoder.decode(bytes, at: function.address) else {
            return Refusal(reason: "the first bytes do not decode as an x86-64 instruction")
        }
        return Relocator.refusal(for: insn)
    }
}

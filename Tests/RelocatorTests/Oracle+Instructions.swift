@testable import Relocator

/// What the oracle itself must know about a few instructions, read from their bytes independently of
/// the Relocator's own classification.
extension Oracle {
    private static let legacyPrefixBytes: Set<UInt8> = [0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67]

    static func legacyPrefixes(_ insn: Instruction) -> ArraySlice<UInt8> {
        insn.bytes.prefix(while: legacyPrefixBytes.contains)
    }

    /// The opcode byte: after legacy prefixes and a REX prefix.
    static func opcode(_ insn: Instruction) -> UInt8? {
        let rest = insn.bytes.dropFirst(legacyPrefixes(insn).count)
        guard let first = rest.first else { return nil }
        return (0x40...0x4f).contains(first) ? rest.dropFirst().first : first
    }

    /// movs, cmps, stos, lods, scas, ins, outs under a rep/repe/repne prefix: each iteration is a
    /// single-step of its own, with RIP staying on the instruction until the count runs out.
    static func isRepeatedString(_ insn: Instruction) -> Bool {
        guard legacyPrefixes(insn).contains(where: { $0 == 0xf2 || $0 == 0xf3 }), let op = opcode(insn) else { return false }
        return (0xa4...0xa7).contains(op) || (0xaa...0xaf).contains(op) || (0x6c...0x6f).contains(op)
    }

    /// pushf: single-stepped, it pushes the trap flag with the rest.
    static func pushesFlags(_ insn: Instruction) -> Bool {
        opcode(insn) == 0x9c
    }

    static func popsFlags(_ insn: Instruction) -> Bool {
        opcode(insn) == 0x9d
    }

    /// Registers no run can be expected to reproduce, each with why. Kept to the few instructions
    /// whose result is not a function of the state; every other register of every instruction is
    /// compared.
    static func unreproducibleRegisters(_ insn: Instruction) -> [GPR: String] {
        let mnemonic = insn.mnemonic.split(separator: " ").last.map(String.init) ?? insn.mnemonic
        switch mnemonic {
        case "rdtsc":
            return [.rax: "time-stamp counter", .rdx: "time-stamp counter"]
        case "rdtscp":
            return [.rax: "time-stamp counter", .rdx: "time-stamp counter", .rcx: "time-stamp counter"]
        case "rdrand", "rdseed":
            guard case .register(let r?, _)? = insn.operands.first else { return [:] }
            return [r: "random number"]
        case "syscall":
            // The instruction stores the address of the next instruction in RCX, for the kernel's
            // sysret: a relocated copy's own. The system call ABI declares RCX clobbered.
            return [.rcx: "syscall's return address for sysret"]
        default:
            return [:]
        }
    }
}

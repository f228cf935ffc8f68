import CCapstone

/// A decoded x86-64 instruction: what the Relocator needs of Capstone's detail, as plain values that
/// outlive the decoder.
public struct Instruction: Sendable, Hashable, CustomStringConvertible {
    public let address: UInt64
    public let bytes: [UInt8]
    public let mnemonic: String
    public let operandText: String

    /// Capstone's instruction id (`X86_INS_*`).
    let id: UInt32
    let groups: Set<UInt8>
    /// Legacy prefixes as Capstone sorts them: [rep/lock, segment, operand size, address size].
    let prefixes: [UInt8]
    let operands: [Operand]
    /// Offsets into `bytes` (0 when absent, as Capstone reports them).
    let modrmOffset: Int
    let displacementOffset: Int
    let displacementSize: Int
    /// Every register the instruction reads or writes, implicit ones included, as 64-bit families.
    let registersAccessed: Set<GPR>
    /// The registers it writes (64-bit families), implicit ones included.
    let registersWritten: Set<GPR>
    /// Whether it writes an XMM/YMM/ZMM register or the x87/MMX state, where floating-point arguments
    /// travel (Capstone's register lists).
    let writesVectorRegisters: Bool
    let touchesRIPImplicitly: Bool

    public var length: Int { bytes.count }

    /// The same instruction with other bytes of the same length (a re-encoded form of it).
    func replacingBytes(_ newBytes: [UInt8]) -> Instruction {
        Instruction(address: address, bytes: newBytes, mnemonic: mnemonic, operandText: operandText, id: id, groups: groups,
                    prefixes: prefixes, operands: operands, modrmOffset: modrmOffset, displacementOffset: displacementOffset,
                    displacementSize: displacementSize, registersAccessed: registersAccessed,
                    registersWritten: registersWritten, writesVectorRegisters: writesVectorRegisters,
                    touchesRIPImplicitly: touchesRIPImplicitly)
    }
    public var next: UInt64 { address &+ UInt64(bytes.count) }

    public var description: String {
        operandText.isEmpty ? mnemonic : "\(mnemonic) \(operandText)"
    }

    /// The memory operand addressed relative to RIP, if any.
    var ripRelativeOperand: MemoryOperand? {
        for case .memory(let m) in operands where m.base == .rip { return m }
        return nil
    }

    var isRIPRelative: Bool { ripRelativeOperand != nil }

    /// The address a RIP-relative operand refers to (a GOT slot, for a PLT stub's `jmp [rip+…]`).
    public var ripRelativeTarget: UInt64? {
        ripRelativeOperand.map { insn in UInt64(bitPattern: Int64(bitPattern: next) &+ insn.displacement) }
    }

    /// An indirect jump through memory (`jmp qword [...]`).
    public var isJumpThroughMemory: Bool {
        guard id == X86_INS_JMP.rawValue, case .memory? = operands.first else { return false }
        return true
    }

    /// `endbr64`, which CET puts first in a PLT stub too.
    public var isEndBranch: Bool { id == X86_INS_ENDBR64.rawValue }

    func inGroup(_ group: Int32) -> Bool { groups.contains(UInt8(truncatingIfNeeded: group)) }

    var hasOperandSizePrefix: Bool { prefixes.count > 2 && prefixes[2] == 0x66 }
    var hasAddressSizePrefix: Bool { prefixes.count > 3 && prefixes[3] == 0x67 }

    /// Index of the byte after the legacy prefixes: a REX, VEX/EVEX/XOP lead byte, or the opcode.
    var afterLegacyPrefixes: Int {
        var i = 0
        while i < bytes.count, [0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67].contains(bytes[i]) {
            i += 1
        }
        return i
    }
}

/// A general-purpose register family, numbered as ModRM, REX and VEX number them.
public enum GPR: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15
    /// Not a GPR; the base of a RIP-relative operand.
    case rip = 16

    public var description: String {
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
         "r14", "r15", "rip"][rawValue]
    }
}

enum Segment: Sendable, Hashable { case fs, gs }

struct MemoryOperand: Sendable, Hashable {
    let base: GPR?
    let index: GPR?
    let scale: Int
    let displacement: Int64
    let segment: Segment?
    /// Capstone reports a segment it does not model (cs, ds, es, ss overrides are no-ops in 64-bit).
    let size: Int
}

enum Operand: Sendable, Hashable {
    case register(GPR?, size: Int)
    case immediate(Int64)
    case memory(MemoryOperand)
}

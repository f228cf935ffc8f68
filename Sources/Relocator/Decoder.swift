import CCapstone

/// Capstone 4 with detail on, decoding one x86-64 instruction at a time. A Capstone handle is not
/// thread-safe: give each thread its own Decoder.
public final class Decoder {
    private var handle: csh = 0
    private let scratch: UnsafeMutablePointer<cs_insn>
    /// Capstone register id → 64-bit family, built from Capstone's own register names.
    private let families: [UInt32: GPR]

    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    public init() throws(OpenError) {
        var h: csh = 0
        let status = cs_open(CS_ARCH_X86, CS_MODE_64, &h)
        guard status == CS_ERR_OK else {
            throw OpenError(description: "capstone: \(String(cString: cs_strerror(status)))")
        }
        cs_option(h, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue))
        guard let insn = cs_malloc(h) else {
            cs_close(&h)
            throw OpenError(description: "capstone: out of memory")
        }
        handle = h
        scratch = insn
        families = Decoder.registerFamilies(h)
    }

    deinit {
        cs_free(scratch, 1)
        cs_close(&handle)
    }

    /// The instruction at the start of `bytes`, which sit at `address`; nil if they do not decode.
    public func decode(_ bytes: [UInt8], at address: UInt64) -> Instruction? {
        guard !bytes.isEmpty else { return nil }
        return bytes.withUnsafeBufferPointer { buffer -> Instruction? in
            var code: UnsafePointer<UInt8>? = buffer.baseAddress
            var size = buffer.count
            var pc = address
            guard cs_disasm_iter(handle, &code, &size, &pc, scratch) else { return nil }
            return convert(scratch)
        }
    }

    /// Every instruction of a byte range, in order, stopping at the first that does not decode.
    public func decodeAll(_ bytes: [UInt8], at address: UInt64) -> [Instruction] {
        var out: [Instruction] = []
        var offset = 0
        while offset < bytes.count,
              let insn = decode(Array(bytes[offset..<min(bytes.count, offset + 15)]), at: address &+ UInt64(offset)) {
            out.append(insn)
            offset += insn.length
        }
        return out
    }

    private func convert(_ insn: UnsafeMutablePointer<cs_insn>) -> Instruction? {
        guard let detail = insn.pointee.detail else { return nil }
        let x86 = detail.pointee.x86
        let length = Int(insn.pointee.size)
        let bytes = withUnsafeBytes(of: insn.pointee.bytes) { Array($0.prefix(length)) }
        let mnemonic = withUnsafeBytes(of: insn.pointee.mnemonic) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let operandText = withUnsafeBytes(of: insn.pointee.op_str) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let groups = withUnsafeBytes(of: detail.pointee.groups) { Set($0.prefix(Int(detail.pointee.groups_count))) }
        let prefixes = withUnsafeBytes(of: x86.prefix) { Array($0) }

        var operands: [Operand] = []
        withUnsafeBytes(of: x86.operands) { raw in
            let ops = raw.bindMemory(to: cs_x86_op.self)
            for i in 0..<Int(x86.op_count) {
                let op = ops[i]
                switch op.type {
                case X86_OP_REG:
                    operands.append(.register(families[op.reg.rawValue], size: Int(op.size)))
                case X86_OP_IMM:
                    operands.append(.immediate(op.imm))
                case X86_OP_MEM:
                    let m = op.mem
                    let segment: Segment? = m.segment == X86_REG_FS ? .fs : m.segment == X86_REG_GS ? .gs : nil
                    let base: GPR? = m.base == X86_REG_RIP || m.base == X86_REG_EIP ? .rip : families[m.base.rawValue]
                    operands.append(.memory(MemoryOperand(base: base, index: families[m.index.rawValue],
                                                          scale: Int(m.scale), displacement: m.disp,
                                                          segment: segment, size: Int(op.size))))
                default:
                    break
                }
            }
        }

        var accessed = Set<GPR>()
        var written = Set<GPR>()
        var writesVector = false
        var touchesRIP = false
        var readRegs = [UInt16](repeating: 0, count: 64), writeRegs = [UInt16](repeating: 0, count: 64)
        var readCount: UInt8 = 0, writeCount: UInt8 = 0
        if cs_regs_access(handle, insn, &readRegs, &readCount, &writeRegs, &writeCount) == CS_ERR_OK {
            for reg in readRegs.prefix(Int(readCount)) + writeRegs.prefix(Int(writeCount)) {
                guard let family = families[UInt32(reg)] else { continue }
                if family == .rip { touchesRIP = true } else { accessed.insert(family) }
            }
            for reg in writeRegs.prefix(Int(writeCount)) {
                if let family = families[UInt32(reg)] {
                    if family != .rip { written.insert(family) }
                } else if let name = cs_reg_name(handle, UInt32(reg)) {
                    let n = String(cString: name)
                    if n.hasPrefix("xmm") || n.hasPrefix("ymm") || n.hasPrefix("zmm") || n.hasPrefix("st") || n.hasPrefix("mm") {
                        writesVector = true
                    }
                }
            }
        } else {
            // Unknown: assume the worst, so no analysis takes a register for untouched.
            written = Set(GPR.allCases.filter { $0 != .rip })
            writesVector = true
        }
        // Registers named inside a memory operand are reads too (Capstone lists them, but be certain).
        for case .memory(let m) in operands {
            if let b = m.base, b != .rip { accessed.insert(b) }
            if let i = m.index { accessed.insert(i) }
        }
        for case .register(let r?, _) in operands where r != .rip { accessed.insert(r) }

        let modrmOffset = Int(x86.encoding.modrm_offset)
        var displacementOffset = Int(x86.encoding.disp_offset), displacementSize = Int(x86.encoding.disp_size)
        if let riprel = Self.ripRelativeDisplacement(bytes, modrmOffset: modrmOffset, operands: operands) {
            (displacementOffset, displacementSize) = riprel
        }
        return Instruction(
            address: insn.pointee.address, bytes: bytes, mnemonic: mnemonic, operandText: operandText,
            id: insn.pointee.id, groups: groups, prefixes: prefixes, operands: operands,
            modrmOffset: modrmOffset, displacementOffset: displacementOffset,
            displacementSize: displacementSize, registersAccessed: accessed, registersWritten: written,
            writesVectorRegisters: writesVector,
            touchesRIPImplicitly: touchesRIP)
    }

    /// Where a RIP-relative operand's displacement is, from the ModRM byte itself: in 64-bit mode
    /// mod 00 rm 101 is always a disp32 right after ModRM. Capstone 4 reports a disp_size of 2 when
    /// an operand-size prefix is present, legacy 0x66 or implied by VEX/EVEX pp (`mov word [rip+x], 1`,
    /// `movdqa`, `vmovdqa`, `vpaddd zmm`), which would otherwise refuse them. nil when Capstone's ModRM
    /// offset does not point at such a byte: then its own figures stand (and the Relocator refuses).
    static func ripRelativeDisplacement(_ bytes: [UInt8], modrmOffset: Int, operands: [Operand]) -> (Int, Int)? {
        let ripRelative = operands.contains { if case .memory(let m) = $0 { return m.base == .rip }; return false }
        guard ripRelative, modrmOffset > 0, modrmOffset + 5 <= bytes.count, bytes[modrmOffset] & 0xc7 == 0x05
        else { return nil }
        return (modrmOffset + 1, 4)
    }

    private static func registerFamilies(_ handle: csh) -> [UInt32: GPR] {
        let names: [GPR: [String]] = [
            .rax: ["rax", "eax", "ax", "al", "ah"], .rcx: ["rcx", "ecx", "cx", "cl", "ch"],
            .rdx: ["rdx", "edx", "dx", "dl", "dh"], .rbx: ["rbx", "ebx", "bx", "bl", "bh"],
            .rsp: ["rsp", "esp", "sp", "spl"], .rbp: ["rbp", "ebp", "bp", "bpl"],
            .rsi: ["rsi", "esi", "si", "sil"], .rdi: ["rdi", "edi", "di", "dil"],
            .rip: ["rip", "eip", "ip"],
        ]
        var byName: [String: GPR] = [:]
        for (family, spellings) in names { for s in spellings { byName[s] = family } }
        for n in 8...15 {
            guard let family = GPR(rawValue: n) else { continue }
            for suffix in ["", "d", "w", "b"] { byName["r\(n)\(suffix)"] = family }
        }
        var map: [UInt32: GPR] = [:]
        for id in 1..<X86_REG_ENDING.rawValue {
            if let name = cs_reg_name(handle, id), let family = byName[String(cString: name)] {
                map[id] = family
            }
        }
        return map
    }
}

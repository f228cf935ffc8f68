/// Writes x86-64 machine code for code that will run at `base`: one method per instruction form, as
/// frida-gum's GumX86Writer has them, so that no caller assembles bytes by hand. Forward branches go to
/// labels, resolved by `finish()`.
public struct X86Writer {
    public let base: UInt64
    public private(set) var code: [UInt8] = []
    private var labelOffsets: [Int?] = []
    private var fixups: [(at: Int, label: Int)] = []

    public init(base: UInt64) {
        self.base = base
    }

    /// Where the next byte goes, in the address space the code runs in.
    public var pc: UInt64 { base &+ UInt64(code.count) }

    public struct Label: Hashable { fileprivate let id: Int }

    public enum Condition: UInt8, Sendable {
        case o = 0, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
    }

    // MARK: Labels

    public mutating func newLabel() -> Label {
        labelOffsets.append(nil)
        return Label(id: labelOffsets.count - 1)
    }

    public mutating func bind(_ label: Label) {
        labelOffsets[label.id] = code.count
    }

    /// The code with every branch to a label filled in; nil if a label was never bound.
    public func finish() -> [UInt8]? {
        var out = code
        for fixup in fixups {
            guard let target = labelOffsets[fixup.label] else { return nil }
            let rel = Int32(target - (fixup.at + 4))
            withUnsafeBytes(of: rel.littleEndian) { for i in 0..<4 { out[fixup.at + i] = $0[i] } }
        }
        return out
    }

    // MARK: Raw

    public mutating func putBytes(_ bytes: [UInt8]) { code += bytes }

    private mutating func putImm32(_ value: Int32) {
        withUnsafeBytes(of: value.littleEndian) { code += $0 }
    }

    private mutating func putImm64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { code += $0 }
    }

    /// REX with W, R (reg field), B (base or rm); emitted only when something is set (or `force`).
    private mutating func putREX(w: Bool, reg: Int = 0, base: Int = 0, force: Bool = false) {
        let rex: UInt8 = 0x40 | (w ? 8 : 0) | (reg >= 8 ? 4 : 0) | (base >= 8 ? 1 : 0)
        if rex != 0x40 || force { code.append(rex) }
    }

    /// ModRM (and SIB) for `[base + disp]`, disp8 when it fits, with `reg` in the reg field.
    private mutating func putMemoryOperand(reg: Int, base: GPR, displacement: Int32) {
        let rm = UInt8(base.rawValue & 7)
        let short = Int8(exactly: displacement)
        let mod: UInt8 = short != nil ? 0b01 : 0b10
        code.append(mod << 6 | UInt8(reg & 7) << 3 | rm)
        if rm == 4 { code.append(0x24) }  // rsp and r12 as a base need a SIB byte
        if let short { code.append(UInt8(bitPattern: short)) } else { putImm32(displacement) }
    }

    /// REX, the opcode bytes, then ModRM (and SIB) for `[base + disp]` with `reg` in the reg field
    /// (a register, or an opcode extension).
    private mutating func putMemoryForm(_ opcode: [UInt8], wide: Bool, reg: Int, base: GPR, displacement: Int32) {
        putREX(w: wide, reg: reg, base: base.rawValue)
        code += opcode
        putMemoryOperand(reg: reg, base: base, displacement: displacement)
    }

    private mutating func putRegisterOperand(reg: Int, rm: Int) {
        code.append(0b11 << 6 | UInt8(reg & 7) << 3 | UInt8(rm & 7))
    }

    // MARK: Stack and flags

    public mutating func putPush(_ register: GPR) {
        if register.rawValue >= 8 { code.append(0x41) }
        code.append(0x50 | UInt8(register.rawValue & 7))
    }

    public mutating func putPop(_ register: GPR) {
        if register.rawValue >= 8 { code.append(0x41) }
        code.append(0x58 | UInt8(register.rawValue & 7))
    }

    public mutating func putPushfq() { code.append(0x9c) }
    public mutating func putPopfq() { code.append(0x9d) }

    // MARK: Moves

    /// `lea dst, [base + disp]` (64-bit).
    public mutating func putLea(_ dst: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x8d], wide: true, reg: dst.rawValue, base: base, displacement: displacement)
    }

    /// `lea dst, [base + index]` (64-bit, scale 1, no displacement).
    public mutating func putLeaIndexed(_ dst: GPR, base: GPR, index: GPR, displacement: Int32) {
        let rex: UInt8 = 0x48 | (dst.rawValue >= 8 ? 4 : 0) | (index.rawValue >= 8 ? 2 : 0) | (base.rawValue >= 8 ? 1 : 0)
        code.append(rex)
        code.append(0x8d)
        code.append(0b10 << 6 | UInt8(dst.rawValue & 7) << 3 | 0b100)
        code.append(UInt8(index.rawValue & 7) << 3 | UInt8(base.rawValue & 7))
        putImm32(displacement)
    }

    /// `mov dst, src` (64-bit).
    public mutating func putMov(_ dst: GPR, _ src: GPR) {
        putREX(w: true, reg: src.rawValue, base: dst.rawValue)
        code.append(0x89)
        putRegisterOperand(reg: src.rawValue, rm: dst.rawValue)
    }

    /// `mov dst32, src32`: the upper half of dst is zeroed.
    public mutating func putMov32(_ dst: GPR, _ src: GPR) {
        putREX(w: false, reg: src.rawValue, base: dst.rawValue)
        code.append(0x89)
        putRegisterOperand(reg: src.rawValue, rm: dst.rawValue)
    }

    public mutating func putMovImm64(_ dst: GPR, _ value: UInt64) {
        if let small = UInt32(exactly: value) {
            putREX(w: false, base: dst.rawValue)
            code.append(0xb8 | UInt8(dst.rawValue & 7))
            putImm32(Int32(bitPattern: small))
            return
        }
        putREX(w: true, base: dst.rawValue)
        code.append(0xb8 | UInt8(dst.rawValue & 7))
        putImm64(value)
    }

    /// `mov dst, qword [base + disp]`.
    public mutating func putLoad(_ dst: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x8b], wide: true, reg: dst.rawValue, base: base, displacement: displacement)
    }

    /// `mov dst32, dword [base + disp]`: zero-extends into dst.
    public mutating func putLoad32(_ dst: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x8b], wide: false, reg: dst.rawValue, base: base, displacement: displacement)
    }

    /// `mov qword [base + disp], src`.
    public mutating func putStore(_ src: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x89], wide: true, reg: src.rawValue, base: base, displacement: displacement)
    }

    /// `mov dword [base + disp], src32`.
    public mutating func putStore32(_ src: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x89], wide: false, reg: src.rawValue, base: base, displacement: displacement)
    }

    /// `mov dword [base + disp], imm32`.
    public mutating func putStoreImm32(_ value: UInt32, base: GPR, displacement: Int32) {
        putMemoryForm([0xc7], wide: false, reg: 0, base: base, displacement: displacement)
        putImm32(Int32(bitPattern: value))
    }

    /// `and qword [base + disp], simm32`.
    public mutating func putAndStore(_ value: Int32, base: GPR, displacement: Int32) {
        putMemoryForm([0x81], wide: true, reg: 4, base: base, displacement: displacement)
        putImm32(value)
    }

    /// `mov qword [base + disp], simm32`.
    public mutating func putStoreImm64(_ value: Int32, base: GPR, displacement: Int32) {
        putMemoryForm([0xc7], wide: true, reg: 0, base: base, displacement: displacement)
        putImm32(value)
    }

    /// `mov dst, qword [rip + …]` reading the 8 bytes at `address`; nil when out of disp32 reach.
    @discardableResult
    public mutating func putLoadRIPRelative(_ dst: GPR, address: UInt64) -> Bool {
        putREX(w: true, reg: dst.rawValue)
        code.append(0x8b)
        code.append(UInt8(dst.rawValue & 7) << 3 | 0b101)
        let next = Int64(bitPattern: pc &+ 4)
        guard let rel = Int32(exactly: Int64(bitPattern: address) &- next) else { putImm32(0); return false }
        putImm32(rel)
        return true
    }

    /// `mov dst32, dword fs:[disp]`: a field of the thread's TCB.
    public mutating func putLoadFS32(_ dst: GPR, displacement: Int32) {
        code.append(0x64)
        putREX(w: false, reg: dst.rawValue)
        code.append(0x8b)
        code.append(UInt8(dst.rawValue & 7) << 3 | 0b100)  // SIB, no base: absolute disp32
        code.append(0x25)
        putImm32(displacement)
    }

    /// `movq qword [base + disp], xmmN`: the low 8 bytes.
    public mutating func putStoreXMM64(_ xmm: Int, base: GPR, displacement: Int32) {
        code.append(0x66)
        putMemoryForm([0x0f, 0xd6], wide: false, reg: xmm, base: base, displacement: displacement)
    }

    /// `movdqu [base + disp], xmmN`: all 16 bytes.
    public mutating func putStoreXMM128(_ xmm: Int, base: GPR, displacement: Int32) {
        code.append(0xf3)
        putMemoryForm([0x0f, 0x7f], wide: false, reg: xmm, base: base, displacement: displacement)
    }

    /// `fstp tword [base + disp]`: st(0) stored exactly (80 bits) and popped.
    public mutating func putStoreX87Pop(base: GPR, displacement: Int32) {
        putMemoryForm([0xdb], wide: false, reg: 7, base: base, displacement: displacement)
    }

    /// `fld tword [base + disp]`: pushes the 80 bits back as st(0).
    public mutating func putLoadX87(base: GPR, displacement: Int32) {
        putMemoryForm([0xdb], wide: false, reg: 5, base: base, displacement: displacement)
    }

    // MARK: Arithmetic

    /// `add dst, src` (64-bit).
    public mutating func putAdd(_ dst: GPR, _ src: GPR) {
        putREX(w: true, reg: src.rawValue, base: dst.rawValue)
        code.append(0x01)
        putRegisterOperand(reg: src.rawValue, rm: dst.rawValue)
    }

    /// `sub dst, src` (64-bit).
    public mutating func putSub(_ dst: GPR, _ src: GPR) {
        putREX(w: true, reg: src.rawValue, base: dst.rawValue)
        code.append(0x29)
        putRegisterOperand(reg: src.rawValue, rm: dst.rawValue)
    }

    /// `sub dst, qword [base + disp]`.
    public mutating func putSubLoad(_ dst: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x2b], wide: true, reg: dst.rawValue, base: base, displacement: displacement)
    }

    /// `or dst, src` (64-bit).
    public mutating func putOr(_ dst: GPR, _ src: GPR) {
        putREX(w: true, reg: src.rawValue, base: dst.rawValue)
        code.append(0x09)
        putRegisterOperand(reg: src.rawValue, rm: dst.rawValue)
    }

    /// `and dst32, imm32` (zero-extends).
    public mutating func putAnd32(_ dst: GPR, _ value: UInt32) {
        putREX(w: false, base: dst.rawValue)
        code.append(0x81)
        putRegisterOperand(reg: 4, rm: dst.rawValue)
        putImm32(Int32(bitPattern: value))
    }

    /// `and dst, simm32` (64-bit).
    public mutating func putAnd(_ dst: GPR, _ value: Int32) {
        putREX(w: true, base: dst.rawValue)
        code.append(0x81)
        putRegisterOperand(reg: 4, rm: dst.rawValue)
        putImm32(value)
    }

    /// `add dst, simm32` (64-bit).
    public mutating func putAddImm(_ dst: GPR, _ value: Int32) {
        putREX(w: true, base: dst.rawValue)
        code.append(0x81)
        putRegisterOperand(reg: 0, rm: dst.rawValue)
        putImm32(value)
    }

    /// `shl dst, n` (64-bit).
    public mutating func putShl(_ dst: GPR, _ count: UInt8) {
        putREX(w: true, base: dst.rawValue)
        code.append(0xc1)
        putRegisterOperand(reg: 4, rm: dst.rawValue)
        code.append(count)
    }

    /// `cmp dst, simm32` (64-bit).
    public mutating func putCmpImm(_ dst: GPR, _ value: Int32) {
        putREX(w: true, base: dst.rawValue)
        code.append(0x81)
        putRegisterOperand(reg: 7, rm: dst.rawValue)
        putImm32(value)
    }

    /// `cmp a, b` (64-bit): flags from a − b.
    public mutating func putCmp(_ a: GPR, _ b: GPR) {
        putREX(w: true, reg: b.rawValue, base: a.rawValue)
        code.append(0x39)
        putRegisterOperand(reg: b.rawValue, rm: a.rawValue)
    }

    /// `cmp a, qword [base + disp]`.
    public mutating func putCmpLoad(_ a: GPR, base: GPR, displacement: Int32) {
        putMemoryForm([0x3b], wide: true, reg: a.rawValue, base: base, displacement: displacement)
    }

    /// `cmp byte [base + disp], imm8`.
    public mutating func putCmpByteImm(base: GPR, displacement: Int32, _ value: UInt8) {
        putMemoryForm([0x80], wide: false, reg: 7, base: base, displacement: displacement)
        code.append(value)
    }

    /// `cmp qword [base + index*8 + disp], imm8`.
    public mutating func putCmpIndexedImm8(base: GPR, index: GPR, displacement: Int32, _ value: Int8) {
        putIndexedOperandPrefix(0x83, reg: 7, base: base, index: index, displacement: displacement)
        code.append(UInt8(bitPattern: value))
    }

    /// `lock inc qword [base + index*8 + disp]`.
    public mutating func putLockIncIndexed(base: GPR, index: GPR, displacement: Int32) {
        code.append(0xf0)
        putIndexedOperandPrefix(0xff, reg: 0, base: base, index: index, displacement: displacement)
    }

    /// REX.W, `opcode`, ModRM and SIB for `[base + index*8 + disp32]`.
    private mutating func putIndexedOperandPrefix(_ opcode: UInt8, reg: Int, base: GPR, index: GPR, displacement: Int32) {
        code.append(0x48 | (index.rawValue >= 8 ? 2 : 0) | (base.rawValue >= 8 ? 1 : 0))
        code.append(opcode)
        code.append(0b10 << 6 | UInt8(reg & 7) << 3 | 0b100)
        code.append(0b11 << 6 | UInt8(index.rawValue & 7) << 3 | UInt8(base.rawValue & 7))
        putImm32(displacement)
    }

    // MARK: Atomics

    /// `lock cmpxchg qword [base + disp], src`: compares with rax.
    public mutating func putLockCmpxchg(base: GPR, displacement: Int32, _ src: GPR) {
        code.append(0xf0)
        putMemoryForm([0x0f, 0xb1], wide: true, reg: src.rawValue, base: base, displacement: displacement)
    }

    /// `lock xadd qword [base + disp], src`: src gets the old value.
    public mutating func putLockXadd(base: GPR, displacement: Int32, _ src: GPR) {
        code.append(0xf0)
        putMemoryForm([0x0f, 0xc1], wide: true, reg: src.rawValue, base: base, displacement: displacement)
    }

    /// `lock inc qword [base + disp]`.
    public mutating func putLockInc(base: GPR, displacement: Int32) {
        code.append(0xf0)
        putMemoryForm([0xff], wide: true, reg: 0, base: base, displacement: displacement)
    }

    // MARK: Control flow

    public mutating func putJcc(_ condition: Condition, _ label: Label) {
        code += [0x0f, 0x80 | condition.rawValue]
        fixups.append((code.count, label.id))
        putImm32(0)
    }

    public mutating func putJmp(_ label: Label) {
        code.append(0xe9)
        fixups.append((code.count, label.id))
        putImm32(0)
    }

    /// A jump to an absolute address: `jmp rel32` when it reaches, else `jmp [rip+0]` over the address.
    public mutating func putJmpAddress(_ target: UInt64) {
        if let rel = Int32(exactly: Int64(bitPattern: target) &- Int64(bitPattern: pc &+ 5)) {
            code.append(0xe9)
            putImm32(rel)
            return
        }
        code += [0xff, 0x25, 0, 0, 0, 0]
        putImm64(target)
    }

    /// `jmp reg`.
    public mutating func putJmpRegister(_ register: GPR) {
        putREX(w: false, base: register.rawValue)
        code.append(0xff)
        putRegisterOperand(reg: 4, rm: register.rawValue)
    }

    /// A conditional jump to an absolute address: `jcc rel32` when it reaches, else the inverted
    /// condition over an absolute jump.
    public mutating func putJccAddress(_ condition: Condition, _ target: UInt64) {
        if let rel = Int32(exactly: Int64(bitPattern: target) &- Int64(bitPattern: pc &+ 6)) {
            code += [0x0f, 0x80 | condition.rawValue]
            putImm32(rel)
            return
        }
        let skip = newLabel()
        putJcc(Condition(rawValue: condition.rawValue ^ 1) ?? .no, skip)
        putJmpAddress(target)
        bind(skip)
    }

    public mutating func putRet(popping bytes: UInt16 = 0) {
        if bytes == 0 {
            code.append(0xc3)
        } else {
            code.append(0xc2)
            withUnsafeBytes(of: bytes.littleEndian) { code += $0 }
        }
    }

    // MARK: Misc

    public mutating func putRdtsc() { code += [0x0f, 0x31] }
    public mutating func putPause() { code += [0xf3, 0x90] }
    public mutating func putNop() { code.append(0x90) }
    public mutating func putSyscall() { code += [0x0f, 0x05] }
    public mutating func putInt3() { code.append(0xcc) }

    /// Pads with int3 until `pc` is a multiple of `alignment` (a power of two).
    public mutating func align(_ alignment: Int) {
        while pc % UInt64(alignment) != 0 { code.append(0xcc) }
    }
}

import Glibc
import Relocator
import Symbols

/// Reads argument and return values out of a stopped thread, as DWARF typed them and the ABI placed
/// them. Everything read is untrusted: a bad pointer gives `.badString`, never a crash.
struct ArgumentReader {
    let regs: user_regs_struct
    let memory: TraceeMemory
    let maxString: Int
    /// Fetched once, only if a value lives in an XMM register.
    private var fpRegs: user_fpregs_struct?
    private let tid: pid_t

    init(tid: pid_t, regs: user_regs_struct, memory: TraceeMemory, maxString: Int) {
        self.tid = tid
        self.regs = regs
        self.memory = memory
        self.maxString = maxString
    }

    mutating func arguments(_ signature: Signature?) -> [ArgumentValue] {
        guard let signature else { return [] }
        return signature.parameters.map { value(of: $0.type, at: $0.location) }
    }

    mutating func returnValue(_ signature: Signature?) -> ArgumentValue? {
        guard let results = signature?.results, let first = results.first else { return nil }
        if results.count == 1 { return value(of: first.type, at: first.location) }
        return .tuple(results.map { value(of: $0.type, at: $0.location) })
    }

    mutating func value(of type: ValueType, at location: ParameterLocation) -> ArgumentValue {
        let size = type.byteSize > 0 ? type.byteSize : 8
        guard let raw = bytes(at: location, size: size) else { return .unavailable }
        return interpret(raw, as: type)
    }

    private mutating func bytes(at location: ParameterLocation, size: Int) -> [UInt8]? {
        switch location {
        case .register(let r):
            return Array(registerBytes(r).prefix(size))
        case .pieces(let pieces):
            var out: [UInt8] = []
            for piece in pieces { out += registerBytes(piece.register).prefix(piece.size) }
            return out
        case .stack(let offset):
            let bytes = try? memory.read(regs.rsp &+ UInt64(bitPattern: Int64(offset)), count: min(size, 4096))
            return bytes?.count == min(size, 4096) ? bytes : nil
        case .unknown:
            return nil
        }
    }

    private mutating func registerBytes(_ register: Register) -> [UInt8] {
        if case .xmm(let i) = register {
            if fpRegs == nil { fpRegs = try? Ptrace.getFPRegs(tid) }
            guard let fp = fpRegs, i < 16 else { return [] }
            return withUnsafeBytes(of: fp.xmm_space) { Array($0[(i * 16)..<(i * 16 + 16)]) }
        }
        let value: UInt64
        switch register {
        case .rax: value = regs.rax
        case .rdx: value = regs.rdx
        case .rcx: value = regs.rcx
        case .rbx: value = regs.rbx
        case .rsi: value = regs.rsi
        case .rdi: value = regs.rdi
        case .rbp: value = regs.rbp
        case .rsp: value = regs.rsp
        case .r8: value = regs.r8
        case .r9: value = regs.r9
        case .r10: value = regs.r10
        case .r11: value = regs.r11
        case .r12: value = regs.r12
        case .r13: value = regs.r13
        case .r14: value = regs.r14
        case .r15: value = regs.r15
        case .xmm: value = 0
        }
        return withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    private func word(_ raw: [UInt8], _ index: Int = 0) -> UInt64 {
        var value: UInt64 = 0
        for (i, byte) in raw.dropFirst(index * 8).prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        return value
    }

    /// The first few elements of a Go slice, for element types that print on their own.
    private func sliceElements(at address: UInt64, length: UInt64, of element: ValueType?) -> [ArgumentValue] {
        guard let element, address != 0, length > 0, element.byteSize > 0, element.byteSize <= 16,
              [.signed, .unsigned, .float, .bool, .char, .pointer, .goString].contains(element.kind)
        else { return [] }
        let count = Int(min(length, 8))
        guard let bytes = try? memory.read(address, count: count * element.byteSize),
              bytes.count == count * element.byteSize else { return [] }
        return (0..<count).map { i in
            interpret(Array(bytes[(i * element.byteSize)..<((i + 1) * element.byteSize)]), as: element)
        }
    }

    private func interpret(_ raw: [UInt8], as type: ValueType) -> ArgumentValue {
        let size = min(max(type.byteSize, 1), 8)
        let bits = word(raw)
        let masked = size == 8 ? bits : bits & ((1 << (8 * UInt64(size))) - 1)
        switch type.kind {
        case .signed, .enumeration:
            let shift = UInt64(64 - 8 * size)
            return .signed(Int64(bitPattern: masked << shift) >> Int64(shift))
        case .unsigned: return .unsigned(masked)
        case .bool: return .bool(masked & 0xff != 0)
        case .char: return .char(UInt8(truncatingIfNeeded: masked))
        case .float:
            if type.byteSize == 4 { return .float(Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))) }
            if type.byteSize == 8 { return .float(Double(bitPattern: bits)) }
            return .unavailable
        case .pointer: return .pointer(bits)
        case .cString:
            if bits == 0 { return .pointer(0) }
            guard let s = memory.string(at: bits, limit: maxString) else { return .badString(address: bits) }
            return .string(s.bytes, truncated: s.truncated, address: bits)
        case .goString:
            let pointer = word(raw, 0), length = word(raw, 1)
            let preview = min(Int(clamping: length), maxString)
            let bytes = preview > 0 ? (try? memory.read(pointer, count: preview)) ?? [] : []
            return .goString(bytes, truncated: length > UInt64(preview), length: length)
        case .goSlice:
            let address = word(raw, 0), length = word(raw, 1)
            return .goSlice(address: address, length: length, capacity: word(raw, 2),
                            elements: sliceElements(at: address, length: length, of: type.element))
        case .goInterface:
            return .goInterface(type: word(raw, 0), data: word(raw, 1))
        case .aggregate: return .aggregate(raw)
        case .other: return .unsigned(bits)
        }
    }
}

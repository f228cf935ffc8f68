import Glibc
import Relocator
import Symbols

/// Where values are read from: a stopped thread (its registers and memory), or a record an inline
/// pad wrote (the registers and memory it copied).
protocol ValueSource {
    /// The register's bytes, low first: 8 for a general register, 16 for an XMM register; empty when
    /// not available.
    mutating func registerBytes(_ register: Register) -> [UInt8]
    /// `count` bytes of memory, or nil when they cannot all be read.
    func read(_ address: UInt64, count: Int) -> [UInt8]?
    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)?
    /// The stack pointer at entry, which stack-passed arguments are found from.
    var stackPointer: UInt64 { get }
}

/// Reads argument and return values, as DWARF typed them and the ABI placed them. Everything read is
/// untrusted: a bad pointer gives `.badString`, never a crash.
struct ArgumentReader<Source: ValueSource> {
    private var source: Source
    let maxString: Int
    /// Whether a pointer to a struct, union or scalar is followed one level (`--deref`).
    let deref: Bool

    /// The most bytes one value is read as: a larger struct shows what fits.
    static var maxValueBytes: Int { 4096 }

    init(_ source: Source, maxString: Int, deref: Bool = false) {
        self.source = source
        self.maxString = maxString
        self.deref = deref
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
        let size = type.byteSize > 0 ? min(type.byteSize, ArgumentReader.maxValueBytes) : 8
        guard let raw = bytes(at: location, size: size) else { return .unavailable }
        return interpret(raw, as: type)
    }

    private mutating func bytes(at location: ParameterLocation, size: Int) -> [UInt8]? {
        switch location {
        case .register(let r):
            let bytes = source.registerBytes(r)
            return bytes.isEmpty ? nil : Array(bytes.prefix(size))
        case .pieces(let pieces):
            var out: [UInt8] = []
            for piece in pieces {
                let bytes = source.registerBytes(piece.register)
                if bytes.isEmpty { return nil }
                out += bytes.prefix(piece.size)
            }
            return out
        case .stack(let offset):
            return source.read(source.stackPointer &+ UInt64(bitPattern: Int64(offset)), count: size)
        case .indirect(let r):
            let pointer = source.registerBytes(r)
            guard pointer.count >= 8 else { return nil }
            return source.read(word(pointer), count: size)
        case .unknown:
            return nil
        }
    }

    private func word(_ raw: [UInt8], _ index: Int = 0) -> UInt64 { littleEndianWord(raw.dropFirst(index * 8)) }

    /// The first few elements of a Go slice, for element types that print on their own.
    private mutating func sliceElements(at address: UInt64, length: UInt64, of element: ValueType?) -> [ArgumentValue] {
        guard let element, address != 0, length > 0, element.byteSize > 0, element.byteSize <= 16,
              [.signed, .unsigned, .float, .bool, .char, .pointer, .goString].contains(element.kind)
        else { return [] }
        let count = Int(min(length, 8))
        guard let bytes = source.read(address, count: count * element.byteSize) else { return [] }
        return (0..<count).map { i in
            interpret(Array(bytes[(i * element.byteSize)..<((i + 1) * element.byteSize)]), as: element)
        }
    }

    private mutating func interpret(_ raw: [UInt8], as type: ValueType) -> ArgumentValue {
        if let wide = ArgumentReader.wide(raw[...], as: type) { return wide }
        let bits = word(raw)
        if type.kind == .pointer, deref, let pointee = type.pointee, bits != 0 {
            let size = min(max(pointee.byteSize, 1), ArgumentReader.maxValueBytes)
            guard let target = source.read(bits, count: size) else { return .unreadablePointer(bits) }
            return .pointee(address: bits, value: ArgumentReader.decode(target[...], as: pointee))
        }
        if let scalar = type.scalar(bits) { return scalar }
        switch type.kind {
        case .signed, .enumeration, .unsigned, .bool, .char, .float, .pointer, .other: return .unavailable
        case .cString:
            if bits == 0 { return .pointer(0) }
            guard let s = source.string(at: bits, limit: maxString) else { return .badString(address: bits) }
            return .string(s.bytes, truncated: s.truncated, address: bits)
        case .goString:
            let pointer = word(raw, 0), length = word(raw, 1)
            let preview = min(Int(clamping: length), maxString)
            let bytes = preview > 0 ? source.read(pointer, count: preview) ?? [] : []
            return .goString(bytes, truncated: length > UInt64(preview), length: length)
        case .goSlice:
            let address = word(raw, 0), length = word(raw, 1)
            return .goSlice(address: address, length: length, capacity: word(raw, 2),
                            elements: sliceElements(at: address, length: length, of: type.element))
        case .goInterface:
            return .goInterface(type: word(raw, 0), data: word(raw, 1))
        case .aggregate: return ArgumentReader.decode(raw[...], as: type)
        }
    }

    /// The values wider than a word: `__int128`, `long double`. nil for the others.
    static func wide(_ raw: ArraySlice<UInt8>, as type: ValueType) -> ArgumentValue? {
        guard type.byteSize > 8 else { return nil }
        switch type.kind {
        case .signed, .unsigned:
            guard type.byteSize == 16 else { return nil }
            guard raw.count >= 16 else { return .unavailable }
            return .int128(low: littleEndianWord(raw.prefix(8)), high: littleEndianWord(raw.dropFirst(8).prefix(8)),
                           signed: type.kind == .signed)
        case .float:
            // The x87 format's 10 bytes (in a 12- or 16-byte slot), taken as they are.
            return X87Bits(raw).map { .longDouble($0) } ?? .unavailable
        default:
            return nil
        }
    }


    /// A value of `type` from its bytes in memory (a struct's field, an array's element, a pointee):
    /// what cannot be read from them, because DWARF's sizes or offsets point past them, is unavailable.
    static func decode(_ raw: ArraySlice<UInt8>, as type: ValueType) -> ArgumentValue {
        if let wide = wide(raw, as: type) { return wide }
        if !type.members.isEmpty {
            return .structure(type.members.map { member in
                .init(member.name, field(member, of: raw))
            })
        }
        if let count = type.arrayCount, let element = type.element, element.kind == .char, element.byteSize == 1 {
            // A char array is text, as C code means it: up to its first NUL (all of it without one).
            let bytes = raw.prefix(max(0, count))
            return .string(Array(bytes.prefix(while: { $0 != 0 })), truncated: false, address: 0)
        }
        if let count = type.arrayCount, let element = type.element, element.byteSize > 0 {
            let shown = min(count, ValueType.maxShownElements)
            var values: [ArgumentValue] = []
            for i in 0..<max(0, shown) {
                let (start, overflow) = i.multipliedReportingOverflow(by: element.byteSize)
                guard !overflow, start < raw.count else { break }
                values.append(decode(slice(raw, from: start, count: element.byteSize), as: element))
            }
            return .array(values, count: count)
        }
        switch type.kind {
        case .aggregate: return .aggregate(Array(raw))
        case .cString, .goString, .goSlice, .goInterface: return .unavailable
        default:
            let size = type.byteSize > 0 ? type.byteSize : 8
            guard raw.count >= min(size, 8) else { return .unavailable }
            return type.scalar(littleEndianWord(raw)) ?? .unavailable
        }
    }

    /// A struct's field: its bytes, or for a bit-field its bits, sign-extended for a signed type.
    private static func field(_ member: ValueType.Member, of raw: ArraySlice<UInt8>) -> ArgumentValue {
        if let bits = member.bitSize, let bitOffset = member.bitOffset {
            guard bits > 0, bits <= 64, bitOffset >= 0 else { return .unavailable }
            let firstByte = bitOffset / 8
            guard firstByte < raw.count else { return .unavailable }
            var wide: UInt128 = 0
            for (i, byte) in slice(raw, from: firstByte, count: 16).enumerated() { wide |= UInt128(byte) << (8 * i) }
            let value = UInt64(truncatingIfNeeded: wide >> (bitOffset % 8))
            let masked = bits == 64 ? value : value & ((1 << UInt64(bits)) - 1)
            switch member.type.kind {
            case .signed, .enumeration:
                let extended = bits == 64 ? Int64(bitPattern: masked) : Int64(bitPattern: masked << UInt64(64 - bits)) >> Int64(64 - bits)
                return .signed(extended)
            case .bool: return .bool(masked != 0)
            case .char: return .char(UInt8(truncatingIfNeeded: masked))
            default: return .unsigned(masked)
            }
        }
        guard member.offset >= 0, member.offset < raw.count || member.type.byteSize == 0 else { return .unavailable }
        return decode(slice(raw, from: member.offset, count: member.type.byteSize), as: member.type)
    }

    /// At most `count` bytes from `start`, bounded by what there is.
    private static func slice(_ raw: ArraySlice<UInt8>, from start: Int, count: Int) -> ArraySlice<UInt8> {
        let lower = raw.startIndex &+ min(max(0, start), raw.count)
        let upper = lower &+ min(max(0, count), raw.endIndex &- lower)
        return raw[lower..<upper]
    }
}

/// A stopped thread's FXSAVE area, read once; or only its xmm0–7, as a trap pad left them in the
/// stop slot (`complete` false: the rest is read from the kernel when asked for).
final class FPRegisters {
    let registers: user_fpregs_struct
    let complete: Bool
    init(_ registers: user_fpregs_struct, complete: Bool = true) {
        self.registers = registers
        self.complete = complete
    }
}

/// A thread stopped at a breakpoint: its registers as read at the stop, its memory live.
struct StoppedThreadValues: ValueSource {
    let tid: pid_t
    let regs: user_regs_struct
    let memory: TraceeMemory
    /// Fetched once, only if a value lives in an XMM or x87 register; boxed, so that the values (copied
    /// into every reader) carry a pointer and not 512 bytes that are rarely there.
    private var fpRegs: FPRegisters?
    /// What the stop read ahead, looked at before the tracee's memory.
    let prefetched: StopPrefetch

    /// `vectors`: xmm0–7 known already (from a stop slot).
    init(tid: pid_t, regs: user_regs_struct, memory: TraceeMemory, prefetched: StopPrefetch = StopPrefetch(),
         vectors: FPRegisters? = nil) {
        self.tid = tid
        self.regs = regs
        self.memory = memory
        self.prefetched = prefetched
        fpRegs = vectors
    }

    var stackPointer: UInt64 { regs.rsp }

    mutating func registerBytes(_ register: Register) -> [UInt8] {
        if case .xmm(let i) = register {
            if fpRegs == nil || (i >= StopSlotLayout.vectorCount && fpRegs?.complete == false) {
                fpRegs = (try? Ptrace.getFPRegs(tid)).map { FPRegisters($0) }
            }
            guard let fp = fpRegs?.registers, i >= 0, i < 16 else { return [] }
            return withUnsafeBytes(of: fp.xmm_space) { Array($0[(i * 16)..<(i * 16 + 16)]) }
        }
        if case .st(let i) = register {
            // FXSAVE keeps st(0)…st(7) in stack order, 16 bytes each (10 of them the value).
            if fpRegs?.complete != true { fpRegs = (try? Ptrace.getFPRegs(tid)).map { FPRegisters($0) } }
            guard let fp = fpRegs?.registers, i >= 0, i < 8 else { return [] }
            return withUnsafeBytes(of: fp.st_space) { Array($0[(i * 16)..<(i * 16 + 16)]) }
        }
        guard let gpr = register.gpr else { return [] }
        return withUnsafeBytes(of: regs[gpr].littleEndian) { Array($0) }
    }

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        if let bytes = prefetched.read(address, count: count) { return bytes }
        guard let bytes = try? memory.read(address, count: count), bytes.count == count else { return nil }
        return bytes
    }

    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)? {
        prefetched.string(at: address, limit: limit) ?? memory.string(at: address, limit: limit)
    }
}

extension ValueType {
    /// A value held whole in one word (its low bytes): a number, a pointer, a char. nil for the kinds
    /// that need more (strings, Go headers, aggregates).
    func scalar(_ bits: UInt64) -> ArgumentValue? { ValueType.scalar(bits, kind: kind, byteSize: byteSize) }

    /// A value of `byteSize` bytes (1 to 8) in the low bytes of a word: zero- and sign-extended.
    @inline(__always)
    static func widened(_ bits: UInt64, byteSize: Int) -> (unsigned: UInt64, signed: Int64) {
        let size = min(max(byteSize, 1), 8)
        let masked = size == 8 ? bits : bits & ((1 << (8 * UInt64(size))) - 1)
        let shift = UInt64(64 - 8 * size)
        return (masked, Int64(bitPattern: masked << shift) >> Int64(shift))
    }

    static func scalar(_ bits: UInt64, kind: Kind, byteSize: Int) -> ArgumentValue? {
        let (masked, signed) = widened(bits, byteSize: byteSize)
        switch kind {
        case .signed, .enumeration: return .signed(signed)
        case .unsigned: return .unsigned(masked)
        case .bool: return .bool(masked & 0xff != 0)
        case .char: return .char(UInt8(truncatingIfNeeded: masked))
        case .float:
            if byteSize == 4 { return .float(Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))) }
            if byteSize == 8 { return .float(Double(bitPattern: bits)) }
            return .unavailable
        case .pointer: return .pointer(bits)
        case .other: return .unsigned(bits)
        case .cString, .goString, .goSlice, .goInterface, .aggregate: return nil
        }
    }
}

extension Register {
    /// The same register as the Relocator numbers it; nil for XMM registers.
    var gpr: GPR? {
        switch self {
        case .rax: return .rax
        case .rdx: return .rdx
        case .rcx: return .rcx
        case .rbx: return .rbx
        case .rsi: return .rsi
        case .rdi: return .rdi
        case .rbp: return .rbp
        case .rsp: return .rsp
        case .r8: return .r8
        case .r9: return .r9
        case .r10: return .r10
        case .r11: return .r11
        case .r12: return .r12
        case .r13: return .r13
        case .r14: return .r14
        case .r15: return .r15
        case .xmm, .st: return nil
        }
    }
}

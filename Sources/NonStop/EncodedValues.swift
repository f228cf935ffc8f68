import Symbols

/// Argument and return values packed into one byte buffer per batch of events, so that a call with
/// five arguments costs a few appends rather than an array, its elements and their strings: no
/// allocation, no reference counting. Renderers read them back in place (`EncodedValues`), without
/// copying a string's bytes; `ArgumentValue` remains the value's meaning and what tests compare.
///
/// Each value is a tag byte and its payload, little-endian, unaligned:
/// ```
/// signed, unsigned, float (bits), pointer       8 bytes
/// bool, char                                    1 byte
/// string                                        truncated (1), address (8), count (4), bytes
/// badString                                     address (8)
/// goString                                      truncated (1), length (8), count (4), bytes
/// goSlice                                       address, length, capacity (8 each), count (4), size (4), elements
/// goInterface                                   type, data (8 each)
/// aggregate                                     count (4), bytes
/// tuple                                         count (4), size (4), values
/// unavailable                                   nothing
/// int128                                        signed (1), low, high (8 each)
/// longDouble                                    the 80 bits in 16 (8: significand, 8: sign and exponent)
/// structure                                     count (4, twice the fields), size (4), name (a string) and value of each
/// array                                         count in the type (8), shown (4), size (4), values
/// pointee                                       address (8), 1 (4), size (4), the value
/// unreadablePointer                             address (8)
/// ```
public struct ValueArena: @unchecked Sendable {
    enum Tag: UInt8 {
        case unavailable, signed, unsigned, bool, char, float, pointer, string, badString, goString, goSlice, goInterface,
             aggregate, tuple, int128, longDouble, structure, array, pointee, unreadablePointer
    }

    /// The bytes, in memory of its own: written with plain stores (an array's append costs more than
    /// the value it appends). One arena has one owner, its batch, so it is never shared or copied.
    private final class Storage {
        var base: UnsafeMutableRawPointer
        var count = 0
        var capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            base = .allocate(byteCount: capacity, alignment: 8)
        }

        deinit { base.deallocate() }

        /// Room for `n` more bytes.
        @inline(__always)
        func reserve(_ n: Int) {
            guard capacity &- count < n else { return }
            var grown = capacity &* 2
            while grown &- count < n { grown &*= 2 }
            let larger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 8)
            larger.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = larger
            capacity = grown
        }
    }

    private let storage = Storage(capacity: 1 << 16)

    public init() {}

    /// Where the next value goes.
    var position: UInt32 { UInt32(truncatingIfNeeded: storage.count) }

    /// The bytes written so far.
    public func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }

    mutating func removeAll() { storage.count = 0 }

    @inline(__always)
    private mutating func byte(_ value: UInt8) {
        storage.reserve(1)
        storage.base.storeBytes(of: value, toByteOffset: storage.count, as: UInt8.self)
        storage.count &+= 1
    }

    private mutating func put(_ tag: Tag) { byte(tag.rawValue) }

    @inline(__always)
    private mutating func put64(_ value: UInt64) {
        storage.reserve(8)
        storage.base.storeBytes(of: value.littleEndian, toByteOffset: storage.count, as: UInt64.self)
        storage.count &+= 8
    }

    @inline(__always)
    private mutating func put32(_ value: UInt32) {
        storage.reserve(4)
        storage.base.storeBytes(of: value.littleEndian, toByteOffset: storage.count, as: UInt32.self)
        storage.count &+= 4
    }

    private mutating func put(_ raw: UnsafeRawBufferPointer) {
        guard let source = raw.baseAddress, raw.count > 0 else { return }
        storage.reserve(raw.count)
        (storage.base + storage.count).copyMemory(from: source, byteCount: raw.count)
        storage.count &+= raw.count
    }

    mutating func appendSigned(_ value: Int64) {
        put(.signed)
        put64(UInt64(bitPattern: value))
    }

    mutating func appendUnsigned(_ value: UInt64) {
        put(.unsigned)
        put64(value)
    }

    mutating func appendPointer(_ value: UInt64) {
        put(.pointer)
        put64(value)
    }

    mutating func appendFloat(_ value: Double) {
        put(.float)
        put64(value.bitPattern)
    }

    mutating func appendBool(_ value: Bool) {
        put(.bool)
        byte(value ? 1 : 0)
    }

    mutating func appendChar(_ value: UInt8) {
        put(.char)
        byte(value)
    }

    mutating func appendUnavailable() { put(.unavailable) }

    /// A value held whole in a word, as `ValueType.scalar` reads it: the common kinds with no
    /// `ArgumentValue` between (the record path's per-value cost), the others through it.
    mutating func appendScalar(_ bits: UInt64, kind: ValueType.Kind, byteSize: Int) {
        switch kind {
        case .signed, .enumeration: appendSigned(ValueType.widened(bits, byteSize: byteSize).signed)
        case .unsigned: appendUnsigned(ValueType.widened(bits, byteSize: byteSize).unsigned)
        case .pointer: appendPointer(bits)
        case .float where byteSize == 8: appendFloat(Double(bitPattern: bits))
        default: append(ValueType.scalar(bits, kind: kind, byteSize: byteSize) ?? .unavailable)
        }
    }

    mutating func appendBadString(address: UInt64) {
        put(.badString)
        put64(address)
    }

    /// A C string's bytes (without the NUL), borrowed from wherever they were copied to.
    mutating func appendString(_ text: UnsafeRawBufferPointer, truncated: Bool, address: UInt64) {
        put(.string)
        byte(truncated ? 1 : 0)
        put64(address)
        put32(UInt32(truncatingIfNeeded: text.count))
        put(text)
    }

    /// Any value, as the slower paths (a stopped thread's registers and memory) read it.
    mutating func append(_ value: ArgumentValue) {
        switch value {
        case .signed(let v): appendSigned(v)
        case .unsigned(let v): appendUnsigned(v)
        case .bool(let b): appendBool(b)
        case .char(let c): appendChar(c)
        case .float(let d): appendFloat(d)
        case .pointer(let p): appendPointer(p)
        case .string(let text, let truncated, let address):
            text.withUnsafeBytes { appendString($0, truncated: truncated, address: address) }
        case .badString(let address): appendBadString(address: address)
        case .goString(let text, let truncated, let length):
            put(.goString)
            byte(truncated ? 1 : 0)
            put64(length)
            put32(UInt32(truncatingIfNeeded: text.count))
            text.withUnsafeBytes { put($0) }
        case .goSlice(let address, let length, let capacity, let elements):
            put(.goSlice)
            put64(address)
            put64(length)
            put64(capacity)
            appendList(elements)
        case .goInterface(let type, let data):
            put(.goInterface)
            put64(type)
            put64(data)
        case .aggregate(let raw):
            put(.aggregate)
            put32(UInt32(truncatingIfNeeded: raw.count))
            raw.withUnsafeBytes { put($0) }
        case .tuple(let values):
            put(.tuple)
            appendList(values)
        case .unavailable: appendUnavailable()
        case .int128(let low, let high, let signed):
            put(.int128)
            byte(signed ? 1 : 0)
            put64(low)
            put64(high)
        case .longDouble(let bits):
            put(.longDouble)
            put64(bits.significand)
            put64(UInt64(bits.signAndExponent))
        case .structure(let fields):
            put(.structure)
            appendList(fields.flatMap { [ArgumentValue.string(Array($0.name.utf8), truncated: false, address: 0), $0.value] })
        case .array(let elements, let count):
            put(.array)
            put64(UInt64(clamping: count))
            appendList(elements)
        case .pointee(let address, let value):
            put(.pointee)
            put64(address)
            appendList([value])
        case .unreadablePointer(let address):
            put(.unreadablePointer)
            put64(address)
        }
    }

    /// A count, the encoded size, then the values.
    private mutating func appendList(_ values: [ArgumentValue]) {
        put32(UInt32(truncatingIfNeeded: values.count))
        let sizeAt = storage.count
        put32(0)
        for v in values { append(v) }
        let size = UInt32(truncatingIfNeeded: storage.count - sizeAt - 4)
        storage.base.storeBytes(of: size.littleEndian, toByteOffset: sizeAt, as: UInt32.self)
    }
}

/// One encoded value, read in place: strings and byte runs are views into the batch's buffer, valid
/// while the renderer holds it.
public enum ValueView {
    case signed(Int64)
    case unsigned(UInt64)
    case bool(Bool)
    case char(UInt8)
    case float(Double)
    case pointer(UInt64)
    case string(UnsafeRawBufferPointer, truncated: Bool, address: UInt64)
    case badString(address: UInt64)
    case goString(UnsafeRawBufferPointer, truncated: Bool, length: UInt64)
    case goSlice(address: UInt64, length: UInt64, capacity: UInt64, elements: EncodedValues)
    case goInterface(type: UInt64, data: UInt64)
    case aggregate(UnsafeRawBufferPointer)
    case tuple(EncodedValues)
    case unavailable
    case int128(low: UInt64, high: UInt64, signed: Bool)
    case longDouble(X87Bits)
    /// A struct's fields: name (a `.string`) and value, one after the other.
    case structure(EncodedValues)
    /// An array's first elements and how many it has.
    case array(EncodedValues, count: UInt64)
    /// A pointer followed (`--deref`): its one value.
    case pointee(address: UInt64, value: EncodedValues)
    case unreadablePointer(UInt64)

    /// The same value as an `ArgumentValue` (copies the bytes).
    public var value: ArgumentValue {
        switch self {
        case .signed(let v): return .signed(v)
        case .unsigned(let v): return .unsigned(v)
        case .bool(let b): return .bool(b)
        case .char(let c): return .char(c)
        case .float(let d): return .float(d)
        case .pointer(let p): return .pointer(p)
        case .string(let text, let truncated, let address): return .string(Array(text), truncated: truncated, address: address)
        case .badString(let address): return .badString(address: address)
        case .goString(let text, let truncated, let length): return .goString(Array(text), truncated: truncated, length: length)
        case .goSlice(let address, let length, let capacity, let elements):
            return .goSlice(address: address, length: length, capacity: capacity, elements: elements.map(\.value))
        case .goInterface(let type, let data): return .goInterface(type: type, data: data)
        case .aggregate(let raw): return .aggregate(Array(raw))
        case .tuple(let values): return .tuple(values.map(\.value))
        case .unavailable: return .unavailable
        case .int128(let low, let high, let signed): return .int128(low: low, high: high, signed: signed)
        case .longDouble(let value): return .longDouble(value)
        case .structure(let pairs):
            var fields: [ArgumentValue.Field] = []
            var iterator = pairs
            while let name = iterator.next(), let value = iterator.next() {
                guard case .string(let text, _, _) = name else { break }
                fields.append(.init(String(decoding: text, as: UTF8.self), value.value))
            }
            return .structure(fields)
        case .array(let elements, let count): return .array(elements.map(\.value), count: Int(clamping: count))
        case .pointee(let address, let value):
            var iterator = value
            return .pointee(address: address, value: iterator.next()?.value ?? .unavailable)
        case .unreadablePointer(let address): return .unreadablePointer(address)
        }
    }
}

/// A run of encoded values, read one after the other. Reading never traps: a run that ends early
/// (it cannot, as nstrace writes it, but a reader must not trust a length it did not check) simply
/// ends, and a value cut short reads as `.unavailable`.
public struct EncodedValues: Sequence, IteratorProtocol {
    private let raw: UnsafeRawBufferPointer
    private var offset: Int
    private var remaining: Int

    /// `count` values starting `offset` bytes into `raw`.
    public init(_ raw: UnsafeRawBufferPointer, offset: Int, count: Int) {
        self.raw = raw
        self.offset = offset
        remaining = count
    }

    public mutating func next() -> ValueView? {
        guard remaining > 0, offset >= 0, offset < raw.count, let tag = ValueArena.Tag(rawValue: raw[offset]) else {
            remaining = 0
            return nil
        }
        remaining -= 1
        offset += 1
        guard let view = read(tag) else {
            remaining = 0
            return .unavailable
        }
        return view
    }

    private func has(_ n: Int) -> Bool { n >= 0 && raw.count - offset >= n }

    private mutating func u64() -> UInt64? {
        guard has(8) else { return nil }
        defer { offset += 8 }
        return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    private mutating func u32() -> Int? {
        guard has(4) else { return nil }
        defer { offset += 4 }
        return Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    private mutating func u8() -> UInt8? {
        guard has(1) else { return nil }
        defer { offset += 1 }
        return raw[offset]
    }

    private mutating func run(_ count: Int) -> UnsafeRawBufferPointer? {
        guard has(count) else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: raw[offset..<offset + count])
    }

    /// A nested list: its values, and the reading goes on after them.
    private mutating func list() -> EncodedValues? {
        guard let count = u32(), let size = u32(), has(size) else { return nil }
        defer { offset += size }
        return EncodedValues(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size]), offset: 0, count: count)
    }

    private mutating func read(_ tag: ValueArena.Tag) -> ValueView? {
        switch tag {
        case .unavailable: return .unavailable
        case .signed: return u64().map { .signed(Int64(bitPattern: $0)) }
        case .unsigned: return u64().map { .unsigned($0) }
        case .pointer: return u64().map { .pointer($0) }
        case .float: return u64().map { .float(Double(bitPattern: $0)) }
        case .bool: return u8().map { .bool($0 != 0) }
        case .char: return u8().map { .char($0) }
        case .badString: return u64().map { .badString(address: $0) }
        case .string:
            guard let truncated = u8(), let address = u64(), let count = u32(), let text = run(count) else { return nil }
            return .string(text, truncated: truncated != 0, address: address)
        case .goString:
            guard let truncated = u8(), let length = u64(), let count = u32(), let text = run(count) else { return nil }
            return .goString(text, truncated: truncated != 0, length: length)
        case .goSlice:
            guard let address = u64(), let length = u64(), let capacity = u64(), let elements = list() else { return nil }
            return .goSlice(address: address, length: length, capacity: capacity, elements: elements)
        case .goInterface:
            guard let type = u64(), let data = u64() else { return nil }
            return .goInterface(type: type, data: data)
        case .aggregate:
            guard let count = u32(), let bytes = run(count) else { return nil }
            return .aggregate(bytes)
        case .tuple:
            return list().map { .tuple($0) }
        case .int128:
            guard let signed = u8(), let low = u64(), let high = u64() else { return nil }
            return .int128(low: low, high: high, signed: signed != 0)
        case .longDouble:
            guard let significand = u64(), let high = u64() else { return nil }
            return .longDouble(X87Bits(significand: significand, signAndExponent: UInt16(truncatingIfNeeded: high)))
        case .structure:
            return list().map { .structure($0) }
        case .array:
            guard let count = u64(), let elements = list() else { return nil }
            return .array(elements, count: count)
        case .pointee:
            guard let address = u64(), let value = list() else { return nil }
            return .pointee(address: address, value: value)
        case .unreadablePointer:
            return u64().map { .unreadablePointer($0) }
        }
    }
}

/// The unsigned integer up to eight bytes hold, least significant first: how x86-64 lays out a word in
/// a tracee's memory and in an ELF file alike. Bytes past the eighth are not read; fewer give a
/// narrower value (a 4-byte field, a 2-byte table entry).
@inlinable
public func littleEndianWord<Bytes: Collection>(_ bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    for byte in bytes.prefix(8) {
        value |= UInt64(byte) << shift
        shift &+= 8
    }
    return value
}

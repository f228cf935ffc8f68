/// Numbers read from DWARF are untrusted input: a malformed file can put any 64-bit value where a
/// size or an offset belongs, and converting it with `Int(_:)`, or adding two, would trap.
enum DwarfNumber {
    /// The largest size or offset in bytes nstrace takes as it is: no type it classifies or reads
    /// comes near it, and sums of a few such values stay far from overflow.
    static let limit: UInt64 = 1 << 32

    /// A size or offset, with anything larger than `limit` made `limit`: still too large for any
    /// value it describes (an offset past the end is rejected as such), but safe to add to.
    static func clamped(_ value: UInt64) -> Int { Int(min(value, limit)) }
}

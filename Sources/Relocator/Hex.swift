/// A word as every message shows it — addresses in refusals, `--debug` lines, `nstrace list` — `0x`
/// and lowercase hex digits, no leading zeros. The Relocator is the lowest module all of those
/// depend on.
public func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// Memory nstrace mapped inside the tracee for trampolines and step slots, `[anon:nstrace]` in
/// /proc/PID/maps. Filled by bump allocation; never unmapped while a thread or a signal frame might
/// still point into it.
final class ScratchRegion {
    let start: UInt64
    let size: UInt64
    private(set) var used: UInt64

    /// A `syscall` instruction at the start of every region, for injecting system calls once the
    /// first region exists.
    static let gadget: [UInt8] = [0x0f, 0x05]
    /// "nstrace\0", the VMA name, just after the gadget.
    static let nameOffset: UInt64 = 8
    /// How much of the region is handed out, kept in the tracee too: a later nstrace attaching to the
    /// same process adopts the region and goes on after it, never over code a thread or a signal
    /// frame of an earlier session may still be in.
    static let usedOffset: UInt64 = 16
    static let header: UInt64 = 64

    init(start: UInt64, size: UInt64, used: UInt64 = ScratchRegion.header) {
        self.start = start
        self.size = size
        self.used = max(used, ScratchRegion.header)
    }

    var syscallAddress: UInt64 { start }

    /// `count` bytes, aligned to 32, or nil when the region is full.
    func allocate(_ count: Int) -> UInt64? {
        let rounded = (UInt64(count) + 31) & ~31
        guard used + rounded <= size else { return nil }
        defer { used += rounded }
        return start + used
    }

    /// Whether every address of the region is within a disp32 of `address` (with room to spare).
    func isNear(_ address: UInt64) -> Bool {
        let limit: UInt64 = 0x7fff_0000
        let far = address > start ? address - start : start + size - address
        return far < limit - size
    }

    func contains(_ address: UInt64) -> Bool { address >= start && address < start + size }
}

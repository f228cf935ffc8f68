import CShim
import Glibc
import Relocator

/// nstrace's side of the ring the inline pads write into: the same memfd the tracee maps, mapped here
/// too, so records are read with plain loads — no system call per event. Everything in it is written
/// by the tracee and is untrusted: positions, counts and ids are checked before use.
/// Used by the engine thread alone, but for `beat()`, a single store the drain ticker makes.
final class EventRing: @unchecked Sendable {
    let geometry: RingGeometry
    private let base: UnsafeMutableRawPointer
    /// The next position to read in each bucket (mirrored to the bucket's tail once consumed).
    private(set) var positions: [UInt64]
    /// Records reserved but not yet published, and since when (rdtsc), per bucket: a slot a thread left
    /// half-written (it was killed, or longjmp'd out of a signal handler that interrupted its pad).
    private var stalledSince: [UInt64?]

    init(geometry: RingGeometry, fd: Int32) throws(TraceError) {
        self.geometry = geometry
        guard let p = mmap(nil, geometry.totalSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw TraceError("map the event ring", tid: getpid(), errno: errno)
        }
        base = p
        positions = Array(repeating: 0, count: geometry.bucketCount)
        stalledSince = Array(repeating: nil, count: geometry.bucketCount)
        // Should nstrace crash, no pad may go on waiting for it.
        nst_guard_add_ring(base, RingGeometry.heartbeatOffset, RingGeometry.acknowledgedOffset)
    }

    deinit {
        nst_guard_remove_ring(base)
        munmap(base, geometry.totalSize)
    }

    private func word(_ offset: Int) -> UInt64 {
        base.advanced(by: offset).assumingMemoryBound(to: UInt64.self).pointee
    }

    private func setWord(_ offset: Int, _ value: UInt64) {
        base.advanced(by: offset).assumingMemoryBound(to: UInt64.self).pointee = value
    }

    /// A fresh ring: the magic, the heartbeat (so waiting pads know nstrace is there), the mode.
    func initialize(lossless: Bool, staleTicks: UInt64) {
        RingGeometry.magic.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: RingGeometry.magic.count) }
        setWord(RingGeometry.staleTicksOffset, staleTicks)
        base.advanced(by: RingGeometry.losslessOffset).storeBytes(of: lossless ? 1 : 0, as: UInt8.self)
        beat()
    }

    /// Tells waiting pads nstrace is alive.
    func beat() { setWord(RingGeometry.heartbeatOffset, nst_rdtsc()) }

    /// Tells waiting pads (lossless, r_brk) to stop waiting: nstrace is going away.
    func flatline() { setWord(RingGeometry.heartbeatOffset, 0) }

    /// Lets every pad that waits for a ticket below `ticket` go on.
    func acknowledge(through ticket: UInt64) {
        let offset = RingGeometry.acknowledgedOffset
        if word(offset) < ticket &+ 1 { setWord(offset, ticket &+ 1) }
    }

    /// nstrace has seen a tail call of thread `tid` return: its count of tail calls in flight goes down.
    func tailCallReturned(tid: pid_t) {
        let slot = Int(UInt32(bitPattern: tid)) & (RingGeometry.pendingTailCallSlots - 1)
        nst_atomic_decrement_to_zero(base.advanced(by: RingGeometry.pendingTailCallsOffset + 8 * slot)
            .assumingMemoryBound(to: UInt64.self))
    }

    /// Records lost because a bucket was full, over all buckets: calls, returns, others.
    var lost: (calls: UInt64, returns: UInt64, others: UInt64) {
        func sum(_ kind: Probe.Kind) -> UInt64 {
            (0..<geometry.bucketCount).reduce(0) {
                $0 &+ word(geometry.bucketOffset($1) + RingGeometry.lostOffset + 8 * kind.rawValue)
            }
        }
        return (sum(.entry), sum(.exit), sum(.other))
    }

    func bucket(ofKey key: UInt64) -> Int { Int(key & UInt64(geometry.bucketCount - 1)) }

    /// The head of a bucket: every record reserved so far ends before it.
    func head(of bucket: Int) -> UInt64 { word(geometry.bucketOffset(bucket) + RingGeometry.headOffset) }

    /// One published record, as bytes borrowed from the ring until the next `advance`.
    struct Record {
        let position: UInt64
        let slots: Int
        let bytes: UnsafeRawBufferPointer

        func u64(_ offset: Int) -> UInt64 {
            guard offset >= 0, offset + 8 <= bytes.count else { return 0 }
            return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        }

        func u32(_ offset: Int) -> UInt32 {
            guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
            return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        }

        var tsc: UInt64 { u64(RecordLayout.tscOffset) }
        var probe: UInt32 { u32(RecordLayout.probeOffset) }
        var thread: pid_t { pid_t(bitPattern: u32(RecordLayout.threadOffset)) }
        var stackPointer: UInt64 { u64(RecordLayout.stackPointerOffset) }
    }

    /// The next record of a bucket if it is published, sized by the probe it names;
    /// nil when it is not (yet). The caller bounds the reading with a head it read once: reading the
    /// head at every record would pull its cache line away from the thread reserving the next one.
    func next(in bucket: Int, probes: InlineTrace) -> Record? {
        let position = positions[bucket]
        let bucketStart = geometry.bucketOffset(bucket)
        let offset = bucketStart + geometry.slotOffset(position)
        guard word(offset + RecordLayout.sequenceOffset) == position &+ 1 else { return nil }
        let probe = base.advanced(by: offset + RecordLayout.probeOffset).loadUnaligned(as: UInt32.self)
        // An unknown probe id (a corrupted record) still takes one slot: skip it and go on.
        let slots = min(max(probes.slots(of: probe) ?? 1, 1), geometry.maxSlotsPerRecord)
        let bytes = UnsafeRawBufferPointer(start: base.advanced(by: offset), count: slots * RingGeometry.slotSize)
        return Record(position: position, slots: slots, bytes: bytes)
    }

    /// Consumes a record: its slots may be reused by the pads.
    func advance(_ bucket: Int, past record: Record) {
        positions[bucket] = record.position &+ UInt64(record.slots)
        stalledSince[bucket] = nil
    }

    /// Publishes what has been consumed, so pads may reuse it.
    func release(_ bucket: Int) {
        setWord(geometry.bucketOffset(bucket) + RingGeometry.tailOffset, positions[bucket])
    }

    /// A bucket whose next record has stayed unpublished for `ticks` while reserved: skipped, one slot
    /// at a time, and counted — the thread that reserved it will never finish it. Returns how many
    /// slots were given up.
    func skipStalled(_ bucket: Int, olderThan ticks: UInt64, now: UInt64) -> Int {
        guard positions[bucket] < head(of: bucket) else {
            stalledSince[bucket] = nil
            return 0
        }
        guard let since = stalledSince[bucket] else {
            stalledSince[bucket] = now
            return 0
        }
        guard now &- since > ticks else { return 0 }
        positions[bucket] &+= 1
        stalledSince[bucket] = nil
        return 1
    }

    /// Skips everything reserved and not published (the process is gone: it never will be).
    func abandonUnpublished(_ bucket: Int) -> Int {
        let head = head(of: bucket)
        guard head > positions[bucket] else { return 0 }
        let skipped = Int(clamping: head &- positions[bucket])
        positions[bucket] = head
        release(bucket)
        return skipped
    }
}

/// The shared-memory ring the inline strategy's pads write into and nstrace reads, defined once: the
/// pads' code (InlinePad) and nstrace's reader (NonStop's EventRing) both take every offset from here,
/// and a test holds the two together.
///
/// ```
/// control (8 KiB)        magic, heartbeat, lossless flag, dynamic-linker tickets; tail calls in flight
/// bucket 0               head | tail | lost calls, returns, others (a cache line each), then slots
/// bucket 1 …
/// ```
/// A thread (or, in Go, a goroutine) always writes into the same bucket, chosen by its id: its records
/// stay in order there however many buckets there are, and threads in different buckets never share
/// a cache line. A record is one or more consecutive slots reserved with `lock cmpxchg` on the head, so
/// a full bucket reserves nothing (no hole for the reader to wait on) and counts a lost record instead.
/// The slots of a record are contiguous in memory: a bucket has a margin after its last slot into
/// which a record that starts near the end runs on.
public struct RingGeometry: Sendable, Hashable {
    /// Power of two.
    public let bucketCount: Int
    /// Power of two, at most 2^30.
    public let slotsPerBucket: Int
    /// The most slots one record may take: the margin after each bucket's last slot.
    public let maxSlotsPerRecord: Int

    public init(bucketCount: Int, slotsPerBucket: Int, maxSlotsPerRecord: Int) {
        self.bucketCount = bucketCount
        self.slotsPerBucket = slotsPerBucket
        self.maxSlotsPerRecord = maxSlotsPerRecord
    }

    public static let slotSize = 64
    public static let slotShift: UInt8 = 6

    public static let controlSize = 8192
    public static let magic: [UInt8] = Array("nstrace-ring-v1".utf8) + [0]
    /// The consumer's rdtsc at its last drain: a lossless pad waits only while this is recent.
    public static let heartbeatOffset = 64
    /// How many TSC ticks old the heartbeat may be before a waiting pad gives up and counts a loss.
    public static let staleTicksOffset = 72
    /// Non-zero: a pad that finds its bucket full waits for room instead of counting a loss.
    public static let losslessOffset = 80
    /// Tickets handed out by pads that wait for nstrace (the dynamic linker's r_brk), and the first
    /// ticket not yet acknowledged.
    public static let ticketOffset = 128
    public static let acknowledgedOffset = 192
    /// Tail calls in flight, per thread (hashed by tid): a traced function that left by a tail call
    /// adds one, nstrace takes it away once it has seen the call return; the tail-callee's watched
    /// returns are recorded only while their thread's count is not zero.
    public static let pendingTailCallsOffset = 4096
    public static let pendingTailCallSlots = 512

    public static let bucketHeaderSize = 256
    public static let headOffset = 0
    public static let tailOffset = 64
    /// Records lost because the bucket was full: calls, returns, others (three words).
    public static let lostOffset = 128

    /// Bytes from one bucket to the next: a power of two, so a pad finds a bucket with a shift.
    public var bucketStride: Int {
        let needed = RingGeometry.bucketHeaderSize + (slotsPerBucket + maxSlotsPerRecord) * RingGeometry.slotSize
        var stride = 4096
        while stride < needed { stride <<= 1 }
        return stride
    }

    public var bucketShift: UInt8 { UInt8(bucketStride.trailingZeroBitCount) }

    public var totalSize: Int { RingGeometry.controlSize + bucketCount * bucketStride }

    public func bucketOffset(_ index: Int) -> Int { RingGeometry.controlSize + index * bucketStride }

    /// Where slot `position` of a bucket starts, from the bucket's start.
    public func slotOffset(_ position: UInt64) -> Int {
        RingGeometry.bucketHeaderSize + Int(position & UInt64(slotsPerBucket - 1)) * RingGeometry.slotSize
    }
}

/// One record: a 32-byte header, then the values the probe captured, in `RecordLayout.offsets` order.
public enum RecordLayout {
    /// Position + 1, written last: the record is complete once it matches.
    public static let sequenceOffset = 0
    public static let tscOffset = 8
    public static let probeOffset = 16
    public static let threadOffset = 20
    /// The stack pointer the probe reports: at the function's entry (pointing at the return address)
    /// for entries, at the `ret` for exits.
    public static let stackPointerOffset = 24
    public static let headerSize = 32

    /// Where each capture's bytes start in the record, and the record's size in bytes.
    public static func offsets(for captures: [Capture]) -> (offsets: [Int], size: Int) {
        var offset = headerSize
        var offsets: [Int] = []
        for capture in captures {
            offsets.append(offset)
            offset += capture.byteSize
        }
        return (offsets, offset)
    }

    public static func slots(for captures: [Capture]) -> Int {
        let size = offsets(for: captures).size
        return (size + RingGeometry.slotSize - 1) / RingGeometry.slotSize
    }
}

/// A value a probe copies into its record.
public enum Capture: Sendable, Hashable {
    /// A general-purpose register as it was when the probe ran: 8 bytes.
    case register(GPR)
    /// All 16 bytes of xmmN.
    case xmm(Int)
    /// The x87 registers st(0)…st(N-1), 16 bytes each (the 10 of the value first): a `long double`
    /// result (N = 1) or a `long double _Complex` one (N = 2). The x87 stack is left as it was.
    case x87(count: Int)
    /// The 8 bytes at `[r14 + offset]`: a field of the running goroutine's g (Go code only).
    case goroutineField(Int32)
    /// The 8 bytes on the stack at the reported stack pointer plus an offset: at an entry, offset 0 is
    /// the return address (`--caller`).
    case stackWord(Int32)
    /// A ticket of the pad that waits for nstrace (the dynamic linker's r_brk): 8 bytes.
    case ticket
    /// Up to `maxBytes` of memory, copied fault-safely (process_vm_readv on the process itself): an
    /// 8-byte count (or a negative errno), then the bytes.
    case memory(MemoryCapture)

    public var byteSize: Int {
        switch self {
        case .register, .goroutineField, .stackWord, .ticket: return 8
        case .xmm: return 16
        case .x87(let count): return 16 * max(0, min(count, 8))
        case .memory(let m): return 8 + ((m.maxBytes + 7) & ~7)
        }
    }
}

public struct MemoryCapture: Sendable, Hashable {
    /// Where the bytes are: a register's value, or the reported stack pointer, or the word on the stack
    /// at that stack pointer plus an offset, with `offset` added.
    public enum Base: Sendable, Hashable {
        case register(GPR)
        case stackPointer
        case stackWord(Int32)
    }

    public let base: Base
    public let offset: Int32
    public let maxBytes: Int
    /// A register holding the length (a Go string's), capped at `maxBytes`; nil copies `maxBytes`.
    public let length: GPR?

    public init(base: Base, offset: Int32 = 0, maxBytes: Int, length: GPR? = nil) {
        self.base = base
        self.offset = offset
        self.maxBytes = maxBytes
        self.length = length
    }
}

import Glibc
@testable import Relocator

/// An event ring mapped in the oracle's child (by an mmap the oracle makes it do), which the pads under
/// test write into: emptied before each run, read back after it.
struct ChildRing {
    let address: UInt64
    let geometry: RingGeometry

    /// Small: a few records per run. Four buckets, so that the pad's bucket choice (tid & 3) is tested.
    static let geometry = RingGeometry(bucketCount: 4, slotsPerBucket: 64, maxSlotsPerRecord: 4)

    var range: Range<UInt64> { address..<address + UInt64(geometry.totalSize) }

    /// Maps the ring in the child: an mmap system call run from `syscallPage` (an executable page of
    /// the oracle's), with every register and the page's bytes put back afterwards.
    init(in tracee: OracleTracee, syscallPage: UInt64) throws {
        geometry = Self.geometry
        let saved = try tracee.registers()
        let savedCode = try tracee.read(syscallPage, count: 2).orThrow("read the syscall page", tracee)
        try tracee.write([0x0f, 0x05], at: syscallPage)
        var regs = saved
        regs.rip = syscallPage
        regs.rax = 9  // mmap
        regs.rdi = 0
        regs.rsi = UInt64(geometry.totalSize)
        regs.rdx = UInt64(PROT_READ | PROT_WRITE)
        regs.r10 = UInt64(MAP_PRIVATE | MAP_ANONYMOUS)
        regs.r8 = UInt64(bitPattern: -1)
        regs.r9 = 0
        try tracee.setRegisters(regs)
        let stop = try tracee.singleStep()
        let result = try tracee.registers().rax
        try tracee.write(savedCode, at: syscallPage)
        try tracee.setRegisters(saved)
        guard stop == .stepped, result < 0x8000_0000_0000, result & 0xfff == 0 else {
            throw TraceeError(operation: "mmap a ring in the child (\(stop), rax 0x\(String(result, radix: 16)))",
                              pid: tracee.pid, errno: Int32(truncatingIfNeeded: -Int64(bitPattern: result)))
        }
        address = result
    }

    /// How a run finds the ring.
    enum State: Hashable, CustomStringConvertible {
        case empty
        /// The thread's bucket full: every reservation fails and the probe takes its slow path. Lossless,
        /// it would wait for room while nstrace's heartbeat is fresh: the heartbeat here is long stale,
        /// so it counts the record lost all the same.
        case full(lossless: Bool)

        var description: String {
            switch self {
            case .empty: return "an empty ring"
            case .full(let lossless): return "a full bucket" + (lossless ? " (lossless, nstrace's heartbeat stale)" : "")
            }
        }
    }

    /// Empties the ring, then fills `bucket` if the state says so.
    func reset(_ tracee: OracleTracee, to state: State, bucket: Int) throws {
        var bytes = [UInt8](repeating: 0, count: geometry.totalSize)
        func put(_ value: UInt64, at offset: Int) {
            for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        if case .full(let lossless) = state {
            put(UInt64(geometry.slotsPerBucket), at: geometry.bucketOffset(bucket) + RingGeometry.headOffset)
            if lossless {
                bytes[RingGeometry.losslessOffset] = 1
                put(0, at: RingGeometry.heartbeatOffset)
                put(1, at: RingGeometry.staleTicksOffset)
            }
        }
        try tracee.write(bytes, at: address)
    }

    /// The bucket a thread's records go to.
    func bucket(of tid: pid_t) -> Int { Int(UInt32(bitPattern: tid)) & (geometry.bucketCount - 1) }

    /// The ring's contents as the child holds them now.
    func contents(_ tracee: OracleTracee) throws -> RingContents {
        RingContents(bytes: try tracee.read(address, count: geometry.totalSize).orThrow("read the ring", tracee),
                     geometry: geometry)
    }
}

/// A copy of the ring's bytes, read as the consumer reads it.
struct RingContents {
    let bytes: [UInt8]
    let geometry: RingGeometry

    func word(_ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    func u32(_ offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: word(offset)) }

    func head(_ bucket: Int) -> UInt64 { word(geometry.bucketOffset(bucket) + RingGeometry.headOffset) }
    func tail(_ bucket: Int) -> UInt64 { word(geometry.bucketOffset(bucket) + RingGeometry.tailOffset) }

    /// Calls, returns and other records counted lost in a bucket.
    func lost(_ bucket: Int) -> [UInt64] {
        (0..<3).map { word(geometry.bucketOffset(bucket) + RingGeometry.lostOffset + 8 * $0) }
    }

    /// Where the record at `position` of `bucket` starts in `bytes`.
    func recordOffset(bucket: Int, position: UInt64) -> Int {
        geometry.bucketOffset(bucket) + geometry.slotOffset(position)
    }
}

extension Optional {
    func orThrow(_ what: String, _ tracee: OracleTracee) throws -> Wrapped {
        guard let value = self else { throw TraceeError(operation: what, pid: tracee.pid, errno: EIO) }
        return value
    }
}

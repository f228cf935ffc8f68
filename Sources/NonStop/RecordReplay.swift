import CShim
import Glibc
import Relocator
import Symbols

/// The engine's record path with no tracee: calls written into a ring in this process's memory the way
/// inline pads write them (a header, the registers the probe captures, a copied C string), then read by
/// the engine exactly as in a trace — decoded, matched on shadow stacks, packed into event batches.
/// What Benchmarks/ measures the consumer side with ("from records in memory to bytes in a file"),
/// free of the tracee's own cost and of scheduling; not used by nstrace itself.
public final class RecordReplay {
    private let engine: Engine
    private let trace: InlineTrace
    /// The ring's owner (the trace holds it unowned).
    private let process: TracedProcess
    private let geometry: RingGeometry
    /// The writer's mapping of the ring (the engine reads through its own).
    private let writer: UnsafeMutableRawPointer
    private let entry: (id: UInt32, probe: InlineProbe)
    private let exit: (id: UInt32, probe: InlineProbe)
    private var heads: [UInt64]
    /// The string every `char *` argument points at, and where it seems to be.
    private let text: [UInt8]
    private static let textAddress: UInt64 = 0x7ffc_5000_1000
    /// Address space reserved (PROT_NONE, nothing committed) for the replayed threads' stack pointers,
    /// 16 MiB each: a stack pointer in no mapping would send the engine to /proc/self/maps again and
    /// again, which real threads never do.
    private let stacks: UnsafeMutableRawPointer
    private static let stacksSize = 16 << 24

    /// `function`'s calls as its entry and exit pads would record them (with its signature's captures
    /// when `decodesValues`), read into batches pushed to `events`.
    public init(function: TracedFunction, decodesValues: Bool, maxString: Int = 64, text: String = "key:000123",
                events: EventQueue) throws {
        var configuration = EngineConfiguration(pattern: try NamePattern("."), strategy: .inline, maxStringLength: maxString)
        configuration.decodesValues = decodesValues
        engine = try Engine(configuration: configuration, events: events)
        geometry = InlineTrace.geometry(megabytes: 16)
        let fd = nst_memfd("nstrace-replay")
        guard fd >= 0, ftruncate(fd, off_t(geometry.totalSize)) == 0,
              let mapped = mmap(nil, geometry.totalSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED
        else { throw TraceError("make a ring in memory", tid: getpid(), errno: errno) }
        defer { close(fd) }
        writer = mapped
        let ring = try EventRing(geometry: geometry, fd: fd)
        let memory = try TraceeMemory(pid: getpid())
        process = TracedProcess(pid: getpid(), space: AddressSpace(memory: memory), reportsEvents: true, launched: false)
        trace = InlineTrace(ring: ring, ringAddress: UInt64(UInt(bitPattern: mapped)), owner: process)
        ring.initialize(lossless: false, staleTicks: UInt64.max)
        engine.inlineTraces.append(trace)
        let plan = CapturePlan(maxString: maxString, copiesMemory: true, go: nil, capturesValues: decodesValues)
        let entryProbe = InlineProbe(role: .entry(function), captures: plan.entry(function.signature), go: nil)
        let exitProbe = InlineProbe(role: .exit(function), captures: plan.exit(function.signature), go: nil)
        entry = (trace.register(entryProbe), entryProbe)
        exit = (trace.register(exitProbe), exitProbe)
        heads = Array(repeating: 0, count: geometry.bucketCount)
        self.text = Array(text.utf8) + [0]
        guard let reserved = mmap(nil, RecordReplay.stacksSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              reserved != MAP_FAILED
        else { throw TraceError("reserve replayed stacks", tid: getpid(), errno: errno) }
        stacks = reserved
    }

    deinit {
        munmap(writer, geometry.totalSize)
        munmap(stacks, RecordReplay.stacksSize)
    }

    /// Writes `calls` calls (an entry record and an exit record each) from `threads` threads, round
    /// after round, each round read by the engine as one drain; the events go to the queue in batches,
    /// and `afterRound` runs after each (to render them, say). Returns the nanoseconds of CPU time the
    /// engine spent reading (neither the writing nor `afterRound` is counted).
    public func run(calls: Int, threads: Int, afterRound: () -> Void = {}) -> UInt64 {
        let threads = max(1, min(threads, geometry.bucketCount))
        // A round fills at most half of a bucket: the engine reads it all before the next.
        let perRound = max(1, geometry.slotsPerBucket / 2 / (entry.probe.slots + exit.probe.slots))
        var left = calls, reading: UInt64 = 0, i: UInt64 = 0
        while left > 0 {
            for t in 0..<threads where left > 0 {
                let tid = pid_t(100_000 + t)
                let b = Int(tid) & (geometry.bucketCount - 1)
                let sp = UInt64(UInt(bitPattern: stacks)) &+ UInt64(t) << 24 &+ 0x80_0000
                for _ in 0..<min(perRound, left) {
                    write(entry, bucket: b, tid: tid, stackPointer: sp, counter: i)
                    write(exit, bucket: b, tid: tid, stackPointer: sp, counter: i)
                    i &+= 1
                    left -= 1
                }
                writer.storeBytes(of: heads[b], toByteOffset: geometry.bucketOffset(b) + RingGeometry.headOffset, as: UInt64.self)
            }
            let start = RecordReplay.threadTime()
            engine.drainRecords()
            engine.flushEvents()
            reading &+= RecordReplay.threadTime() &- start
            afterRound()
        }
        return reading
    }

    /// The calling thread's CPU time, in nanoseconds.
    public static func threadTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// One record as a pad writes it: header, captured registers (argument registers hold `counter`, the
    /// ones a string is copied from hold its address, XMM registers 1.5), copies, then the sequence.
    private func write(_ probe: (id: UInt32, probe: InlineProbe), bucket b: Int, tid: pid_t, stackPointer: UInt64, counter: UInt64) {
        let position = heads[b]
        let record = writer.advanced(by: geometry.bucketOffset(b) + geometry.slotOffset(position))
        record.storeBytes(of: nst_rdtsc(), toByteOffset: RecordLayout.tscOffset, as: UInt64.self)
        record.storeBytes(of: probe.id, toByteOffset: RecordLayout.probeOffset, as: UInt32.self)
        record.storeBytes(of: UInt32(bitPattern: tid), toByteOffset: RecordLayout.threadOffset, as: UInt32.self)
        record.storeBytes(of: stackPointer, toByteOffset: RecordLayout.stackPointerOffset, as: UInt64.self)
        let captures = probe.probe.captures
        for (i, capture) in captures.enumerated() {
            let offset = probe.probe.offsets[i]
            switch capture {
            case .register(let r):
                let holdsText = captures.contains { if case .memory(let m) = $0, m.base == .register(r) { return true }; return false }
                record.storeBytes(of: holdsText ? RecordReplay.textAddress : counter, toByteOffset: offset, as: UInt64.self)
            case .xmm:
                record.storeBytes(of: (1.5 as Double).bitPattern, toByteOffset: offset, as: UInt64.self)
                record.storeBytes(of: UInt64(0), toByteOffset: offset + 8, as: UInt64.self)
            case .memory(let m):
                let count = min(text.count, m.maxBytes)
                record.storeBytes(of: UInt64(count), toByteOffset: offset, as: UInt64.self)
                text.withUnsafeBytes { record.advanced(by: offset + 8).copyMemory(from: $0.baseAddress!, byteCount: count) }
            case .goroutineField, .stackWord, .ticket, .x87:
                record.storeBytes(of: UInt64(0), toByteOffset: offset, as: UInt64.self)
            }
        }
        record.storeBytes(of: position &+ 1, toByteOffset: RecordLayout.sequenceOffset, as: UInt64.self)
        heads[b] = position &+ UInt64(probe.probe.slots)
    }
}

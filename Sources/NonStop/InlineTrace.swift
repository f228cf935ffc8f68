import Glibc
import Relocator
import Symbols

/// The inline strategy's state for one ring: the ring itself (mapped in the tracee and here), what
/// each probe id means, and engine actions that must wait until a bucket has been read up to a point.
/// A process and the fork children nstrace follows share one ring (a MAP_SHARED mapping survives
/// fork), so this is shared by their address spaces.
final class InlineTrace {
    let ring: EventRing
    /// Where the ring is mapped in the tracee.
    let ringAddress: UInt64
    /// The process that mapped it: records of threads nstrace does not know are reported as its.
    unowned let owner: TracedProcess
    private(set) var probes: [InlineProbe] = []
    /// Per bucket: actions to run once every record before `position` has been read — the engine's own
    /// observations (breakpoint hits, thread ends, forks) kept in order with the thread's records.
    private var waiting: [[(position: UInt64, action: () -> Void)]]
    /// A thread in vfork: its records until vfork-done are its child's (glibc's vfork leaves the
    /// parent's tid in the TCB the child shares).
    var vforkChildren: [pid_t: TracedProcess] = [:]
    /// Threads whose end has been seen but whose last records may not have been read yet.
    var departed: [pid_t: TracedProcess] = [:]
    /// Records given up: half-written ones, and those of unknown probes (a corrupted ring).
    var skipped = 0
    /// Lost records already reported (the ring's counters only grow): calls, returns, others.
    var lostReported: (calls: UInt64, returns: UInt64, others: UInt64) = (0, 0, 0)

    init(ring: EventRing, ringAddress: UInt64, owner: TracedProcess) {
        self.ring = ring
        self.ringAddress = ringAddress
        self.owner = owner
        waiting = Array(repeating: [], count: ring.geometry.bucketCount)
    }

    /// A ring of about `megabytes` in 16 buckets (memory is touched only as records are written),
    /// records of up to 64 slots.
    static func geometry(megabytes: Int) -> RingGeometry {
        let perBucket = max(1, megabytes) << 20 / 16 / RingGeometry.slotSize
        var slots = 1024
        while slots * 2 <= perBucket, slots < 1 << 24 { slots *= 2 }
        return RingGeometry(bucketCount: 16, slotsPerBucket: slots, maxSlotsPerRecord: 64)
    }

    func register(_ probe: InlineProbe) -> UInt32 {
        probes.append(probe)
        return UInt32(probes.count)
    }

    func probe(_ id: UInt32) -> InlineProbe? {
        let index = Int(id) - 1
        return index >= 0 && index < probes.count ? probes[index] : nil
    }

    func slots(of id: UInt32) -> Int? { probe(id)?.slots }

    /// Runs `action` once the bucket's records reserved so far are read (at once if they are).
    func afterRecords(inBucket bucket: Int, _ action: @escaping () -> Void) {
        let position = ring.head(of: bucket)
        if waiting[bucket].isEmpty, ring.positions[bucket] >= position {
            action()
            return
        }
        waiting[bucket].append((position, action))
    }

    /// Whether actions wait on the bucket (looked at per record: no array is made when none do).
    func hasWaiting(_ bucket: Int) -> Bool { !waiting[bucket].isEmpty }

    /// The actions of a bucket that the reader has caught up with.
    func takeReady(_ bucket: Int, upTo position: UInt64) -> [() -> Void] {
        var ready: [() -> Void] = []
        while let first = waiting[bucket].first, first.position <= position {
            ready.append(first.action)
            waiting[bucket].removeFirst()
        }
        return ready
    }

    /// Every waiting action, whatever the bucket's position (the process is gone).
    func takeAll() -> [() -> Void] {
        defer { for b in waiting.indices { waiting[b] = [] } }
        return waiting.flatMap { $0.map(\.action) }
    }
}

/// What a probe id stands for, and how its records are laid out. A class: read once per record, it
/// is shared rather than copied.
final class InlineProbe {
    enum Role {
        case entry(TracedFunction)
        case exit(TracedFunction)
        /// The function leaves by a tail call: its frame now returns when the callee does.
        case tailCall(TracedFunction)
        /// A return of a function watched only because a traced function tail-calls it.
        case watchedReturn
        /// The dynamic linker's r_brk: libraries were loaded or unloaded.
        case linkMap(rDebug: UInt64)
    }

    let role: Role
    let captures: [Capture]
    let offsets: [Int]
    let slots: Int
    /// The goroutine fields captured first in Go code (g, goid, stack top).
    let go: GoRuntime?

    /// How its records' values are read: an entry's arguments, an exit's result (of its own function,
    /// `returns`; a function that tail-called into it reads the same registers its own way). Empty when
    /// the function has no result, or no value is shown.
    let values: [ValueSlot]
    let returns: TracedFunction?
    /// Whether its records hold pointers' targets (`--deref`), which its values are then read with.
    let derefs: Bool

    init(role: Role, captures: [Capture], go: GoRuntime?, derefs: Bool = false) {
        self.role = role
        self.derefs = derefs
        self.captures = captures
        offsets = RecordLayout.offsets(for: captures).offsets
        slots = RecordLayout.slots(for: captures)
        self.go = go
        switch role {
        case .entry(let function):
            values = ValueSlot.plan(function.signature?.parameters ?? [], captures: captures, offsets: offsets)
            returns = nil
        case .exit(let function):
            // Several results are read as a tuple, by ArgumentReader.
            let results = function.signature?.results ?? []
            values = results.count == 1 ? ValueSlot.plan(results, captures: captures, offsets: offsets) : []
            returns = results.count > 1 ? nil : function
        case .tailCall, .watchedReturn, .linkMap:
            values = []
            returns = nil
        }
    }
}

import Glibc

/// One event as it crosses to the renderers: plain data, no references, so that a million of them cost
/// a million stores rather than a million allocations and reference counts. What an event needs beyond
/// its fixed fields lives beside it in its batch: argument and return values in the batch's value
/// arena, rare payloads (a path, a stack, a notice) in its details, and functions by number.
public struct Event: Sendable {
    public enum Kind: UInt8, Sendable {
        case call, ret, unwound, threadStart, threadExit, signal, fork, exec, exit, attach, detach, lost, notice
        case syscall

        /// The name JSON Lines gives it.
        public var name: String {
            switch self {
            case .call: return "call"
            case .ret: return "return"
            case .unwound: return "unwound"
            case .threadStart: return "thread_start"
            case .threadExit: return "thread_exit"
            case .signal: return "signal"
            case .fork: return "fork"
            case .exec: return "exec"
            case .exit: return "exit"
            case .attach: return "attach"
            case .detach: return "detach"
            case .lost: return "lost"
            case .notice: return "notice"
            case .syscall: return "syscall"
            }
        }
    }

    /// `goroutine` when the event is not a goroutine's.
    public static let noGoroutine = Int64.min

    public var kind: Kind
    /// A return whose value was read (the values hold it).
    public var hasValue = false
    /// A call made from the module `--caller` names (its return address lies there); false for every
    /// call when no module is named.
    public var fromCaller = false
    public var pid: Int32
    public var tid: Int32
    /// Calls open below this one on its thread (or goroutine).
    public var depth: Int32 = 0
    /// The function's number (`EventBatch.newFunctions` names it the first time), -1 for none.
    public var function: Int32 = -1
    /// The signal, the fork child's pid, a thread's exit status, or the syscall's number.
    public var number: Int32 = 0
    /// The event's entry in `EventBatch.details`, -1 for none.
    public var detail: Int32 = -1
    /// Wall-clock time, nanoseconds since the epoch.
    public var timestamp: UInt64
    /// Of a return or an unwound frame: nanoseconds since its call.
    public var duration: UInt64 = 0
    public var goroutine: Int64 = Event.noGoroutine
    /// Where the event's values start in the batch's arena, and how many there are: a call's
    /// arguments, a return's value.
    public var values: UInt32 = 0
    public var valueCount: UInt32 = 0

    public init(kind: Kind, pid: Int32, tid: Int32, timestamp: UInt64) {
        self.kind = kind
        self.pid = pid
        self.tid = tid
        self.timestamp = timestamp
    }

    public var goroutineID: Int64? { goroutine == Event.noGoroutine ? nil : goroutine }
}

/// What a few events carry beyond their fixed fields.
public enum EventDetail: Sendable {
    /// A call's callers, innermost first (`--stack`).
    case stack([StackFrame])
    /// The new program of an exec.
    case path(String)
    case exit(ExitStatus)
    case lost(LostEvents)
    case notice(String)
    case syscall(SyscallEvent)
}

/// Events handed from the engine to the renderers at once: one queue operation and at most one wake-up
/// for thousands of events. Written by the engine thread, then read by the renderer thread alone.
public final class EventBatch: @unchecked Sendable {
    public internal(set) var events: [Event] = []
    public internal(set) var arena = ValueArena()
    public internal(set) var details: [EventDetail] = []
    /// Functions numbered for the first time in this batch, in order of their numbers: a renderer keeps
    /// the table, and events name functions by number.
    public internal(set) var newFunctions: [TracedFunction] = []

    public init() {}

    public var isEmpty: Bool { events.isEmpty && newFunctions.isEmpty }

    /// The values' bytes, for `values(of:in:)`.
    public func withValues<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try arena.withUnsafeBytes(body)
    }

    /// An event's values, read in place from `raw` (the bytes `withValues` gives).
    public static func values(of event: Event, in raw: UnsafeRawBufferPointer) -> EncodedValues {
        EncodedValues(raw, offset: Int(event.values), count: Int(event.valueCount))
    }

    public func detail(of event: Event) -> EventDetail? {
        let i = Int(event.detail)
        return i >= 0 && i < details.count ? details[i] : nil
    }

    // MARK: Writing (the engine)

    /// Empty again, keeping its memory.
    func removeAll() {
        events.removeAll(keepingCapacity: true)
        arena.removeAll()
        details.removeAll(keepingCapacity: true)
        newFunctions.removeAll(keepingCapacity: true)
    }

    func append(_ event: Event) { events.append(event) }

    func add(_ detail: EventDetail) -> Int32 {
        details.append(detail)
        return Int32(truncatingIfNeeded: details.count - 1)
    }

    /// The arena, to encode an event's values into; `body` says how many it appended.
    func encode(_ body: (inout ValueArena) -> Int) -> (values: UInt32, count: UInt32) {
        let start = arena.position
        let count = body(&arena)
        return (start, UInt32(truncatingIfNeeded: count))
    }

    func noteNewFunction(_ function: TracedFunction) { newFunctions.append(function) }

    /// The calls, returns and unwound frames taken out (the output fell behind): how many of each.
    func removeCallEvents() -> (calls: Int, returns: Int, others: Int) {
        var calls = 0, returns = 0, others = 0
        events.removeAll { event in
            switch event.kind {
            case .call: calls += 1
            case .ret: returns += 1
            case .unwound: others += 1
            default: return false
            }
            return true
        }
        return (calls, returns, others)
    }
}

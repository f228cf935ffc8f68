import CShim
import Foundation
import Glibc
import Relocator
import Symbols

/// How a thread gets past a breakpoint without the breakpoint being lifted.
public enum Strategy: String, Sendable, CaseIterable {
    /// The relocated instruction is single-stepped in the thread's own scratch slot, then fixed up.
    case step
    /// The thread jumps to a shared per-site trampoline (relocated instruction + jump back): one stop.
    case jump
    /// No stop at all: a window of instructions at each site jumps to a pad inside the process that
    /// records the event into a shared ring and runs the relocated window. Sites no window fits keep an
    /// int3 with the jump strategy.
    case inline
}

public struct EngineConfiguration: Sendable {
    public var pattern: NamePattern
    public var strategy: Strategy
    /// Follow fork and vfork children (`-f`); otherwise they are cleaned of breakpoints and let go.
    public var followForks: Bool
    public var maxStringLength: Int
    /// Callers to record with each call (`-s N`); 0 for none.
    public var stackDepth: Int
    /// Inline pads wait for room in a full ring instead of counting a lost record.
    public var lossless: Bool
    /// The inline ring's size (each thread writes into one of its 16 buckets).
    public var ringMegabytes = 16
    /// Whether the renderers show arguments and return values (a summary does not: they are then not
    /// decoded at all).
    public var decodesValues = true
    /// Names are shown demangled (`shop::check(shop::Order const&)`); false for `--no-demangle`.
    public var demangles = true
    /// `--caller`: the module (its file name, or the end of its path) whose calls are marked
    /// `Event.fromCaller`; nil for none, and then no return address is read for it.
    public var callerModule: String?
    /// The syscalls to report (`-S`); nil: none, and threads are resumed with PTRACE_CONT as always.
    public var syscalls: SyscallSelection?
    /// False for syscalls alone (`--syscalls` with no REGEX): `pattern` is then not looked at.
    public var tracesFunctions = true
    /// `--deref`: a pointer argument or result to a struct, union or scalar is shown with what it
    /// points to, one level, read fault-safely.
    public var derefPointers = false
    /// `--follow-calls N`: the functions `pattern` matches are roots, and what they call, to N calls
    /// deep, is traced too (`TracedFunction.isCallee`).
    public var followCalls: Int?

    public init(pattern: NamePattern, strategy: Strategy = .inline, followForks: Bool = false, maxStringLength: Int = 64,
                stackDepth: Int = 0, lossless: Bool = false) {
        self.pattern = pattern
        self.strategy = strategy
        self.followForks = followForks
        self.maxStringLength = maxStringLength
        self.stackDepth = stackDepth
        self.lossless = lossless
    }
}

/// What the engine did, for the summary line and the benchmarks.
public struct EngineStatistics: Sendable {
    public var stops = 0
    public var breakpointHits = 0
    /// Trap-pad hits whose registers came from the thread's stop slot, not PTRACE_GETREGS.
    public var registersFromSlots = 0
    /// Of those, the ones shown straight from the slot's words (`Engine.slotTrapHit`).
    public var shownFromSlotWords = 0
    public var singleSteps = 0
    public var emulations = 0
    public var trampolineEntries = 0
    public var signalsDelivered = 0
    public var sitesArmed = 0
    /// Inline windows written, and records read from the ring.
    public var windowsInstalled = 0
    public var recordsRead = 0
}

/// Numbers another thread may read while the engine runs (for a live status line).
public final class EngineStatus: @unchecked Sendable {
    private let lock = NSLock()
    private var _breakpoints = 0
    private var _threads = 0

    public init() {}

    public var breakpoints: Int { lock.withLock { _breakpoints } }
    public var threads: Int { lock.withLock { _threads } }

    func update(breakpoints: Int, threads: Int) {
        lock.withLock {
            _breakpoints = breakpoints
            _threads = threads
        }
    }
}

/// The non-stop tracing engine. Every method must be called on the one thread that attached or
/// launched the tracees: the kernel accepts ptrace requests only from the tracing thread.
public final class Engine {
    let configuration: EngineConfiguration
    /// `configuration.maxStringLength` and `decodesValues`, read per record.
    let maxString: Int
    let decodesValues: Bool
    let events: EventQueue
    let decoder: Decoder
    var processes: [pid_t: TracedProcess] = [:]
    var threads: [pid_t: TraceeThread] = [:] {
        didSet { lastRecordThread = (0, nil) }  // a thread came or went: look records' threads up again
    }
    /// Stops of threads the engine has not been told about yet (a new thread's first stop can come
    /// before its parent's clone event).
    var early: [pid_t: [WaitResult]] = [:]
    /// Sites nstrace could not make, reported once each.
    var refusedSites: Set<UInt64> = []
    /// Stops reaped while waiting for something else (a brief all-stop), handled next by the loop.
    var deferredStops: [WaitResult] = []
    /// Events made since the last hand-over to the renderer: handed over in batches.
    var outbox = EventBatch()
    /// Events handed to the renderer so far, counted only for the `NSTRACE_TEST_CRASH` test hook.
    var eventsHandedOver = 0
    /// Functions numbered so far (`TracedFunction.eventID`).
    var functionsNumbered: Int32 = 0
    /// Losses not reported yet, by cause (the output fell behind, frames capped).
    var unreportedLosses: [String: LostEvents] = [:]
    /// The last thread's shadow stack, as its process's `threadStacks` holds it (see `withShadowStack`),
    /// and whose it is: compared with no retain or release, as it is for every record.
    var lastStack = ThreadShadowStack()
    var lastStackOwner: (process: ObjectIdentifier, tid: pid_t)?
    /// Held so that no other process can be made at the address `lastStackOwner` names.
    var lastStackProcess: TracedProcess?
    /// Frames closed by the shadow-stack operation under way (one array kept: no allocation per event).
    var closedFrames: [ShadowStack.Closed] = []
    /// The rings of the inline strategy, one per traced process (shared with followed children).
    var inlineTraces: [InlineTrace] = []
    var clock = TSCClock()
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC: events carry wall-clock time.
    let wallClockOffset: UInt64
    var ticker: DrainTicker?
    /// When events were last handed to the renderer (CLOCK_MONOTONIC nanoseconds).
    var lastFlush: UInt64 = 0
    /// When nstrace's bytes in the tracees were last read back (`checkSitesIfDue`).
    var lastSiteCheck: UInt64 = 0
    /// Events wait at most about this long (plus a ticker period) to be handed over: one wake-up of the
    /// renderer per batch, not one per stop.
    static let flushInterval: UInt64 = 5_000_000
    /// The thread of the last record read, and its process while it is alive (records come in runs).
    var lastRecordThread: (tid: pid_t, process: TracedProcess?) = (0, nil)
    /// Where the last drain started (it goes round the buckets).
    var drainStart = 0
    /// Link-map changes r_brk pads recorded, handled once the rings are drained.
    var pendingLinkMaps: [LinkMapChange] = []
    /// The module `--caller` last found a return address in (calls come in runs from one module).
    var lastCallerModule: (pid: pid_t, range: Range<UInt64>, matches: Bool)?
    public internal(set) var statistics = EngineStatistics()
    /// The launched program's end, which nstrace exits with.
    public internal(set) var launchedExit: ExitStatus?
    /// Set when the engine stops because of a failure of its own (tracees are detached first).
    public internal(set) var failure: String?

    public let status: EngineStatus

    public init(configuration: EngineConfiguration, events: EventQueue, status: EngineStatus = EngineStatus()) throws {
        self.configuration = configuration
        maxString = configuration.maxStringLength
        decodesValues = configuration.decodesValues
        self.events = events
        self.status = status
        decoder = try Decoder()
        wallClockOffset = now() &- monotonicNow()
        StopRequest.registerEngineThread()
        CrashGuard.install()
    }

    /// A failure of nstrace's own: the engine stops (detaching first) and says why.
    func fail(_ message: String) {
        if failure == nil { failure = message }
        DebugLog.log("failure: \(message)")
    }

    func publishStatus() {
        status.update(breakpoints: processes.values.reduce(0) { $0 + $1.space.sites.count }, threads: threads.count)
    }
}


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
    /// The last thread's shadow stack, out of its process's `threadStacks` (see `withShadowStack`).
    var cachedStack = ShadowStack()
    var cachedStackOwner: (process: TracedProcess, tid: pid_t)?
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

    // MARK: The loop

    /// Runs until every tracee is gone or a stop is requested, then detaches from what is left.
    public func run() {
        defer { ticker?.stop(); ticker = nil }
        loop: while !processes.isEmpty {
            if StopRequest.pending != nil { break }
            // The ticker wakes the loop out of waitpid at least every 20 ms, so that what follows runs
            // even when no thread stops: events kept back are handed over, nstrace's bytes checked.
            if ticker == nil { ticker = DrainTicker() }
            checkSitesIfDue()
            // A bounded share of the rings, then every stop that is ready: a flood of records must not
            // keep a stopped thread waiting.
            let moreRecords = drainRecords(milliseconds: 2)
            if outbox.events.count >= 1024 || (!moreRecords && monotonicNow() &- lastFlush >= Engine.flushInterval) {
                flushEvents()
            }
            var handled = 0
            while true {
                let result: WaitResult
                do {
                    if !deferredStops.isEmpty {
                        result = deferredStops.removeFirst()
                    } else {
                        // Block only when there is nothing else to do.
                        let wait = moreRecords || handled > 0 ? Wait.noHang : 0
                        guard let next = try Wait.next(flags: wait) else { break }
                        result = next
                    }
                } catch {
                    if error.errno == ECHILD { break loop }
                    fail("waitpid: \(error)")
                    break loop
                }
                statistics.stops += 1
                handled += 1
                do {
                    try handle(result)
                } catch {
                    if error.threadGone { continue }  // its exit is reported next
                    fail(String(describing: error))
                    break loop
                }
                if outbox.events.count >= 4096 { flushEvents() }
                if processes.isEmpty || StopRequest.pending != nil { break }
            }
        }
        detachAll()
        flushEvents()
        StopRequest.acknowledge()
    }

    func fail(_ message: String) {
        if failure == nil { failure = message }
        DebugLog.log("failure: \(message)")
    }

    func handle(_ result: WaitResult) throws(TraceError) {
        guard let thread = threads[result.tid] else {
            // A new thread's first stop — or its end — can come before its parent's clone event.
            early[result.tid, default: []].append(result)
            return
        }
        if !result.isEnd {
            if case .signalStop = result { thread.reaped(.signalDelivery) } else { thread.reaped(.event) }
        }
        if thread.process.cleanUpAndDetach, !(result.isEnd) {
            releaseChild(thread)
            return
        }
        switch result {
        case .exited(let tid, let status):
            threadEnded(tid, .exited(status))
        case .killed(let tid, let signal, let core):
            threadEnded(tid, .killed(signal: signal, coreDumped: core))
        case .eventStop(_, let event, let signal):
            DebugLog.log("\(thread.tid): event \(event) sig \(signal)")
            if case .held(_, .midStep(let step)) = thread.state {
                // The step has not run yet (a group-stop is taken before the next instruction) or it
                // has and its trap is queued: either way a single step again completes it (after the
                // group-stop: `listen` keeps the step to redo).
                if event == .stop, Engine.isGroupStop(signal) {
                    try listen(thread)
                } else {
                    try singleStep(thread, step)
                }
                return
            }
            switch event {
            case .clone, .fork, .vfork: try newTask(from: thread, event: event)
            case .exec: try executed(thread)
            case .stop: try eventStop(thread, signal: signal)
            case .vforkDone:
                // Reaped, it is no longer blocked in vfork (`reaped` made it held).
                if let trace = thread.process.space.inline {
                    let tid = thread.tid
                    afterRecords(of: thread.process, tid: tid) { trace.vforkChildren[tid] = nil }
                }
                try resume(thread)
            case .exit: try resume(thread)
            }
        case .syscallStop:
            try syscallStopped(thread)
            try resume(thread)
        case .signalStop(_, let signal):
            if case .held(_, .midStep(let step)) = thread.state {
                try stepStopped(thread, step, signal: signal)
            } else if signal == SIGTRAP, try breakpointHit(thread) {
                return
            } else if [SIGSEGV, SIGBUS, SIGILL, SIGFPE].contains(signal), try faultInTrampoline(thread, signal) {
                return
            } else {
                try passSignal(thread, signal)
            }
        }
    }

    /// Handles the stops a thread made before the engine knew it.
    func replayEarlyStops(of tid: pid_t) throws(TraceError) {
        guard let stops = early.removeValue(forKey: tid) else { return }
        for stop in stops { try handle(stop) }
    }

    func publishStatus() {
        status.update(breakpoints: processes.values.reduce(0) { $0 + $1.space.sites.count }, threads: threads.count)
    }

    // MARK: Resuming

    /// Lets a stopped thread run on, delivering the first signal held for it (with its original
    /// siginfo) when it sits in a signal-delivery-stop, and sending the others again.
    func resume(_ thread: TraceeThread) throws(TraceError) {
        var signal: Int32 = 0
        if var first = thread.heldSignals.first, thread.heldStop == .signalDelivery {
            restoreResent(thread, &first)
            try Ptrace.setSigInfo(thread.tid, first)
            // Off the list only once it is on its way: a failed SETSIGINFO must not lose it.
            thread.heldSignals.removeFirst()
            emit(thread.process, thread.tid, .signal(first.si_signo))
            statistics.signalsDelivered += 1
            signal = first.si_signo
        }
        thread.letGo()
        try proceed(thread.tid, signal: signal)
        requeueHeldSignals(thread)
    }

    /// Only one signal rides on a resume, and only from a signal-delivery-stop: the rest are queued
    /// to the thread again (sigqueue-style ones with their value), to be passed when they come back.
    func requeueHeldSignals(_ thread: TraceeThread) {
        guard !thread.heldSignals.isEmpty else { return }
        for info in thread.heldSignals {
            var copy = info
            // Sent as SI_TKILL from nstrace: its own siginfo waits for it (unless this is such a resent
            // signal already, whose siginfo still waits).
            DebugLog.log("\(thread.tid): send \(signalName(info.si_signo)) again")
            if nst_requeue_signal(thread.process.pid, thread.tid, &copy) == 0, !isResent(info) {
                if thread.resent.count >= 64 { thread.resent.removeFirst() }
                thread.resent.append(info)
            }
        }
        thread.heldSignals = []
    }

    /// A signal nstrace sent again itself (SI_TKILL from nstrace's pid).
    private func isResent(_ info: siginfo_t) -> Bool {
        var copy = info
        return info.si_code == SI_TKILL && nst_siginfo_pid(&copy) == getpid()
    }

    /// A resent signal gets its own siginfo back (the oldest of its number). Whether it was one.
    @discardableResult
    func restoreResent(_ thread: TraceeThread, _ info: inout siginfo_t) -> Bool {
        guard !thread.resent.isEmpty, isResent(info),
              let i = thread.resent.firstIndex(where: { $0.si_signo == info.si_signo }) else { return false }
        info = thread.resent.remove(at: i)
        DebugLog.log("\(thread.tid): \(signalName(info.si_signo)) resent by nstrace gets its own siginfo back")
        return true
    }

    func passSignal(_ thread: TraceeThread, _ signal: Int32) throws(TraceError) {
        DebugLog.log("\(thread.tid): pass \(signalName(signal))")
        if !thread.resent.isEmpty {
            var info = try Ptrace.getSigInfo(thread.tid)
            if restoreResent(thread, &info) { try Ptrace.setSigInfo(thread.tid, info) }
        }
        emit(thread.process, thread.tid, .signal(signal))
        statistics.signalsDelivered += 1
        thread.letGo()
        try proceed(thread.tid, signal: signal)
        requeueHeldSignals(thread)
    }

    /// Single-steps the relocated instruction of `step` (again), delivering `signal` first if given.
    func singleStep(_ thread: TraceeThread, _ step: StepInFlight, signal: Int32 = 0) throws(TraceError) {
        thread.state = .stepping(step)
        try Ptrace.singleStep(thread.tid, signal: signal)
    }

    /// Parks a thread in its group-stop; a step the group-stop interrupted is kept, to be redone when
    /// it ends.
    func listen(_ thread: TraceeThread) throws(TraceError) {
        var redo: StepInFlight?
        switch thread.state {
        case .held(_, .midStep(let step)), .stepping(let step): redo = step
        case .held(_, .groupStop(let step)), .groupStopped(let step): redo = step
        default: break
        }
        thread.state = .groupStopped(redo: redo)
        try Ptrace.listen(thread.tid)
    }

    /// Under PTRACE_SEIZE a PTRACE_EVENT_STOP carries the stopping signal while a group-stop is in
    /// effect, SIGTRAP otherwise.
    static func isGroupStop(_ signal: Int32) -> Bool {
        signal == SIGSTOP || signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU
    }

    /// A PTRACE_EVENT_STOP: a group-stop (SIGSTOP and friends: stay stopped, but keep listening), or
    /// the first stop of a new thread, or the end of a group-stop.
    func eventStop(_ thread: TraceeThread, signal: Int32) throws(TraceError) {
        if Engine.isGroupStop(signal) {
            try listen(thread)
            return
        }
        if case .held(_, .groupStop(let step?)) = thread.state {
            try singleStep(thread, step)
            return
        }
        if !thread.process.installed, thread.process.reportsEvents {
            // Attached while the process was stopped: breakpoints go in now that it runs again.
            // The group-stop has just ended: no thread of it runs before nstrace lets it.
            thread.hold(at: .stop)
            if thread.process.space.regions.isEmpty, allStopped(thread.process) {
                let regs = try Ptrace.getRegs(thread.tid)
                try mapFirstRegion(thread.process, near: regs.rip, using: thread)
            }
            try install(thread.process, using: thread)
        }
        try resume(thread)
    }
}


import CShim
import Glibc

/// Stops and the wait loop: every stop a tracee makes is reaped here and sent where it belongs (a hit,
/// a step's end, a signal to pass, a new task, a group-stop); threads are let go from here; and an
/// all-stop (every thread of a process stopped for a moment) collects its stops here too.
extension Engine {
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
                        // Block only when there is nothing else to do: no records left to drain and,
                        // once a stop has been handled, none of the loop's own work due. (Polling first
                        // after every stop cost a second wait4 per stop: the tracee has rarely stopped
                        // again so soon.)
                        let wait = moreRecords || (handled > 0 && loopWorkDue()) ? Wait.noHang : 0
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
        DebugLog.log("\(statistics.stops) stops, \(statistics.breakpointHits) breakpoint hits, "
                     + "\(statistics.registersFromSlots) of them with registers from stop slots")
        DebugLog.log("\(statistics.shownFromSlotWords) trap pad stops shown straight from their slot's words")
        StopRequest.acknowledge()
    }

    /// What the outer loop does between stops, due now: rings to drain (the inline strategy's records
    /// come without stops), a batch to hand over, the check of nstrace's bytes.
    private func loopWorkDue() -> Bool {
        if !inlineTraces.isEmpty || outbox.events.count >= 1024 { return true }
        let now = monotonicNow()
        return now &- lastFlush >= Engine.flushInterval || now &- lastSiteCheck >= Engine.siteCheckInterval
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
        if let slots = thread.process.space.stopSlots, !result.isTrap { slots.settleAtStop(result) }
        if thread.process.cleanUpAndDetach, !(result.isEnd) {
            releaseChild(thread)
            return
        }
        switch result {
        case .exited, .killed:
            if let ending = result.ending { threadEnded(result.tid, ending) }
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
            case .exit:
                // Its memory is still mapped. Records read after the process is gone (the ring is
                // drained later) find their stacks in what is read now: afterwards /proc/PID/maps is
                // empty, and fibers' and sigaltstacks' frames could no longer be told apart.
                thread.process.stacks.refresh()
                try resume(thread)
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
    /// Under PTRACE_SEIZE a PTRACE_EVENT_STOP carries the stopping signal while a group-stop is in
    /// effect, SIGTRAP otherwise.
    static func isGroupStop(_ signal: Int32) -> Bool {
        signal == SIGSTOP || signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU
    }

    // MARK: Letting go

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

    // MARK: All-stop

    /// PTRACE_INTERRUPT to every running thread of the process, and wait until each has stopped. What
    /// arrives meanwhile is kept: a signal is held for delivery, a hit of one of nstrace's int3s is
    /// rewound to be taken again, a new thread or child is registered, and stops of other processes
    /// are handled after. Returns the threads it stopped.
    func stopAllThreads(of process: TracedProcess, except holder: TraceeThread?) throws(TraceError) -> [TraceeThread] {
        var stopped: [TraceeThread] = []
        for t in process.threads.values where t !== holder {
            guard case .running = t.state else { continue }
            do {
                try Ptrace.interrupt(t.tid)
            } catch {
                if error.threadGone { continue }
                throw error
            }
            t.state = .interruptPending(redo: nil)
            stopped.append(t)
        }
        let deadline = monotonicNow() &+ 5_000_000_000
        while stopped.contains(where: { $0.awaitsStop && threads[$0.tid] != nil }) {
            guard let result = try Wait.next() else {
                if monotonicNow() > deadline {
                    throw TraceError("stop every thread: \(stopped.filter(\.awaitsStop).map(\.tid)) never stopped",
                                     tid: process.pid, errno: ETIMEDOUT)
                }
                continue
            }
            guard let t = threads[result.tid], t.process === process, t.awaitsStop else {
                if threads[result.tid] == nil { early[result.tid, default: []].append(result) } else { deferredStops.append(result) }
                continue
            }
            try settleForAllStop(t, result)
        }
        return stopped.filter { threads[$0.tid] != nil }
    }

    /// One stop of a thread being stopped for an all-stop.
    private func settleForAllStop(_ t: TraceeThread, _ result: WaitResult) throws(TraceError) {
        if let slots = t.process.space.stopSlots, !result.isTrap { slots.settleAtStop(result) }
        switch result {
        case .exited, .killed:
            if let ending = result.ending { threadEnded(result.tid, ending) }
            return
        case .signalStop(let tid, let signal) where Engine.isGroupStop(signal):
            // A stop signal goes through at once; the group-stop it starts is this thread's stop.
            try proceed(tid, signal: signal)
            return
        case .signalStop(let tid, SIGTRAP):
            var regs = try Ptrace.getRegs(tid)
            let info = try Ptrace.getSigInfo(tid)
            let space = t.process.space
            if info.si_code == 0x80, space.site(at: regs.rip &- 1) != nil || space.trap(at: regs.rip &- 1) != nil {
                // One of nstrace's int3s, not yet handled: back onto it, to be hit again once resumed.
                regs.rip &-= 1
                try Ptrace.setRegs(tid, regs)
                t.state = .held(.event, .stop)
            } else {
                t.heldSignals.append(info)
                t.state = .held(.signalDelivery, .stop)
            }
        case .signalStop(let tid, _):
            t.heldSignals.append(try Ptrace.getSigInfo(tid))
            t.state = .held(.signalDelivery, .stop)
        case .syscallStop:
            // Stopped at a syscall before the interrupt: as good a stop as the interrupt's (which comes
            // later, and is a plain event stop then).
            try syscallStopped(t)
            t.state = .held(.event, .stop)
        case .eventStop(_, .clone, _), .eventStop(_, .fork, _), .eventStop(_, .vfork, _):
            guard case .eventStop(_, let event, _) = result else { break }
            let child = pid_t(truncatingIfNeeded: try Ptrace.eventMessage(t.tid))
            // Registered, but its first stop waits for the loop: it must not run while code is rewritten.
            if event.madeThread(child, of: t.process.pid) {
                let newThread = TraceeThread(tid: child, process: t.process)
                t.process.threads[child] = newThread
                threads[child] = newThread
                emit(t.process, child, .threadStart)
            } else {
                try registerChildProcess(child, of: t, event: event)
            }
            deferredStops += early.removeValue(forKey: child) ?? []
            // A vfork parent let go after the all-stop blocks until its child execs or exits.
            t.state = .held(.event, event == .vfork ? .vforked : .stop)
        case .eventStop(_, .exec, _):
            // The image is gone: nothing to patch. The loop handles the exec next (the stop not taken:
            // it comes back out of `deferredStops`).
            deferredStops.append(result)
            t.state = .running
            throw TraceError("stop every thread: an exec came first", tid: t.tid, errno: EINTR)
        case .eventStop(_, .stop, let signal) where Engine.isGroupStop(signal):
            t.state = .held(.event, .groupStop(redo: nil))
        case .eventStop:
            t.state = .held(.event, .stop)
        }
    }
}

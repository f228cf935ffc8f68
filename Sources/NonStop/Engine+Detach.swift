import CShim
import Glibc

extension Engine {
    /// Leaves every tracee as if nstrace had never been there: every thread stopped (steps in flight
    /// finished first), every original byte back, threads that had just hit an int3 put back on the
    /// original instruction, then PTRACE_DETACH with any held signal re-delivered. Scratch memory stays
    /// mapped: a signal frame may still point into a trampoline.
    func detachAll() {
        // Threads whose stop nstrace holds (attach, or an error in the middle of a hit) are settled
        // where they are; the others are interrupted. A thread blocked in vfork cannot stop until its
        // child execs: it is not waited for (its breakpoints are restored while it is blocked, and the
        // kernel lets it go when nstrace exits).
        for thread in threads.values {
            if thread.hold != .none {
                settleHeld(thread)
                continue
            }
            switch thread.state {
            case .running, .groupStopped:
                guard !thread.inVfork else { continue }
                if (try? Ptrace.interrupt(thread.tid)) != nil { thread.interruptPending = true }
            case .stepping, .stopped:
                break
            }
        }
        // The stop watcher interrupts waitpid every few milliseconds from here on, so a thread that
        // vanished without a report cannot hang the detach.
        StopRequest.request()
        let deadline = monotonicNow() + 10_000_000_000
        while threads.values.contains(where: { $0.interruptPending || $0.isStepping }) {
            let result: WaitResult
            do {
                guard let next = try Wait.next() else {
                    forgetVanishedThreads()
                    if monotonicNow() > deadline {
                        fail("detach: threads \(threads.values.filter { $0.interruptPending || $0.isStepping }.map(\.tid)) never stopped")
                        break
                    }
                    continue
                }
                result = next
            } catch {
                break  // ECHILD: nothing left to wait for
            }
            guard let thread = threads[result.tid] else {
                // A new thread's first stop can come before its parent's clone event.
                early[result.tid, default: []].append(result)
                continue
            }
            do {
                try settle(thread, result)
            } catch {
                if !error.threadGone { fail("detach: \(error)") }
                threadEnded(thread.tid, .killed(signal: SIGKILL, coreDumped: false))
            }
        }

        var restoredSpaces: [ObjectIdentifier] = []
        for process in processes.values where !restoredSpaces.contains(ObjectIdentifier(process.space)) {
            restoredSpaces.append(ObjectIdentifier(process.space))
            // int3s first: one may sit on the first byte of a window's jump.
            let restored = process.space.disarmAll()
            let windows = process.space.restoreWindows()
            DebugLog.log("\(process.pid): restored \(restored) original bytes and \(windows) windows")
        }
        // What the pads wrote up to now (and what waited on it); then no pad waits for nstrace any more.
        drainRecords()
        ticker?.stop()
        for trace in inlineTraces {
            trace.ring.acknowledge(through: UInt64.max - 1)
            trace.ring.flatline()
            for action in trace.takeAll() { action() }
        }
        for thread in threads.values {
            // From its own delivery-stop a signal leaves with its siginfo; the rest are queued again.
            var signal: Int32 = 0
            if thread.hold == .signalDelivery, !thread.heldSignals.isEmpty {
                let first = thread.heldSignals.removeFirst()
                try? Ptrace.setSigInfo(thread.tid, first)
                signal = first.si_signo
            }
            try? Ptrace.detach(thread.tid, signal: signal)
            requeueHeldSignals(thread)
        }
        for process in processes.values { emit(process, process.pid, .detach) }
        threads.removeAll()
        processes.removeAll()
        CrashGuard.reset()
    }

    /// A thread whose stop nstrace already holds: back on the original instruction stream.
    private func settleHeld(_ thread: TraceeThread) {
        guard var regs = try? Ptrace.getRegs(thread.tid) else { return }
        if let rewind = thread.rewind {
            regs.rip = rewind
            thread.rewind = nil
        } else if case .stepping(let step) = thread.state {
            let end = step.slot + UInt64(step.plan.instruction.length)
            if regs.rip == end { finishStep(step, &regs, memory: thread.process.space.memory) }
            else if regs.rip >= step.slot && regs.rip < end { undoStep(step, &regs) }
        }
        try? Ptrace.setRegs(thread.tid, regs)
        thread.state = .stopped
    }

    /// Threads that are gone without nstrace having seen their end (reaped with their process).
    /// and zombies, which will never stop again (a leader that called pthread_exit).
    private func forgetVanishedThreads() {
        for thread in threads.values where thread.interruptPending || thread.isStepping {
            let gone = nst_tgkill(thread.process.pid, thread.tid, 0) != 0 && errno == ESRCH
            if gone || ProcFS.isExiting(thread.tid, of: thread.process.pid) {
                thread.interruptPending = false
                if gone { threadEnded(thread.tid, .killed(signal: SIGKILL, coreDumped: false)) }
                else { thread.state = .stopped }
            }
        }
    }

    /// One stop while detaching: the thread is kept in it, put back on the original instruction
    /// stream, with any signal it brought held.
    private func settle(_ thread: TraceeThread, _ result: WaitResult) throws(TraceError) {
        if !result.isEnd {
            if case .signalStop = result { thread.hold = .signalDelivery } else { thread.hold = .event }
        }
        switch result {
        case .exited(let tid, let status):
            threadEnded(tid, .exited(status))
        case .killed(let tid, let signal, let core):
            threadEnded(tid, .killed(signal: signal, coreDumped: core))
        case .signalStop(let tid, let signal):
            if case .stepping(let step) = thread.state {
                let info = try Ptrace.getSigInfo(tid)
                if signal == SIGTRAP, info.si_code > 0, info.si_code != 0x80 {
                    var regs = try Ptrace.getRegs(tid)
                    if regs.rip == step.slot {
                        try singleStep(thread)
                        return
                    }
                    finishStep(step, &regs, memory: thread.process.space.memory)
                    try Ptrace.setRegs(tid, regs)
                    thread.state = .stopped
                    return
                }
                // Faults and signals alike: undo the step; the original instruction runs after detach.
                var regs = try Ptrace.getRegs(tid)
                undoStep(step, &regs)
                try Ptrace.setRegs(tid, regs)
                thread.heldSignals.append(info)
                thread.state = .stopped
                return
            }
            let info = try Ptrace.getSigInfo(tid)
            if signal == SIGTRAP, info.si_code == 0x80 {
                var regs = try Ptrace.getRegs(tid)
                if thread.process.space.trap(at: regs.rip &- 1) != nil {
                    // The int3 of a trap pad: its SIGTRAP is nstrace's (delivered, it would kill the
                    // program). The thread runs on through the pad's relocated window, which needs
                    // nothing of the window's bytes in the program.
                    thread.interruptPending = false
                    thread.state = .stopped
                    return
                }
                if thread.process.space.site(at: regs.rip &- 1) != nil {
                    // Hit an int3 that is about to go: run the original instruction instead.
                    regs.rip -= 1
                    try Ptrace.setRegs(tid, regs)
                    thread.interruptPending = false
                    thread.state = .stopped
                    return
                }
            }
            thread.heldSignals.append(info)
            thread.interruptPending = false
            thread.state = .stopped
        case .syscallStop:
            // Kept here and detached from it: a syscall under way is not reported (its exit would
            // come after nstrace has gone). The interrupt still pending is cleared by the detach.
            thread.syscall = nil
            thread.interruptPending = false
            thread.state = .stopped
        case .eventStop(let tid, let event, _):
            switch event {
            case .stop:
                var stepInFlight = thread.stepAcrossGroupStop
                if case .stepping(let step) = thread.state { stepInFlight = step }
                if let step = stepInFlight {
                    // Stopped (by SIGSTOP, or the interrupt) in the middle of a step: undo it if it has
                    // not run, else let its queued trap report so it can be finished.
                    thread.stepAcrossGroupStop = nil
                    var regs = try Ptrace.getRegs(tid)
                    if regs.rip == step.slot {
                        undoStep(step, &regs)
                        try Ptrace.setRegs(tid, regs)
                        thread.state = .stopped
                    } else {
                        thread.state = .stepping(step)
                        thread.hold = .none
                        try Ptrace.cont(tid)
                        return
                    }
                } else if ProcFS.isPending(SIGTRAP, thread: tid) {
                    // The interrupt was reported before the SIGTRAP of an int3 the thread has just
                    // executed (job-control traps come before signals). Detached like this, the thread
                    // would die of that SIGTRAP: let it report the trap, and rewind it then.
                    thread.hold = .none
                    try Ptrace.cont(tid)
                    thread.interruptPending = true
                    return
                }
                thread.interruptPending = false
                thread.state = .stopped
            case .clone, .fork, .vfork:
                // A task born during detach: wait for its first stop too, so it can be let go cleanly.
                let child = pid_t(truncatingIfNeeded: try Ptrace.eventMessage(tid))
                let process: TracedProcess
                if event.madeThread(child, of: thread.process.pid) {
                    process = thread.process
                } else {
                    let shares = event == .vfork || nst_same_address_space(tid, child) == 1
                    let space = shares ? thread.process.space : thread.process.space.copy(for: try TraceeMemory(pid: child))
                    process = TracedProcess(pid: child, space: space, reportsEvents: false, launched: false)
                    processes[child] = process
                }
                let newThread = TraceeThread(tid: child, process: process)
                newThread.interruptPending = true
                process.threads[child] = newThread
                threads[child] = newThread
                if let earlier = early.removeValue(forKey: child) {
                    for stop in earlier { try settle(newThread, stop) }
                }
                thread.interruptPending = false
                thread.state = .stopped
            case .exec:
                thread.interruptPending = false
                thread.state = .stopped
                // The old image's bytes are gone with it (unless the space was a vfork parent's, still in use).
                if thread.process.space.memory.pid == thread.process.pid { thread.process.space.forgetGuarded() }
                thread.process.space = AddressSpace(memory: try TraceeMemory(pid: thread.process.pid))
            default:
                thread.interruptPending = false
                thread.state = .stopped
            }
        }
    }
}

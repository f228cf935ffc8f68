import CShim
import Glibc

/// Letting go of tracees as if nstrace had never been there. Getting hold of them is Engine+Attach.swift.
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
            switch thread.state {
            case .held:
                settleHeld(thread)
            case .running:
                if (try? Ptrace.interrupt(thread.tid)) != nil { thread.state = .interruptPending(redo: nil) }
            case .groupStopped(let redo), .interruptPending(let redo):
                // A step the group-stop interrupted stays known until the thread's stop is handled.
                if (try? Ptrace.interrupt(thread.tid)) != nil { thread.state = .interruptPending(redo: redo) }
            case .inVfork, .stepping, .exiting:
                break
            }
        }
        // The stop watcher interrupts waitpid every few milliseconds from here on, so a thread that
        // vanished without a report cannot hang the detach.
        StopRequest.request()
        let deadline = monotonicNow() + 10_000_000_000
        while threads.values.contains(where: \.awaitsStop) {
            let result: WaitResult
            do {
                guard let next = try Wait.next() else {
                    forgetVanishedThreads()
                    if monotonicNow() > deadline {
                        fail("detach: threads \(threads.values.filter(\.awaitsStop).map(\.tid)) never stopped")
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
        // Threads given up on in the middle of a step (and a group-stopped one that could not be
        // interrupted) are let go from inside their slots.
        for thread in threads.values {
            switch thread.state {
            case .stepping(let step), .interruptPending(let step?), .groupStopped(let step?):
                closeAbandonedStep(thread, step)
            default: break
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
            if thread.heldStop == .signalDelivery, !thread.heldSignals.isEmpty {
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
        switch thread.state {
        case .held(_, .atSite(let site)):
            regs.rip = site
        case .held(_, .enteringStep(let step)):
            // Its registers may or may not be set for the step yet: undone either way.
            undoStep(step, &regs)
        case .held(_, .midStep(let step)), .held(_, .groupStop(let step?)):
            putBackOnOriginal(step, &regs, memory: thread.process.space.memory)
        default:
            break
        }
        try? Ptrace.setRegs(thread.tid, regs)
        thread.hold(at: .stop)
    }

    /// Threads that are gone without nstrace having seen their end (reaped with their process).
    /// and zombies, which will never stop again (a leader that called pthread_exit).
    private func forgetVanishedThreads() {
        for thread in threads.values where thread.awaitsStop {
            let gone = nst_tgkill(thread.process.pid, thread.tid, 0) != 0 && errno == ESRCH
            if gone || ProcFS.isExiting(thread.tid, of: thread.process.pid) {
                if gone { threadEnded(thread.tid, .killed(signal: SIGKILL, coreDumped: false)) }
                else { thread.state = .exiting }
            }
        }
    }

    /// One stop while detaching: the thread is kept in it, put back on the original instruction
    /// stream, with any signal it brought held.
    private func settle(_ thread: TraceeThread, _ result: WaitResult) throws(TraceError) {
        if !result.isEnd {
            if case .signalStop = result { thread.reaped(.signalDelivery) } else { thread.reaped(.event) }
        }
        switch result {
        case .exited, .killed:
            if let ending = result.ending { threadEnded(result.tid, ending) }
        case .signalStop(let tid, let signal):
            if case .held(_, .midStep(let step)) = thread.state {
                try stepStoppedWhileDetaching(thread, step, signal: signal)
                return
            }
            let info = try Ptrace.getSigInfo(tid)
            if signal == SIGTRAP, info.si_code == 0x80 {
                var regs = try Ptrace.getRegs(tid)
                if thread.process.space.trap(at: regs.rip &- 1) != nil {
                    // The int3 of a trap pad: its SIGTRAP is nstrace's (delivered, it would kill the
                    // program). The thread runs on through the pad's relocated window, which needs
                    // nothing of the window's bytes in the program.
                    thread.hold(at: .stop)
                    return
                }
                if thread.process.space.site(at: regs.rip &- 1) != nil {
                    // Hit an int3 that is about to go: run the original instruction instead.
                    regs.rip -= 1
                    try Ptrace.setRegs(tid, regs)
                    thread.hold(at: .stop)
                    return
                }
            }
            thread.heldSignals.append(info)
            thread.hold(at: .stop)
        case .syscallStop:
            // Kept here and detached from it: a syscall under way is not reported (its exit would
            // come after nstrace has gone). The interrupt still pending is cleared by the detach.
            thread.syscall = nil
            thread.hold(at: .stop)
        case .eventStop(let tid, let event, _):
            switch event {
            case .stop:
                switch thread.state {
                case .held(_, .midStep(let step)), .held(_, .groupStop(let step?)):
                    // Stopped (by SIGSTOP, or the interrupt) in the middle of a step.
                    if try stepInterruptedWhileDetaching(thread, step) { return }
                default:
                    if ProcFS.isPending(SIGTRAP, thread: tid) {
                        // The interrupt was reported before the SIGTRAP of an int3 the thread has just
                        // executed (job-control traps come before signals). Detached like this, the thread
                        // would die of that SIGTRAP: let it report the trap, and rewind it then.
                        thread.state = .interruptPending(redo: nil)
                        try Ptrace.cont(tid)
                        return
                    }
                }
                thread.hold(at: .stop)
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
                newThread.state = .interruptPending(redo: nil)
                process.threads[child] = newThread
                threads[child] = newThread
                if let earlier = early.removeValue(forKey: child) {
                    for stop in earlier { try settle(newThread, stop) }
                }
                thread.hold(at: .stop)
            case .exec:
                thread.hold(at: .stop)
                // The old image's bytes are gone with it (unless the space was a vfork parent's, still in use).
                if thread.process.space.memory.pid == thread.process.pid { thread.process.space.forgetGuarded() }
                thread.process.space = AddressSpace(memory: try TraceeMemory(pid: thread.process.pid))
            default:
                thread.hold(at: .stop)
            }
        }
    }
}

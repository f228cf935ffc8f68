import CShim
import Glibc

extension Engine {
    /// Leaves every tracee as if nstrace had never been there: every thread stopped (steps in flight
    /// finished first), every original byte back, threads that had just hit an int3 put back on the
    /// original instruction, then PTRACE_DETACH with any held signal re-delivered. Scratch memory stays
    /// mapped: a signal frame may still point into a trampoline.
    func detachAll() {
        for thread in threads.values {
            switch thread.state {
            case .running, .groupStopped:
                if (try? Ptrace.interrupt(thread.tid)) != nil { thread.interruptPending = true }
            case .stepping, .stopped:
                break
            }
        }
        var lastSignalStop: [pid_t: Int32] = [:]
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
                if let signal = try settle(thread, result) { lastSignalStop[thread.tid] = signal }
            } catch {
                if !error.threadGone { fail("detach: \(error)") }
                threadEnded(thread.tid, .killed(signal: SIGKILL, coreDumped: false))
            }
        }

        var restoredSpaces: [ObjectIdentifier] = []
        for process in processes.values where !restoredSpaces.contains(ObjectIdentifier(process.space)) {
            restoredSpaces.append(ObjectIdentifier(process.space))
            let restored = process.space.disarmAll()
            DebugLog.log("\(process.pid): restored \(restored) original bytes")
        }
        for thread in threads.values {
            var held = thread.heldSignals
            var signal: Int32 = 0
            if let stopSignal = lastSignalStop[thread.tid], let i = held.firstIndex(where: { $0.si_signo == stopSignal }) {
                // Stopped in that signal's own delivery-stop: detach delivers it with its siginfo.
                signal = stopSignal
                try? Ptrace.setSigInfo(thread.tid, held[i])
                held.remove(at: i)
            }
            try? Ptrace.detach(thread.tid, signal: signal)
            for info in held { _ = nst_tgkill(thread.process.pid, thread.tid, info.si_signo) }
        }
        for process in processes.values { emit(process, process.pid, .detach) }
        threads.removeAll()
        processes.removeAll()
    }

    /// Threads that are gone without nstrace having seen their end (reaped with their process).
    private func forgetVanishedThreads() {
        for thread in threads.values where nst_tgkill(thread.process.pid, thread.tid, 0) != 0 && errno == ESRCH {
            threadEnded(thread.tid, .killed(signal: SIGKILL, coreDumped: false))
        }
    }

    /// One stop while detaching. Returns the signal when the thread now sits in a signal-delivery-stop
    /// for a signal that is held for it.
    private func settle(_ thread: TraceeThread, _ result: WaitResult) throws(TraceError) -> Int32? {
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
                        try Ptrace.singleStep(tid)
                        return nil
                    }
                    finishStep(step, &regs, memory: thread.process.space.memory)
                    try Ptrace.setRegs(tid, regs)
                    thread.state = .stopped
                    return nil
                }
                // Faults and signals alike: undo the step; the original instruction runs after detach.
                var regs = try Ptrace.getRegs(tid)
                undoStep(step, &regs)
                try Ptrace.setRegs(tid, regs)
                thread.heldSignals.append(info)
                thread.state = .stopped
                return signal
            }
            if signal == SIGTRAP {
                var regs = try Ptrace.getRegs(tid)
                let info = try Ptrace.getSigInfo(tid)
                if info.si_code == 0x80, thread.process.space.site(at: regs.rip &- 1) != nil {
                    // Hit an int3 that is about to go: run the original instruction instead.
                    regs.rip -= 1
                    try Ptrace.setRegs(tid, regs)
                    thread.interruptPending = false
                    thread.state = .stopped
                    return nil
                }
            }
            thread.heldSignals.append(try Ptrace.getSigInfo(tid))
            thread.interruptPending = false
            thread.state = .stopped
            return signal
        case .eventStop(let tid, let event, _):
            switch event {
            case .stop:
                if ProcFS.isPending(SIGTRAP, thread: tid) {
                    // The interrupt was reported before the SIGTRAP of an int3 the thread has just
                    // executed (job-control traps come before signals). Detached like this, the thread
                    // would die of that SIGTRAP: let it report the trap, and rewind it then.
                    try Ptrace.cont(tid)
                    thread.interruptPending = true
                    return nil
                }
                thread.interruptPending = false
                thread.state = .stopped
            case .clone, .fork, .vfork:
                // A task born during detach: wait for its first stop too, so it can be let go cleanly.
                let child = pid_t(truncatingIfNeeded: try Ptrace.eventMessage(tid))
                let process: TracedProcess
                if event == .clone, ProcFS.threadGroup(of: child) ?? thread.process.pid == thread.process.pid {
                    process = thread.process
                } else {
                    let space = event == .vfork ? thread.process.space
                        : thread.process.space.copy(for: try TraceeMemory(pid: child))
                    process = TracedProcess(pid: child, space: space, reportsEvents: false, launched: false)
                    processes[child] = process
                }
                let newThread = TraceeThread(tid: child, process: process)
                newThread.interruptPending = true
                process.threads[child] = newThread
                threads[child] = newThread
                if let earlier = early.removeValue(forKey: child) {
                    for stop in earlier { _ = try settle(newThread, stop) }
                }
                thread.interruptPending = false
                thread.state = .stopped
            case .exec:
                thread.interruptPending = false
                thread.state = .stopped
                thread.process.space = AddressSpace(memory: try TraceeMemory(pid: thread.process.pid))
            default:
                thread.interruptPending = false
                thread.state = .stopped
            }
        }
        return nil
    }
}

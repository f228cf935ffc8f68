import CShim
import Glibc
import Relocator

/// Displaced stepping (the step strategy): a relocated copy of a site's instruction single-stepped in
/// the thread's own slot, and everything that can end such a step — done, interrupted by a signal or
/// a group-stop, faulted, or cut short by a detach — in one place.
extension Engine {
    /// The thread's own step slot, with scratch memory mapped for it when none is left.
    func stepSlot(_ thread: TraceeThread) throws(TraceError) -> UInt64? {
        let space = thread.process.space
        if let slot = space.slot(for: thread.tid) { return slot }
        guard try scratch(AddressSpace.slotSize, near: space.regions.first?.start ?? 0, in: thread.process, using: thread) != nil
        else { return nil }
        return space.slot(for: thread.tid)
    }

    /// Single-steps the relocated copy of the site's instruction in the thread's own slot: the borrowed
    /// register (if the plan needs one) loaded, RIP on the slot.
    func startStep(_ site: Site, _ plan: RelocationPlan, in slot: UInt64, _ thread: TraceeThread,
                   regs: inout user_regs_struct) throws(TraceError) {
        if thread.slotHolds != site.address {
            try thread.process.space.memory.write(plan.code, at: slot)
            thread.slotHolds = site.address
        }
        var saved: UInt64?
        if let scratch = plan.scratch {
            saved = regs[scratch.register]
            regs[scratch.register] = scratch.value
        }
        regs.rip = slot
        let step = StepInFlight(site: site, plan: plan, slot: slot, savedScratch: saved)
        thread.hold(at: .enteringStep(step))
        try Ptrace.setRegs(thread.tid, regs)
        thread.hold(at: .midStep(step))  // from here on the step in flight says how to undo
        statistics.singleSteps += 1
        try singleStep(thread, step)
    }

    /// The stepping thread stopped: the step is done (fix up and go on), or a signal came first (hold
    /// it and step again), or the relocated instruction faulted (undo, and deliver the fault at the
    /// original instruction, as if it had faulted there).
    func stepStopped(_ thread: TraceeThread, _ step: StepInFlight, signal: Int32) throws(TraceError) {
        var info = try Ptrace.getSigInfo(thread.tid)
        var regs = try Ptrace.getRegs(thread.tid)
        let memory = thread.process.space.memory
        if signal == SIGTRAP, info.si_code > 0, info.si_code != 0x80 {
            if regs.rip == step.slot {
                // Not done yet: a rep-prefixed string instruction traps after each iteration.
                try singleStep(thread, step)
                return
            }
            finishStep(step, &regs, memory: memory)
            DebugLog.log("\(thread.tid): step of \(hex(step.site.address)) done → \(hex(regs.rip))")
            try Ptrace.setRegs(thread.tid, regs)
            try resume(thread)
            return
        }
        let inSlot = regs.rip >= step.slot && regs.rip < step.slot + UInt64(step.plan.instruction.length)
        if info.si_code > 0, inSlot, [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP].contains(signal) {
            undoStep(step, &regs)
            if signal == SIGILL || signal == SIGFPE || signal == SIGTRAP {
                // These carry the faulting instruction's address: the original's, not the slot's.
                nst_siginfo_set_addr(&info, UInt(step.site.address))
            }
            thread.reexecution = Reexecution(site: step.site.address, registers: regs)
            try Ptrace.setRegs(thread.tid, regs)
            try Ptrace.setSigInfo(thread.tid, info)
            DebugLog.log("\(thread.tid): relocated \(step.plan.instruction) faulted with \(signalName(signal))")
            try passSignal(thread, signal)
            return
        }
        if Engine.isGroupStop(signal), ProcFS.stopsThread(signal, thread: thread.tid) {
            // A stop signal runs no handler, and must not be held: a SIGCONT sent meanwhile would
            // no longer cancel it, and the program would end up stopped. Delivered now, it stops the
            // thread before the relocated instruction runs; the step resumes after the group-stop.
            emit(thread.process, thread.tid, .signal(signal))
            try singleStep(thread, step, signal: signal)
            return
        }
        // A handler must never run on a half-stepped instruction: hold the signal until the fixup.
        DebugLog.log("\(thread.tid): hold \(signalName(signal)) until the step is done")
        thread.heldSignals.append(info)
        try singleStep(thread, step)
    }

    /// A stopped thread that had a step in flight, back on the original instruction stream: finished if
    /// the relocated instruction ran (RIP at the slot's end), undone if it did not (RIP in the slot).
    func putBackOnOriginal(_ step: StepInFlight, _ regs: inout user_regs_struct, memory: TraceeMemory) {
        let end = step.slot + UInt64(step.plan.instruction.length)
        if regs.rip == end { finishStep(step, &regs, memory: memory) }
        else if regs.rip >= step.slot && regs.rip < end { undoStep(step, &regs) }
    }

    /// The stepping thread stopped while nstrace detaches: the step is finished if it ran, else undone
    /// (faults and signals alike: the original instruction runs after detach), and the thread kept in
    /// its stop.
    func stepStoppedWhileDetaching(_ thread: TraceeThread, _ step: StepInFlight, signal: Int32) throws(TraceError) {
        let info = try Ptrace.getSigInfo(thread.tid)
        var regs = try Ptrace.getRegs(thread.tid)
        if signal == SIGTRAP, info.si_code > 0, info.si_code != 0x80 {
            if regs.rip == step.slot {
                try singleStep(thread, step)
                return
            }
            finishStep(step, &regs, memory: thread.process.space.memory)
            try Ptrace.setRegs(thread.tid, regs)
            thread.hold(at: .stop)
            return
        }
        undoStep(step, &regs)
        try Ptrace.setRegs(thread.tid, regs)
        thread.heldSignals.append(info)
        thread.hold(at: .stop)
    }

    /// A thread stopped (by SIGSTOP, or the interrupt) in the middle of a step while nstrace detaches:
    /// undone if the step has not run; else its queued trap is let report, so it can be finished
    /// (true: the thread was let go for that).
    func stepInterruptedWhileDetaching(_ thread: TraceeThread, _ step: StepInFlight) throws(TraceError) -> Bool {
        var regs = try Ptrace.getRegs(thread.tid)
        if regs.rip == step.slot {
            undoStep(step, &regs)
            try Ptrace.setRegs(thread.tid, regs)
            thread.hold(at: .stop)
            return false
        }
        thread.state = .stepping(step)
        try Ptrace.cont(thread.tid)
        return true
    }

    /// Detach gave up waiting for a thread with a step in flight (in uninterruptible sleep, say). If
    /// its stop comes after all before the PTRACE_DETACH, the detach lets it go from inside its slot —
    /// before the relocated instruction or after it — and it must not run on into whatever follows
    /// in the slot: a way back goes there (`RelocationPlan.slotWayBack`, doing the fix-up's work), and
    /// the slot is never handed to another thread (scratch memory is never unmapped). A thread still
    /// single-stepping when nstrace exits is beyond help: the kernel leaves its trap flag set, and the
    /// SIGTRAP after the instruction reaches it untraced.
    func closeAbandonedStep(_ thread: TraceeThread, _ step: StepInFlight) {
        let space = thread.process.space
        space.abandonSlot(of: thread.tid)
        let end = step.slot &+ UInt64(step.plan.code.count)
        var code = step.plan.slotWayBack(at: end, savedScratch: step.savedScratch)
        if step.plan.code.count + code.count > AddressSpace.slotSize {
            // Too long for the rest of the slot: the way back goes elsewhere, and the slot jumps to it.
            let wayBack = { (base: UInt64) in step.plan.slotWayBack(at: base, savedScratch: step.savedScratch) }
            // (Its jump may be the absolute form, aligned, where the slot's was a 5-byte one.)
            guard let landing = space.allocate(code.count + 16, near: end),
                  (try? space.memory.write(wayBack(landing), at: landing)) != nil
            else {
                DebugLog.log("\(thread.tid): no room for a way back from the slot of \(hex(step.site.address))")
                return
            }
            var jump = X86Writer(base: end)
            jump.putJmpAddress(landing)
            code = jump.code
        }
        do {
            try space.memory.write(code, at: end)
            DebugLog.log("\(thread.tid): step of \(hex(step.site.address)) abandoned; its slot jumps back to \(hex(step.plan.resumeAt))")
        } catch {
            DebugLog.log("\(thread.tid): the way back from the slot of \(hex(step.site.address)) cannot be written: \(error)")
        }
    }

    /// Back to the state at the breakpoint, as if the relocated instruction had never started: the
    /// original instruction runs again (at the site, or after detach with the int3 gone).
    func undoStep(_ step: StepInFlight, _ regs: inout user_regs_struct) {
        regs.rip = step.site.address
        if let scratch = step.plan.scratch, let saved = step.savedScratch { regs[scratch.register] = saved }
    }

    /// After the relocated instruction ran in the slot: back to the original instruction stream, with
    /// the borrowed register restored.
    func finishStep(_ step: StepInFlight, _ regs: inout user_regs_struct, memory: TraceeMemory) {
        if regs.rip == step.slot + UInt64(step.plan.instruction.length) { regs.rip = step.plan.resumeAt }
        if let scratch = step.plan.scratch, let saved = step.savedScratch { regs[scratch.register] = saved }
        // pushf single-stepped pushed RFLAGS with TF set.
        if step.plan.clearsTrapFlagOnStack, let word = try? memory.readWord(at: regs.rsp) {
            try? memory.writeWord(word & ~0x100, at: regs.rsp)
        }
    }
}

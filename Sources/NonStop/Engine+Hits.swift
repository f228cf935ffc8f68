import CShim
import Glibc
import Relocator
import Symbols

extension Engine {
    /// A SIGTRAP stop: one of nstrace's int3s (SI_KERNEL, RIP just past a site), or a trap of the
    /// program's own, which is passed on (returns false).
    func breakpointHit(_ thread: TraceeThread) throws(TraceError) -> Bool {
        let space = thread.process.space
        var slotRegisters = SlotRegisters(trap: 0, flags: 0, stackWord: 0)
        if let left = space.stopSlots?.take(thread.tid, into: &slotRegisters, known: { space.trap(at: $0) }) {
            // A trap pad left the registers in the thread's slot: no GETREGS (nor GETFPREGS).
            statistics.registersFromSlots += 1
            if try !slotTrapHit(left.trap, thread, slotRegisters) {
                try trapHit(left.trap, thread, regs: slotRegisters.userRegs, stackWord: slotRegisters.stackWord, vectors: left.vectors)
            }
            return true
        }
        var regs = try Ptrace.getRegs(thread.tid)
        space.stopSlots?.settle(thread.tid, regs: regs)
        let address = regs.rip &- 1
        if let trap = thread.process.space.trap(at: address) {
            try trapHit(trap, thread, regs: regs)
            return true
        }
        guard let site = thread.process.space.site(at: address) else { return false }
        let info = try Ptrace.getSigInfo(thread.tid)
        if info.si_code != 0x80 {
            // Not an int3 (SI_KERNEL) but a SIGTRAP someone sent. If a SIGTRAP was already pending
            // when the thread executed our int3, the kernel merged the two: RIP one byte into a
            // longer instruction can only mean the int3 ran. Handle the hit, and pass the sent
            // SIGTRAP on afterwards.
            guard site.instruction.length > 1 else { return false }
            thread.heldSignals.append(info)
        }
        // Until the thread is past the site, letting it go (an error, a detach) must put it back here.
        thread.hold(at: .atSite(address))
        regs.rip = address
        statistics.breakpointHits += 1
        DebugLog.log("\(thread.tid): hit \(hex(address))\(site.entryOf.map { " entry of \($0.name)" } ?? "")\(site.isReturnSite ? " return site" : "") sp \(hex(regs.rsp))")

        if let reexecution = thread.reexecution, reexecution.matches(address, regs) {
            // The handler of a fault delivered here returned to the site: not a new call.
            thread.reexecution = nil
        } else {
            if site.isReturnSite { returned(thread, at: site, regs: regs) }
            if let function = site.exitOf { exited(function, thread, regs: regs) }
            if let function = site.entryOf { try entered(function, thread, regs: regs) }
            if let function = site.tailExitOf { try leftByJump(function, thread, regs: regs) }
            if let role = site.internalRole { try internalHit(role, thread) }
            if let caller = site.indirectCallIn { try followIndirectCall(at: site, in: caller, thread, regs: regs) }
        }
        try resumePast(site, thread, regs: &regs)
        return true
    }

    /// A traced function's entry: the call, and — unless its returns are seen at its own `ret`s — a
    /// breakpoint on the return address.
    /// `unwindFrom`: the registers a stack trace starts from when they are not `regs` (a trap pad's stop:
    /// RIP on the window in the program's code, where its unwind information is).
    /// `stackWord`, `vectors`: the word at `regs.rsp` and xmm0–7, when known already (a trap pad left
    /// them in the stop slot).
    func entered(_ function: TracedFunction, _ thread: TraceeThread, regs: user_regs_struct,
                 unwindFrom: user_regs_struct? = nil, stackWord: UInt64? = nil, vectors: FPRegisters? = nil) throws(TraceError) {
        let process = thread.process
        let context = callContext(thread, regs: regs)
        let memory = process.space.memory
        // The return address, stack arguments and strings, in one read where they can be.
        let readsReturnAddress = !function.returnsSeenAtExits || configuration.callerModule != nil
        let prefetched = StopPrefetch(memory: memory, regs: regs, signature: function.signature,
                                      stackBytes: readsReturnAddress && stackWord == nil ? 8 : 0,
                                      maxString: configuration.maxStringLength)
        var reader = ArgumentReader(StoppedThreadValues(tid: thread.tid, regs: regs, memory: memory, prefetched: prefetched,
                                                        vectors: vectors),
                                    maxString: configuration.maxStringLength, deref: configuration.derefPointers)
        let arguments = reader.arguments(function.signature)
        var returnAddress: UInt64 = 0, caller: UInt64?
        if readsReturnAddress, let word = stackWord ?? prefetched.word(at: regs.rsp) ?? (try? memory.readWord(at: regs.rsp)) {
            if configuration.callerModule != nil { caller = word }
            // Only a return address a breakpoint watches is kept: a frame whose return cannot be seen
            // is closed by the next call made from the same place (see popReturnedUnseen).
            if !function.returnsSeenAtExits, try ensureReturnSite(at: word, in: process, using: thread, continuationOf: function.returnsTwice ? function : nil) {
                returnAddress = word
            }
        }
        deliver(Observation(kind: .entry(function, arguments: arguments, stack: stack(of: thread, regs: unwindFrom ?? regs),
                                         returnAddress: returnAddress, caller: caller),
                            process: process, tid: thread.tid, goroutine: context.goroutine,
                            stackPointer: context.stackPointer, time: monotonicNow()))
    }

    /// A `ret` of a traced function that keeps an int3 (inline strategy): its return.
    func exited(_ function: TracedFunction, _ thread: TraceeThread, regs: user_regs_struct, vectors: FPRegisters? = nil) {
        let context = callContext(thread, regs: regs)
        var reader = ArgumentReader(StoppedThreadValues(tid: thread.tid, regs: regs, memory: thread.process.space.memory,
                                                        vectors: vectors),
                                    maxString: configuration.maxStringLength, deref: configuration.derefPointers)
        let value = reader.returnValue(function.signature)
        deliver(Observation(kind: .exit(function, value: { _ in value }),
                            process: thread.process, tid: thread.tid, goroutine: context.goroutine,
                            stackPointer: context.stackPointer, time: monotonicNow()))
    }

    /// A jump out of a traced function (inline strategy): the call returns where the return address on
    /// the stack sends it, so a breakpoint goes there.
    private func leftByJump(_ function: TracedFunction, _ thread: TraceeThread, regs: user_regs_struct) throws(TraceError) {
        let process = thread.process
        guard let returnAddress = try? process.space.memory.readWord(at: regs.rsp) else { return }
        _ = try ensureReturnSite(at: returnAddress, in: process, using: thread)
        let context = callContext(thread, regs: regs)
        deliver(Observation(kind: .tailExit(function, returnAddress: returnAddress), process: process, tid: thread.tid,
                            goroutine: context.goroutine, stackPointer: context.stackPointer, time: monotonicNow()))
    }

    private func stack(of thread: TraceeThread, regs: user_regs_struct) -> [StackFrame] {
        let depth = configuration.stackDepth
        let process = thread.process
        guard depth > 0, let image = process.image else { return [] }
        let capture = StackCapture(memory: process.space.memory, image: image, demangles: configuration.demangles)
        let callers = capture.callers(of: regs, tid: thread.tid, depth: depth) {
            if process.unwinder == nil { process.unwinder = try? StackUnwinder(pid: process.pid) }
            return process.unwinder
        }
        return capture.symbolize(callers)
    }

    /// A return site: every frame the thread (or goroutine) has left — its entry stack pointer is
    /// below the current one — is closed, innermost first.
    private func returned(_ thread: TraceeThread, at site: Site, regs: user_regs_struct) {
        let context = callContext(thread, regs: regs)
        let values = StoppedThreadValues(tid: thread.tid, regs: regs, memory: thread.process.space.memory)
        // Each closed frame's function says what its value is; read while the thread is stopped here.
        var read: [ObjectIdentifier: ArgumentValue?] = [:]
        let maxString = configuration.maxStringLength, deref = configuration.derefPointers
        let value: (TracedFunction) -> ArgumentValue? = { function in
            if let known = read[ObjectIdentifier(function)] { return known }
            var reader = ArgumentReader(values, maxString: maxString, deref: deref)
            let v = reader.returnValue(function.signature)
            read[ObjectIdentifier(function)] = v
            return v
        }
        deliver(Observation(kind: .returnAddress(site.address, value: value, continuationOf: site.continuationOf),
                            process: thread.process, tid: thread.tid,
                            goroutine: context.goroutine, stackPointer: context.stackPointer, time: monotonicNow()))
    }

    private func internalHit(_ role: Site.InternalRole, _ thread: TraceeThread) throws(TraceError) {
        let process = thread.process
        switch role {
        case .programEntry:
            guard !process.installed else { return }
            try install(process, using: thread)
        case .dynamicLinker(let rDebug):
            // r_state at offset 24: RT_CONSISTENT (0) once a dlopen or dlclose has finished.
            guard let state = try? process.space.memory.read(rDebug + 24, count: 4), state == [0, 0, 0, 0],
                  process.installed
            else { return }
            try install(process, using: thread)
            // A dlclose'd library took its breakpoints with it.
            process.space.forgetVanishedSites()
        }
    }

    /// Gets the thread past the site without lifting the breakpoint: emulate, enter the trampoline, or
    /// single-step the relocated copy in the thread's slot.
    func resumePast(_ site: Site, _ thread: TraceeThread, regs: inout user_regs_struct) throws(TraceError) {
        let process = thread.process
        let plan: RelocationPlan
        let slot: UInt64
        switch configuration.strategy {
        case .jump, .inline:
            guard let jumpPlan = site.jumpPlan else { throw TraceError("no plan for site \(hex(site.address))", tid: thread.tid, errno: EINVAL) }
            plan = jumpPlan
            slot = 0
        case .step:
            guard let threadSlot = try stepSlot(thread) else {
                throw TraceError("no scratch memory for a step slot", tid: thread.tid, errno: ENOMEM)
            }
            slot = threadSlot
            plan = site.stepPlan(slot: slot)
        }
        switch plan.kind {
        case .emulate:
            guard let emulation = plan.emulation else { break }
            do {
                try emulation.apply(to: &regs, memory: process.space.memory)
            } catch {
                // Where the emulation cannot go on (a return address or branch target that cannot be
                // read, a stack that cannot be written, a non-canonical target), the instruction itself
                // would have faulted at the site: the thread gets the SIGSEGV it would have got.
                DebugLog.log("\(thread.tid): emulated \(emulation) at \(hex(site.address)) faults: \(error)")
                try deliverFault(SIGSEGV, to: thread, at: site, regs: &regs)
                return
            }
            statistics.emulations += 1
            try Ptrace.setRegs(thread.tid, regs)
            thread.hold(at: .pastSite)
            try resume(thread)
        case .trampoline:
            regs.rip = plan.runAt
            statistics.trampolineEntries += 1
            try Ptrace.setRegs(thread.tid, regs)
            thread.hold(at: .pastSite)
            try resume(thread)
        case .copy, .retarget, .scratchRegister:
            try startStep(site, plan, in: slot, thread, regs: &regs)
        case .refuse:
            throw TraceError("refused site \(hex(site.address)) is armed", tid: thread.tid, errno: EINVAL)
        }
    }

    /// A relocated instruction faulted in its trampoline: the handler must see the fault where the
    /// program has the instruction, at the site (and si_addr there, for faults that report the
    /// instruction's address), not in nstrace's scratch memory.
    func faultInTrampoline(_ thread: TraceeThread, _ signal: Int32) throws(TraceError) -> Bool {
        var regs = try Ptrace.getRegs(thread.tid)
        let space = thread.process.space
        guard let original = space.trampolines[regs.rip]?.address ?? space.padOrigin(of: regs.rip) else { return false }
        var info = try Ptrace.getSigInfo(thread.tid)
        guard info.si_code > 0 else { return false }  // sent by someone, not raised by the instruction
        regs.rip = original
        if signal == SIGILL || signal == SIGFPE { nst_siginfo_set_addr(&info, UInt(original)) }
        thread.reexecution = Reexecution(site: original, registers: regs)
        try Ptrace.setRegs(thread.tid, regs)
        try Ptrace.setSigInfo(thread.tid, info)
        DebugLog.log("\(thread.tid): relocated code of \(hex(original)) faulted with \(signalName(signal))")
        try passSignal(thread, signal)
        return true
    }

    /// Delivers `signal` to a thread stopped at a site as if the original instruction had raised it
    /// there (a general-protection fault: SI_KERNEL, no address). A handler that returns re-executes
    /// the site: that hit is not a new call.
    func deliverFault(_ signal: Int32, to thread: TraceeThread, at site: Site, regs: inout user_regs_struct) throws(TraceError) {
        regs.rip = site.address
        var info = try Ptrace.getSigInfo(thread.tid)
        info.si_signo = signal
        info.si_errno = 0
        info.si_code = 0x80
        nst_siginfo_set_addr(&info, 0)
        thread.reexecution = Reexecution(site: site.address, registers: regs)
        try Ptrace.setRegs(thread.tid, regs)
        try Ptrace.setSigInfo(thread.tid, info)
        try passSignal(thread, signal)
    }
}

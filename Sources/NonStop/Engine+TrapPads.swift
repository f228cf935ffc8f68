import Glibc
import Relocator
import Symbols

extension Engine {
    /// The jump strategy's sites for these functions, where windows fit: each window jumps to a trap pad
    /// (an int3, the relocated window, the way back), patched in with every thread stopped as the inline
    /// strategy's windows are. A function whose every exit is a window is seen returning at its `ret`s;
    /// otherwise only its entry gets a window and its return is seen at the caller's return address.
    /// Sites no window fits keep an int3 in place.
    func installTrapped(_ functions: [Function], in process: TracedProcess, image: ProcessImage,
                        using thread: TraceeThread) throws(TraceError) {
        let space = process.space
        var pending: [PendingWindow] = []
        for function in functions where !space.inlineFunctions.contains(function.address) {
            let go = image.goRuntime(in: function.module)
            if go != nil, process.goRuntime == nil { process.goRuntime = go }
            let entry = InlineSites.entry(of: function, in: image, decoder: decoder)
            if let existing = space.site(at: entry) {
                // Already an int3 (a return site of another traced call, say): it records the entry too.
                space.inlineFunctions.insert(function.address)
                if existing.entryOf == nil { existing.entryOf = traced(function, image) }
                continue
            }
            let memory = space.memory
            let decision = InlineSites.decide(for: function, in: image, decoder: decoder) { address, count in
                try? memory.read(address, count: count)
            }
            let (windows, fallbacks, seenAtExits) = trapWindows(decision, entry: entry)
            guard !windows.isEmpty else {
                try installClassic(function, in: process, image: image, using: thread)
                continue
            }
            space.inlineFunctions.insert(function.address)
            let tracedFunction = traced(function, signature: image.signature(of: function), returnsSeenAtExits: seenAtExits)
            var missing = fallbacks
            // Go code has no glibc TCB to find its thread's slot by: its stops ask the kernel.
            let slots = go == nil ? try stopSlots(for: process, image: image, using: thread) : nil
            for window in windows {
                guard let pad = try buildTrapPad(window, slots: slots, in: process, using: thread) else {
                    if window.recordsEntry { missing.append(InlineFallback(address: entry, kind: .entry, reason: "no pad within ±2 GiB")) }
                    if window.recordsReturn, let ret = window.instructions.last {
                        missing.append(InlineFallback(address: ret.address, kind: .exit, reason: "no pad within ±2 GiB"))
                    }
                    continue
                }
                var traps: [TrapSite] = []
                if let trap = pad.entryTrap {
                    traps.append(TrapSite(address: trap, window: window.start,
                                          role: .entry(tracedFunction, stackAdjust: window.entryStackAdjust)))
                }
                if let trap = pad.exitTrap { traps.append(TrapSite(address: trap, window: window.start, role: .exit(tracedFunction))) }
                pending.append(PendingWindow(window: window, pad: pad, function: tracedFunction, entry: entry,
                                             trapPad: pad, traps: traps))
            }
            for fallback in missing {
                DebugLog.log("\(function.name): int3 at \(hex(fallback.address)) (\(fallback.kind.rawValue)): \(fallback.reason)")
                try armFallback(fallback, of: tracedFunction, in: process, using: thread)
            }
        }
        if !pending.isEmpty { try patchWindows(pending, in: process, using: thread) }
    }

    /// Which of the inline plan's windows get trap pads. Every entry and `ret` window when the plan sees
    /// all of the function's returns at its exits without following tail calls (a tail-callee's
    /// returns would need watching): the `ret`s no window fits keep int3s. Otherwise only a window at
    /// the entry itself, and returns are seen at the caller's return address.
    private func trapWindows(_ decision: InlineSites.Decision, entry: UInt64)
        -> (windows: [InlineWindow], fallbacks: [InlineFallback], returnsSeenAtExits: Bool) {
        let plan = decision.plan
        let followsTailCalls = !decision.tailCallees.isEmpty || !plan.tailCallTargets.isEmpty
            || plan.fallbacks.contains { $0.kind == .tailExit }
        if plan.returnsSeenAtExits, !followsTailCalls {
            let windows = plan.windows.filter { $0.recordsEntry || $0.recordsReturn }
            return (windows, plan.fallbacks, true)
        }
        guard let window = plan.windows.first(where: { $0.recordsEntry && $0.start == entry }) else { return ([], [], false) }
        let entryOnly = InlineWindow(start: window.start, instructions: window.instructions, patchLength: window.patchLength,
                                     recordsEntry: true, entryStackAdjust: 0, recordsReturn: false, tailCallTarget: nil,
                                     shortJumpSlot: window.shortJumpSlot)
        return ([entryOnly], [], false)
    }

    /// The trap pad for a window, in scratch memory near it; nil when none can be had.
    private func buildTrapPad(_ window: InlineWindow, slots: StopSlotTarget?, in process: TracedProcess,
                              using thread: TraceeThread) throws(TraceError) -> TrapPad? {
        // Its size first (a branch's form depends a little on the distance), with room for a longer form.
        guard case .success(let draft) = TrapPad.build(window: window, at: window.start &+ 0x1000, slots: slots) else { return nil }
        guard let address = try scratch(draft.code.count + 16, near: window.start, in: process, using: thread),
              case .success(let pad) = TrapPad.build(window: window, at: address, slots: slots), pad.code.count <= draft.code.count + 16
        else { return nil }
        try process.space.memory.write(pad.code, at: pad.address)
        return pad
    }

    /// The process's stop slots, made on first use where pads can find their thread's slot (glibc's
    /// TCB holds each thread's tid); nil where they cannot be had, and every stop asks the kernel.
    private func stopSlots(for process: TracedProcess, image: ProcessImage,
                           using thread: TraceeThread) throws(TraceError) -> StopSlotTarget? {
        let space = process.space
        if let slots = space.stopSlots { return slots.target }
        guard !space.stopSlotsTried else { return nil }
        space.stopSlotsTried = true
        guard case .tcb(let offset) = threadIdentity(of: process, image: image) else {
            DebugLog.log("\(process.pid): no stop slots: threads are not told apart by glibc's TCB")
            return nil
        }
        guard ProcFS.statusField("Seccomp", of: process.pid) != "2",
              let (address, fd) = try sharedMemory(UInt64(StopSlots.bytes), in: process, using: thread) else {
            DebugLog.log("\(process.pid): no stop slots: no shared memory could be made")
            return nil
        }
        defer { close(fd) }
        do {
            let slots = try StopSlots(target: StopSlotTarget(base: address, count: StopSlots.count, tidOffset: offset), fd: fd)
            space.stopSlots = slots
            DebugLog.log("\(process.pid): \(StopSlots.count) stop slots at \(hex(address))")
            return slots.target
        } catch {
            DebugLog.log("\(process.pid): no stop slots: \(error)")
            return nil
        }
    }

    /// A stop at a trap pad's int3: certainly nstrace's (nothing else reaches its scratch memory), so no
    /// siginfo is asked for and RIP is left where it is, on the relocated window. The registers (from
    /// the stop slot, or GETREGS), the values, and the continue. `stackWord`, `vectors`: the word at RSP
    /// and xmm0–7, when the pad left them in the stop slot.
    ///
    /// A SIGTRAP someone sent that was already pending when the int3 ran is merged into this stop by the
    /// kernel and not seen; the classic int3 sites, which ask for the siginfo, pass such a signal on.
    /// One sent while the thread runs the pad's slot code, before the int3, is taken for the hit (the
    /// slot says so) and not passed on; the int3 that follows is then a second hit.
    func trapHit(_ trap: TrapSite, _ thread: TraceeThread, regs: user_regs_struct, stackWord: UInt64? = nil,
                 vectors: FPRegisters? = nil) throws(TraceError) {
        statistics.breakpointHits += 1
        DebugLog.log("\(thread.tid): trap \(hex(trap.address)) (window \(hex(trap.window))) sp \(hex(regs.rsp))")
        if let reexecution = thread.reexecution, reexecution.matches(trap.window, regs) {
            // The handler of a fault delivered at the window returned there: not a new call.
            thread.reexecution = nil
        } else {
            switch trap.role {
            case .entry(let function, let stackAdjust):
                var entryRegs = regs
                entryRegs.rsp &+= UInt64(bitPattern: Int64(stackAdjust))
                // Stacks unwind from where the thread is in the program: the window's start, with the
                // stack as it is there (the first instruction may have pushed).
                var programRegs = regs
                programRegs.rip = trap.window
                try entered(function, thread, regs: entryRegs, unwindFrom: programRegs,
                            stackWord: stackAdjust == 0 ? stackWord : nil, vectors: vectors)
            case .exit(let function):
                exited(function, thread, regs: regs, vectors: vectors)
            }
        }
        try resume(thread)
    }

    /// A trap pad's stop of a function whose values are all words of general registers, in a process
    /// with no ring to wait for, when a stop is asked for nothing more (no stack trace, no `--caller`):
    /// taken straight from the stop slot's words, with no `user_regs_struct`, reader or `Observation`
    /// made — the jump strategy's hot path, whose events are the same as `trapHit` makes. False, with
    /// nothing done, for any other stop.
    func slotTrapHit(_ trap: TrapSite, _ thread: TraceeThread, _ registers: SlotRegisters) throws(TraceError) -> Bool {
        let process = thread.process, plan = slotValues(of: trap.function)
        guard thread.reexecution == nil, process.space.inline == nil, process.goRuntime == nil,
              configuration.stackDepth == 0, configuration.callerModule == nil, plan.inPlace else { return false }
        // The word at the stack pointer is an entry's return address only where the window's first
        // instruction has not pushed.
        if case .entry(let function, let stackAdjust) = trap.role, stackAdjust != 0, !function.returnsSeenAtExits { return false }
        statistics.breakpointHits += 1
        statistics.shownFromSlotWords += 1
        DebugLog.log("\(thread.tid): trap \(hex(trap.address)) (window \(hex(trap.window))) sp \(hex(registers[.rsp]))")
        switch trap.role {
        case .entry(let function, let stackAdjust):
            var returnAddress: UInt64 = 0
            if !function.returnsSeenAtExits,
               try ensureReturnSite(at: registers.stackWord, in: process, using: thread, continuationOf: function.returnsTwice ? function : nil) {
                returnAddress = registers.stackWord
            }
            let moment = ThreadMoment(process: process, tid: thread.tid, goroutine: nil,
                                      stackPointer: registers[.rsp] &+ UInt64(bitPattern: Int64(stackAdjust)), time: monotonicNow())
            openCall(function, moment, returnAddress: returnAddress, caller: nil) { arena in
                SlotValuePlan.encode(plan.arguments, from: registers, into: &arena)
            }
        case .exit(let function):
            returned(function, ThreadMoment(process: process, tid: thread.tid, goroutine: nil, stackPointer: registers[.rsp], time: monotonicNow()),
                     .slot(registers, thread))
        }
        try resume(thread)
        return true
    }
}

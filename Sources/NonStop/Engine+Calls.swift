import Glibc
import Symbols

/// A traced call's entry or exit, seen by a breakpoint or recorded by an inline pad. Both reach the
/// shadow stacks through `observe`, in the order the thread (or goroutine) made them.
struct Observation {
    enum Kind {
        /// `returnAddress`: where the call returns, when its return is watched there (0 when it is seen
        /// at the function's own `ret`s).
        /// `caller`: the return address, read for `--caller` alone (nil without it).
        case entry(TracedFunction, arguments: [ArgumentValue], stack: [StackFrame], returnAddress: UInt64, caller: UInt64?)
        /// The function's `ret` ran (the stack pointer at the `ret`, which is the one at entry). `value`
        /// reads a result as a function's signature says (the callers that tail-called it return it too).
        case exit(TracedFunction, value: (TracedFunction) -> ArgumentValue?)
        /// The function left by a tail call its pad recorded: it returns when the callee returns.
        case tailCall(TracedFunction)
        /// A callee watched for the traced functions that tail-call it returned.
        case tailCalleeReturn(value: (TracedFunction) -> ArgumentValue?)
        /// The function left by a jump (a tail call): the call now returns where its caller's return
        /// address sends it, which a breakpoint watches.
        case tailExit(TracedFunction, returnAddress: UInt64)
        /// A watched return address was reached with the stack pointer just past it; `continuationOf`
        /// when it is where a traced setjmp-like call returns (again, after a longjmp).
        case returnAddress(UInt64, value: (TracedFunction) -> ArgumentValue?, continuationOf: TracedFunction?)
    }

    let kind: Kind
    let process: TracedProcess
    let tid: pid_t
    let goroutine: CallContext.Goroutine?
    /// On the scale CallContext uses (from the top of the stack, for a goroutine).
    let stackPointer: UInt64
    /// CLOCK_MONOTONIC nanoseconds.
    let time: UInt64

    var moment: ThreadMoment {
        ThreadMoment(process: process, tid: tid, goroutine: goroutine, stackPointer: stackPointer, time: time)
    }
}

/// A thread (or goroutine) at one instant: whose shadow stack, at which stack pointer, when. Inline
/// records come to the shadow stacks with one of these alone (no `Observation`: a record is the hot
/// path, and its values are read from the record only for the events that show them).
struct ThreadMoment {
    let process: TracedProcess
    let tid: pid_t
    let goroutine: CallContext.Goroutine?
    /// On the scale CallContext uses (from the top of the stack, for a goroutine).
    let stackPointer: UInt64
    /// CLOCK_MONOTONIC nanoseconds.
    let time: UInt64
    /// The mapping of the stack it runs on (`StackMappings`), empty when not known. A goroutine's is
    /// its own.
    let stack: Range<UInt64>

    init(process: TracedProcess, tid: pid_t, goroutine: CallContext.Goroutine?, stackPointer: UInt64, time: UInt64) {
        self.process = process
        self.tid = tid
        self.goroutine = goroutine
        self.stackPointer = stackPointer
        self.time = time
        stack = goroutine == nil ? process.stacks.stack(of: stackPointer) : 0..<0
    }
}

/// Where a return's value comes from, read for the function whose frame closes.
enum ReturnValue {
    case none
    case read((TracedFunction) -> ArgumentValue?)
    /// From an inline record (its probe says how it is laid out).
    case record(RecordValues)
    /// From a trap pad's stop slot, of a thread stopped at that trap.
    case slot(SlotRegisters, TraceeThread)

    init(_ record: RecordValues?) { self = record.map { .record($0) } ?? .none }
}

extension Engine {
    func observe(_ o: Observation) {
        let m = o.moment
        switch o.kind {
        case .entry(let function, let arguments, let stack, let returnAddress, let caller):
            let depth = enter(function, m, returnAddress: returnAddress)
            emit(m.process, m.tid, .call(function: function, depth: depth, arguments: arguments, stack: stack),
                 goroutine: m.goroutine?.id, at: m.time, fromCaller: caller.map { isFromCallerModule($0, m.process) } ?? false)
        case .exit(let function, let value):
            returned(function, m, .read(value))
        case .tailCall(let function):
            tailCalled(function, m)
        case .tailCalleeReturn(let value):
            tailCalleeReturned(m, .read(value))
        case .tailExit(let function, let returnAddress):
            withShadowStack(m.process, m.tid, m.goroutine) {
                $0.watchReturnAddress(of: function, sp: m.stackPointer, returnAddress: returnAddress)
            }
        case .returnAddress(let site, let value, let continuationOf):
            var depth = 0
            withShadowStack(m.process, m.tid, m.goroutine) {
                $0.popFrames(at: site, sp: m.stackPointer, stack: m.stack, into: &closedFrames)
                depth = $0.depth
            }
            let returnedHere = closedFrames.contains { $0.returned }
            closeFrames(m, .read(value))
            if let function = continuationOf, !returnedHere {
                // No call of its own returns here: a longjmp came back to a setjmp's continuation, and the
                // setjmp returns again with the longjmp's value (1 for 0). Its call was reported long ago
                // (and returned once): this return has no duration.
                emit(m.process, m.tid, .ret(function: function, depth: depth, value: value(function), duration: 0),
                     goroutine: m.goroutine?.id, at: m.time)
            }
        }
    }

    /// An entry record: the call, with its arguments read from the record when `values` is given.
    /// `returnAddress`: the entry's, when `--caller` has the pads record it.
    func recordedEntry(_ function: TracedFunction, _ m: ThreadMoment, values: RecordValues?, returnAddress: UInt64?) {
        guard let values else { return openCall(function, m, returnAddress: 0, caller: returnAddress, encode: nil) }
        let maxString = self.maxString
        openCall(function, m, returnAddress: 0, caller: returnAddress) { arena in
            values.encode(values.probe.values, of: function.signature?.parameters ?? [], maxString: maxString, into: &arena)
        }
    }

    /// A call: its frame opened (watched for its return at `returnAddress`; 0 where its returns are
    /// seen at its own `ret`s), its event with the values `encode` appends. `caller`: its return
    /// address, for `--caller`.
    func openCall(_ function: TracedFunction, _ m: ThreadMoment, returnAddress: UInt64, caller: UInt64?,
                  encode: ((inout ValueArena) -> Int)?) {
        let depth = enter(function, m, returnAddress: returnAddress)
        let fromCaller = caller.map { isFromCallerModule($0, m.process) } ?? false
        emitTraced(.call, m.process, m.tid, function: function, depth: depth, goroutine: m.goroutine?.id, at: m.time,
                   fromCaller: fromCaller, encode: encode)
    }

    /// The function's `ret` ran: frames below it are over (unwound), the frame entered at this stack
    /// pointer returns, and the ones that tail-called into it with it.
    func returned(_ function: TracedFunction, _ m: ThreadMoment, _ value: ReturnValue) {
        withShadowStack(m.process, m.tid, m.goroutine) { $0.popReturn(of: function, sp: m.stackPointer, stack: m.stack, into: &closedFrames) }
        closeFrames(m, value)
    }

    func tailCalled(_ function: TracedFunction, _ m: ThreadMoment) {
        let marked = withShadowStack(m.process, m.tid, m.goroutine) { $0.markTailCall(of: function, sp: m.stackPointer) }
        // No open frame to mark (its call was lost, or began before nstrace came): nothing will
        // return for it, so its count of tail calls in flight goes down now.
        if !marked { m.process.space.inline?.ring.tailCallReturned(tid: m.tid) }
    }

    /// A callee watched for the traced functions that tail-call it returned.
    func tailCalleeReturned(_ m: ThreadMoment, _ value: ReturnValue) {
        withShadowStack(m.process, m.tid, m.goroutine) {
            $0.popFrames(at: nil, sp: m.stackPointer, stack: m.stack, into: &closedFrames)
            $0.popTailCallers(sp: m.stackPointer, stack: m.stack, into: &closedFrames)
        }
        closeFrames(m, value)
    }

    /// Opens the frame of a call (closing those it shows are over first); returns its depth.
    private func enter(_ function: TracedFunction, _ m: ThreadMoment, returnAddress: UInt64) -> Int {
        var depth = 0, evicted = 0
        withShadowStack(m.process, m.tid, m.goroutine) { shadow in
            shadow.popFrames(at: nil, sp: m.stackPointer, stack: m.stack, into: &closedFrames)
            shadow.popReturnedUnseen(sp: m.stackPointer, stack: m.stack, into: &closedFrames)
            depth = shadow.depth
            evicted = shadow.push(.init(function: function, entrySP: m.stackPointer, returnAddress: returnAddress, start: m.time))
        }
        if !closedFrames.isEmpty { closeFrames(m, .none) }
        if evicted > 0 {
            countLost(returns: evicted, cause: "more than \(ShadowStack.maxFrames) calls were open in one thread: the oldest frames' returns are not shown")
        }
        return depth
    }

    /// Reports the frames the last shadow-stack operation closed, and empties the list (keeping its
    /// memory, so that a record costs no allocation).
    private func closeFrames(_ m: ThreadMoment, _ value: ReturnValue) {
        close(closedFrames, m, value)
        // One or two frames, as a rule: removed one by one, which costs less than a general removal.
        while !closedFrames.isEmpty { closedFrames.removeLast() }
    }

    /// Reports closed frames, innermost first: returned (with the value) or unwound.
    private func close(_ closed: [ShadowStack.Closed], _ o: ThreadMoment, _ value: ReturnValue) {
        let maxString = self.maxString
        for (frame, depth, returned) in closed {
            if frame.tailPending { o.process.space.inline?.ring.tailCallReturned(tid: o.tid) }
            let duration = elapsed(from: frame.start, to: o.time)
            guard returned else {
                emitTraced(.unwound, o.process, o.tid, function: frame.function, depth: depth, duration: duration,
                           goroutine: o.goroutine?.id, at: o.time, encode: nil)
                continue
            }
            switch value {
            case .none:
                emitTraced(.ret, o.process, o.tid, function: frame.function, depth: depth, duration: duration,
                           goroutine: o.goroutine?.id, at: o.time, encode: nil)
            case .read(let read):
                emit(o.process, o.tid, .ret(function: frame.function, depth: depth, value: read(frame.function), duration: duration),
                     goroutine: o.goroutine?.id, at: o.time)
            case .record(let values):
                let probe = values.probe
                let function = frame.function
                // The probe's own function returns (its slots fit); a function that tail-called into it
                // returns the same registers, read as its own signature says.
                if probe.returns === function {
                    guard !probe.values.isEmpty else {
                        emitTraced(.ret, o.process, o.tid, function: function, depth: depth, duration: duration,
                                   goroutine: o.goroutine?.id, at: o.time, encode: nil)
                        continue
                    }
                    emitTraced(.ret, o.process, o.tid, function: function, depth: depth, duration: duration,
                               goroutine: o.goroutine?.id, at: o.time) { arena in
                        values.encode(probe.values, of: function.signature?.results ?? [], maxString: maxString, into: &arena)
                    }
                } else {
                    emitTraced(.ret, o.process, o.tid, function: function, depth: depth, duration: duration,
                               goroutine: o.goroutine?.id, at: o.time) { arena in
                        values.encodeResult(of: function.signature, maxString: maxString, into: &arena)
                    }
                }
            case .slot(let registers, let thread):
                let function = frame.function, plan = slotValues(of: function)
                if plan.inPlace {
                    emitTraced(.ret, o.process, o.tid, function: function, depth: depth, duration: duration,
                               goroutine: o.goroutine?.id, at: o.time) { arena in
                        SlotValuePlan.encode(plan.result, from: registers, into: &arena)
                    }
                } else {
                    // A function whose result is not a register's word (not the trap's own function,
                    // whose plan `slotTrapHit` checked, but one that tail-called into it): read as any
                    // stop reads, from the registers the slot held and the stopped thread's memory.
                    var reader = ArgumentReader(StoppedThreadValues(tid: thread.tid, regs: registers.userRegs, memory: thread.process.space.memory),
                                                maxString: maxString, deref: configuration.derefPointers)
                    emit(o.process, o.tid, .ret(function: function, depth: depth, value: reader.returnValue(function.signature), duration: duration),
                         goroutine: o.goroutine?.id, at: o.time)
                }
            }
        }
    }

    /// How a trap pad's stop shows the function's values, planned at its first such stop.
    func slotValues(of function: TracedFunction) -> SlotValuePlan {
        if let planned = function.slotValues { return planned }
        let planned = SlotValuePlan(function.signature, derefs: configuration.derefPointers)
        function.slotValues = planned
        return planned
    }

    /// Time between two instants, 0 when they come out reversed: the TSCs of two CPUs (a thread that
    /// moved between its call and its return) can differ by a little.
    func elapsed(from start: UInt64, to end: UInt64) -> UInt64 { end > start ? end - start : 0 }

    /// Every open frame of a thread that ended (its goroutines' frames end with the process).
    func unwindThread(_ process: TracedProcess, _ tid: pid_t, at time: UInt64) {
        guard let box = process.threadStacks.removeValue(forKey: tid) else { return }
        if box === lastStack {
            lastStackOwner = nil
            lastStackProcess = nil
        }
        for (frame, depth) in box.stack.removeAll() {
            if frame.tailPending { process.space.inline?.ring.tailCallReturned(tid: tid) }
            emit(process, tid, .unwound(function: frame.function, depth: depth, duration: elapsed(from: frame.start, to: time)), at: time)
        }
    }

    func unwindGoroutines(_ process: TracedProcess, reportedAs tid: pid_t, at time: UInt64) {
        for (goroutine, var stack) in process.goroutineStacks {
            for (frame, depth) in stack.removeAll() {
                emit(process, tid, .unwound(function: frame.function, depth: depth, duration: elapsed(from: frame.start, to: time)),
                     goroutine: goroutine.id, at: time)
            }
        }
        process.goroutineStacks = [:]
    }
}

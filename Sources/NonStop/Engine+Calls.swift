import Glibc
import Symbols

/// A traced call's entry or exit, seen by a breakpoint or recorded by an inline pad. Both reach the
/// shadow stacks through `observe`, in the order the thread (or goroutine) made them.
struct Observation {
    enum Kind {
        /// `returnAddress`: where the call returns, when its return is watched there (0 when it is seen
        /// at the function's own `ret`s).
        case entry(TracedFunction, arguments: [ArgumentValue], stack: [StackFrame], returnAddress: UInt64)
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
        /// A watched return address was reached with the stack pointer just past it.
        case returnAddress(UInt64, value: (TracedFunction) -> ArgumentValue?)
    }

    let kind: Kind
    let process: TracedProcess
    let tid: pid_t
    let goroutine: CallContext.Goroutine?
    /// On the scale CallContext uses (from the top of the stack, for a goroutine).
    let stackPointer: UInt64
    /// CLOCK_MONOTONIC nanoseconds.
    let time: UInt64
}

extension Engine {
    func observe(_ o: Observation) {
        switch o.kind {
        case .entry(let function, let arguments, let stack, let returnAddress):
            var depth = 0
            let closed = withShadowStack(o.process, o.tid, o.goroutine) { shadow in
                let closed = shadow.popFrames(at: nil, sp: o.stackPointer) + shadow.popReturnedUnseen(sp: o.stackPointer)
                depth = shadow.depth
                shadow.push(.init(function: function, entrySP: o.stackPointer, returnAddress: returnAddress, start: o.time))
                return closed
            }
            close(closed, o) { _ in nil }
            emit(o.process, o.tid, .call(function: function, depth: depth, arguments: arguments, stack: stack),
                 goroutine: o.goroutine?.id, at: o.time)
        case .exit(let function, let value):
            let closed = withShadowStack(o.process, o.tid, o.goroutine) { $0.popReturn(of: function, sp: o.stackPointer) }
            close(closed, o, value)
        case .tailCall(let function):
            let marked = withShadowStack(o.process, o.tid, o.goroutine) { $0.markTailCall(of: function, sp: o.stackPointer) }
            // No open frame to mark (its call was lost, or began before nstrace came): nothing will
            // return for it, so its count of tail calls in flight goes down now.
            if !marked { o.process.space.inline?.ring.tailCallReturned(tid: o.tid) }
        case .tailCalleeReturn(let value):
            let closed = withShadowStack(o.process, o.tid, o.goroutine) {
                $0.popFrames(at: nil, sp: o.stackPointer) + $0.popTailCallers(sp: o.stackPointer)
            }
            close(closed, o, value)
        case .tailExit(let function, let returnAddress):
            withShadowStack(o.process, o.tid, o.goroutine) {
                $0.watchReturnAddress(of: function, sp: o.stackPointer, returnAddress: returnAddress)
            }
        case .returnAddress(let site, let value):
            close(withShadowStack(o.process, o.tid, o.goroutine) { $0.popFrames(at: site, sp: o.stackPointer) }, o, value)
        }
    }

    /// Reports closed frames, innermost first: returned (with the value) or unwound.
    private func close(_ closed: [(frame: ShadowStack.Frame, depth: Int, returned: Bool)], _ o: Observation,
                       _ value: (TracedFunction) -> ArgumentValue?) {
        for (frame, depth, returned) in closed {
            if frame.tailPending { o.process.space.inline?.ring.tailCallReturned(tid: o.tid) }
            let duration = elapsed(from: frame.start, to: o.time)
            if returned {
                emit(o.process, o.tid, .ret(function: frame.function, depth: depth, value: value(frame.function), duration: duration),
                     goroutine: o.goroutine?.id, at: o.time)
            } else {
                emit(o.process, o.tid, .unwound(function: frame.function, depth: depth, duration: duration),
                     goroutine: o.goroutine?.id, at: o.time)
            }
        }
    }

    /// Time between two instants, 0 when they come out reversed: the TSCs of two CPUs (a thread that
    /// moved between its call and its return) can differ by a little.
    func elapsed(from start: UInt64, to end: UInt64) -> UInt64 { end > start ? end - start : 0 }

    /// Every open frame of a thread that ended (its goroutines' frames end with the process).
    func unwindThread(_ process: TracedProcess, _ tid: pid_t, at time: UInt64) {
        guard var stack = process.threadStacks.removeValue(forKey: tid) else { return }
        for (frame, depth) in stack.removeAll() {
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

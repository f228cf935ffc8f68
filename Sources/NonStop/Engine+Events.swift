import Glibc

/// Events, packed into the batch that goes to the renderers next.
extension Engine {
    /// An event of the engine's slower paths. `at`: when it happened (CLOCK_MONOTONIC nanoseconds; a
    /// record's time), else now.
    /// `fromCaller`: a call made from the module `--caller` names.
    func emit(_ process: TracedProcess, _ tid: pid_t, _ happening: TraceEvent, goroutine: Int64? = nil, at time: UInt64? = nil,
              fromCaller: Bool = false) {
        guard process.reportsEvents else { return }
        var event = Event(kind: .notice, pid: process.pid, tid: tid, timestamp: time.map { $0 &+ wallClockOffset } ?? now())
        if let goroutine { event.goroutine = goroutine }
        let batch = outbox
        switch happening {
        case .call(let function, let depth, let arguments, let stack):
            event.kind = .call
            event.fromCaller = fromCaller
            event.function = number(function)
            event.depth = Int32(clamping: depth)
            (event.values, event.valueCount) = batch.encode { arena in
                for argument in arguments { arena.append(argument) }
                return arguments.count
            }
            if !stack.isEmpty { event.detail = batch.add(.stack(stack)) }
        case .ret(let function, let depth, let value, let duration):
            event.kind = .ret
            event.function = number(function)
            event.depth = Int32(clamping: depth)
            event.duration = duration
            if let value {
                event.hasValue = true
                (event.values, event.valueCount) = batch.encode { arena in
                    arena.append(value)
                    return 1
                }
            }
        case .unwound(let function, let depth, let duration):
            event.kind = .unwound
            event.function = number(function)
            event.depth = Int32(clamping: depth)
            event.duration = duration
        case .threadStart: event.kind = .threadStart
        case .threadExit(let status):
            event.kind = .threadExit
            event.number = status
        case .signal(let signal):
            event.kind = .signal
            event.number = signal
        case .fork(let child):
            event.kind = .fork
            event.number = child
        case .exec(let path):
            event.kind = .exec
            event.detail = batch.add(.path(path))
        case .exit(let status):
            event.kind = .exit
            event.detail = batch.add(.exit(status))
        case .attach: event.kind = .attach
        case .detach: event.kind = .detach
        case .lost(let lost):
            event.kind = .lost
            event.detail = batch.add(.lost(lost))
        case .notice(let message):
            event.kind = .notice
            event.detail = batch.add(.notice(message))
        case .syscall(let call, let duration):
            event.kind = .syscall
            event.number = Int32(truncatingIfNeeded: call.number)
            event.duration = duration
            event.detail = batch.add(.syscall(call))
        }
        batch.append(event)
    }

    /// A call or a return decoded straight from a record: its values go into the batch's arena with no
    /// `ArgumentValue` in between. `encode` returns how many values it appended.
    func emitTraced(_ kind: Event.Kind, _ process: TracedProcess, _ tid: pid_t, function: TracedFunction, depth: Int,
                    duration: UInt64 = 0, goroutine: Int64?, at time: UInt64, fromCaller: Bool = false,
                    encode: ((inout ValueArena) -> Int)?) {
        guard process.reportsEvents else { return }
        var event = Event(kind: kind, pid: process.pid, tid: tid, timestamp: time &+ wallClockOffset)
        event.fromCaller = fromCaller
        event.function = number(function)
        event.depth = Int32(clamping: depth)
        event.duration = duration
        if let goroutine { event.goroutine = goroutine }
        if let encode {
            (event.values, event.valueCount) = outbox.encode(encode)
            event.hasValue = kind == .ret && event.valueCount > 0
        }
        outbox.append(event)
    }

    /// The function's number in events, given the first time it is reported.
    private func number(_ function: TracedFunction) -> Int32 {
        if function.eventID < 0 {
            function.eventID = functionsNumbered
            functionsNumbered &+= 1
            outbox.noteNewFunction(function)
        }
        return function.eventID
    }

    /// Events that could not be reported, told once the batch they belong to is handed over.
    func countLost(calls: Int = 0, returns: Int = 0, others: Int = 0, cause: String) {
        guard calls | returns | others != 0 else { return }
        let more = LostEvents(calls: calls, returns: returns, others: others, cause: cause)
        unreportedLosses[cause] = unreportedLosses[cause].map { $0.adding(more) } ?? more
    }

    /// Hands what the engine saw to the renderer, in one batch. Inline records that the renderer cannot
    /// take in time are counted as lost rather than waited for (waiting would only move the loss into the
    /// ring), unless the user asked for every event (`--lossless`); events of stops always wait.
    func flushEvents() {
        lastFlush = monotonicNow()
        appendLostEvents()
        guard !outbox.isEmpty else { return }
        let batch = outbox
        outbox = events.emptyBatch()
        if let crashAfter = CrashGuard.crashAfterEvents {
            eventsHandedOver &+= batch.events.count
            precondition(eventsHandedOver < crashAfter, "NSTRACE_TEST_CRASH: a crash on purpose, after \(eventsHandedOver) events")
        }
        let mayThin = !inlineTraces.isEmpty && !configuration.lossless
        let thinned = events.push(batch, mayThin: mayThin)
        guard thinned.calls | thinned.returns | thinned.others != 0 else { return }
        // Told at once, not with the next batch (there may be none: this can be the last flush). A
        // thinned push keeps `lost` events and never waits.
        countLost(calls: thinned.calls, returns: thinned.returns, others: thinned.others,
                  cause: "nstrace's output fell behind the program")
        appendLostEvents()
        let told = outbox
        outbox = events.emptyBatch()
        events.push(told, mayThin: true)
    }

    /// The losses counted since the last batch, as `lost` events in the outbox, one per cause.
    private func appendLostEvents() {
        guard !unreportedLosses.isEmpty else { return }
        for (_, lost) in unreportedLosses.sorted(by: { $0.key < $1.key }) {
            var event = Event(kind: .lost, pid: processes.keys.min() ?? 0, tid: 0, timestamp: now())
            event.tid = event.pid
            event.detail = outbox.add(.lost(lost))
            outbox.append(event)
        }
        unreportedLosses = [:]
    }

    func notice(_ process: TracedProcess, _ message: String) {
        emit(process, process.pid, .notice(message))
    }
}

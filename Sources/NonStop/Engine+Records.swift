import CShim
import Glibc
import Relocator
import Symbols

extension Engine {
    /// The bucket an observation's thread (or goroutine) writes its records to.
    private func bucket(of o: Observation, in trace: InlineTrace) -> Int {
        let key = o.goroutine.map { UInt64(bitPattern: $0.id) } ?? UInt64(UInt32(bitPattern: o.tid))
        return trace.ring.bucket(ofKey: key)
    }

    /// Hands an observation of the engine's own (a breakpoint hit) to the shadow stacks, after every
    /// record its thread wrote before it.
    func deliver(_ o: Observation) {
        guard let trace = o.process.space.inline else {
            observe(o)
            return
        }
        let b = bucket(of: o, in: trace)
        trace.afterRecords(inBucket: b) { [unowned self] in self.observe(o) }
        drainBucket(b, of: trace)
    }

    /// Runs `action` after every record the thread has written so far (at once without a ring).
    func afterRecords(of process: TracedProcess, tid: pid_t, _ action: @escaping () -> Void) {
        guard let trace = process.space.inline else {
            action()
            return
        }
        let b = trace.ring.bucket(ofKey: UInt64(UInt32(bitPattern: tid)))
        trace.afterRecords(inBucket: b, action)
        drainBucket(b, of: trace)
    }

    /// Reads the published records of every ring for about `milliseconds` at most (Int.max: all), so
    /// that a flood of records never keeps the engine from its threads' stops for long. True when more
    /// are waiting.
    @discardableResult
    func drainRecords(milliseconds: Int = Int.max) -> Bool {
        let deadline = milliseconds == Int.max ? UInt64.max : monotonicNow() &+ UInt64(milliseconds) &* 1_000_000
        guard !inlineTraces.isEmpty else { return false }
        clock.refine()
        var more = false
        var backlog = 0, slots = 1
        for trace in inlineTraces {
            let ring = trace.ring
            let buckets = ring.geometry.bucketCount
            slots = ring.geometry.slotsPerBucket
            // Round the buckets from a different one each time, so a busy one cannot starve the rest.
            drainStart &+= 1
            for i in 0..<buckets {
                let b = (i &+ drainStart) % buckets
                let waiting = Int(clamping: ring.head(of: b) &- ring.positions[b])
                backlog = max(backlog, waiting)
                if !drainBucket(b, of: trace, until: deadline) { more = true }
            }
            reportLost(trace)
        }
        ticker?.adjust(fill: Double(backlog) / Double(slots))
        handleLinkMapChanges()
        return more
    }

    /// Reads a bucket up to its head as it is now (records written meanwhile wait for the next
    /// drain), or until `deadline` (CLOCK_MONOTONIC, looked at every 64 records). True when that head
    /// was reached.
    @discardableResult
    private func drainBucket(_ b: Int, of trace: InlineTrace, until deadline: UInt64 = UInt64.max) -> Bool {
        let ring = trace.ring
        let head = ring.head(of: b)
        var consumed = 0
        while ring.positions[b] < head {
            if consumed & 63 == 63, deadline != UInt64.max, monotonicNow() > deadline { break }
            guard let record = ring.next(in: b, probes: trace) else {
                // Reserved and not published: a record being written now, or one whose writer is gone
                // (killed, or longjmp'd out of a signal handler that interrupted its pad): after a
                // second, given up and counted.
                let skipped = ring.skipStalled(b, olderThan: clock.ticks(in: 1_000_000_000), now: nst_rdtsc())
                if skipped == 0 { break }
                trace.skipped += skipped
                continue
            }
            if trace.hasWaiting(b) { for action in trace.takeReady(b, upTo: record.position) { action() } }
            process(record, of: trace)
            ring.advance(b, past: record)
            consumed += 1
            if outbox.events.count >= 4096 { flushEvents() }
        }
        for action in trace.takeReady(b, upTo: ring.positions[b]) { action() }
        if consumed > 0 { ring.release(b) }
        return ring.positions[b] >= head
    }

    /// Everything left in a ring whose process is gone: what was published is read, what was reserved
    /// and never published is counted as lost, and every waiting action runs.
    func finishRing(_ trace: InlineTrace) {
        for b in 0..<trace.ring.geometry.bucketCount {
            drainBucket(b, of: trace)
            trace.skipped += trace.ring.abandonUnpublished(b)
        }
        for action in trace.takeAll() { action() }
        reportLost(trace)
    }

    private func process(_ record: EventRing.Record, of trace: InlineTrace) {
        statistics.recordsRead += 1
        guard let probe = trace.probe(record.probe) else {
            trace.skipped += 1
            return
        }
        var tid = record.thread
        var owner: TracedProcess
        // Records come in runs of one thread's: the last one's process, without a lookup.
        if tid == lastRecordThread.tid, let known = lastRecordThread.process {
            owner = known
        } else {
            owner = threads[tid]?.process ?? trace.departed[tid] ?? trace.owner
            lastRecordThread = (tid, threads[tid] != nil ? owner : nil)
        }
        if !trace.vforkChildren.isEmpty, let child = trace.vforkChildren[tid] {
            // The parent is blocked in vfork: these are its child's, which runs in its memory and TCB.
            owner = child
            tid = child.pid
        }
        // Values read only for renderers that show them (a summary does not): then nothing of the
        // record is read past its header (and the goroutine's fields, in Go).
        let values = decodesValues || probe.go != nil || configuration.callerModule != nil
            ? RecordValues(probe: probe, record: record) : nil
        var goroutine: CallContext.Goroutine?
        var stackPointer = record.stackPointer
        if let go = probe.go, let values, let g = values.word(of: .register(.r14)),
           let goid = values.word(of: .goroutineField(Int32(truncatingIfNeeded: go.goidOffset))),
           let high = values.word(of: .goroutineField(Int32(truncatingIfNeeded: go.stackHighOffset))) {
            goroutine = CallContext.Goroutine(g: g, id: Int64(bitPattern: goid))
            stackPointer = CallContext.goroutineScale(sp: stackPointer, stackHigh: high)
        }
        let time = clock.nanoseconds(at: record.tsc)
        let decoded = decodesValues ? values : nil
        let moment = ThreadMoment(process: owner, tid: tid, goroutine: goroutine, stackPointer: stackPointer, time: time)
        switch probe.role {
        case .entry(let function):
            let returnAddress = configuration.callerModule != nil ? values?.word(of: .stackWord(0)) : nil
            recordedEntry(function, moment, values: decoded, returnAddress: returnAddress)
        case .exit(let function): returned(function, moment, ReturnValue(decoded))
        case .tailCall(let function): tailCalled(function, moment)
        case .watchedReturn: tailCalleeReturned(moment, ReturnValue(decoded))
        case .linkMap(let rDebug):
            pendingLinkMaps.append(LinkMapChange(trace: trace, process: owner, rDebug: rDebug,
                                                 ticket: RecordValues(probe: probe, record: record)
                                                     .word(of: .ticket) ?? 0))
        }
    }

    private func reportLost(_ trace: InlineTrace) {
        var lost = trace.ring.lost
        lost.others &+= UInt64(trace.skipped)
        let before = trace.lostReported
        guard lost != before else { return }
        let calls = Int(clamping: lost.calls &- before.calls), returns = Int(clamping: lost.returns &- before.returns)
        let others = Int(clamping: lost.others &- before.others)
        emit(trace.owner, trace.owner.pid, .lost(LostEvents(calls: calls, returns: returns, others: others,
                                                            cause: "the inline ring was full")))
        trace.lostReported = lost
    }

    /// The dynamic linker's r_brk pad recorded a change and waits: once the link map is consistent, the
    /// new libraries get their sites (every thread stopped for it), then the pad may go on.
    private func handleLinkMapChanges() {
        while !pendingLinkMaps.isEmpty {
            let change = pendingLinkMaps.removeFirst()
            defer { change.trace.ring.acknowledge(through: change.ticket) }
            let process = change.process
            guard StopRequest.pending == nil, processes[process.pid] != nil, process.installed,
                  let state = try? process.space.memory.read(change.rDebug + 24, count: 4), state == [0, 0, 0, 0]
            else { continue }
            do {
                let stopped = try stopAllThreads(of: process, except: nil)
                defer {
                    for t in stopped where threads[t.tid] != nil {
                        if t.isInGroupStop { try? listen(t) } else { try? resume(t) }
                    }
                }
                guard let holder = process.threads.values.first(where: \.isHeldOutsideGroupStop)
                else { continue }
                try install(process, using: holder)
                process.space.forgetVanishedSites()
            } catch {
                if !error.threadGone { notice(process, "libraries loaded by dlopen could not be traced: \(error)") }
            }
        }
    }
}

/// A change of the link map an r_brk pad recorded, waiting for nstrace.
struct LinkMapChange {
    let trace: InlineTrace
    let process: TracedProcess
    let rDebug: UInt64
    let ticket: UInt64
}

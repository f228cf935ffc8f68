import Foundation
import NonStop

/// Hands each event to every renderer, after the filters the user asked for: which calls (`CallFilter`:
/// `--min-duration`, `--max-depth`, `--exclude`, `--caller`), only some threads (`--tid`), at most so
/// many calls (`--max-calls`, then nstrace detaches).
public final class RenderPipeline {
    private let renderers: [Renderer]
    private let threads: Set<Int32>
    private let maxCalls: Int?
    private let status: StatusLine?
    private let functions = FunctionTable()
    /// Nil when no call filter is asked for: then an event costs nothing more than before.
    private let filter: CallFilter?
    private let minDuration: UInt64?
    private var calls = 0
    /// Events the engine could not report, by cause: told on stderr at the end whatever the output.
    private var lost: [String: LostEvents] = [:]
    /// Frames of calls shown, per thread (per goroutine in Go), so the returns of calls past --max-calls
    /// are not shown either.
    private var shownDepth: [CallKey: Int32] = [:]

    public init(renderers: [Renderer], threads: Set<Int32>, maxCalls: Int?, status: StatusLine?,
         filters: CallFilter.Options = .init()) {
        self.renderers = renderers
        filter = filters.isEmpty ? nil : CallFilter(options: filters, functions: functions)
        minDuration = filters.minDuration
        self.threads = threads
        self.maxCalls = maxCalls
        self.status = status
    }

    public func render(_ batch: EventBatch) {
        functions.add(batch.newFunctions)
        var callsSeen = 0
        batch.withValues { values in
            let context = BatchContext(batch: batch, values: values, functions: functions)
            let events = batch.events
            if let filter {
                for i in events.indices {
                    count(events[i], batch, &callsSeen)
                    filter.take(events, at: i, context, deliver)
                }
            } else {
                for event in events {
                    count(event, batch, &callsSeen)
                    deliver(event, context)
                }
            }
        }
        status?.count(events: batch.events.count, calls: callsSeen, lost: lost.values.reduce(0) { $0 &+ $1.count })
    }

    @inline(__always)
    private func count(_ event: Event, _ batch: EventBatch, _ callsSeen: inout Int) {
        switch event.kind {
        case .call: callsSeen &+= 1
        case .lost:
            if case .lost(let more) = batch.detail(of: event) { lost[more.cause] = lost[more.cause].map { $0.adding(more) } ?? more }
        default: break
        }
    }

    @inline(__always)
    private func deliver(_ event: Event, _ context: BatchContext) {
        if shows(event) {
            for renderer in renderers { renderer.render(event, context) }
        }
    }

    private func shows(_ event: Event) -> Bool {
        if !threads.isEmpty, !threads.contains(event.tid), event.kind != .notice { return false }
        guard let maxCalls else { return true }
        switch event.kind {
        case .call:
            if calls >= maxCalls { return false }
            calls += 1
            shownDepth[CallKey(event)] = event.depth &+ 1
            if calls == maxCalls { StopRequest.request() }
        case .ret, .unwound:
            guard let shown = shownDepth[CallKey(event)], event.depth < shown else { return false }
            shownDepth[CallKey(event)] = event.depth
        default:
            break
        }
        return true
    }

    public func flush() { renderers.forEach { $0.flush() } }

    public func finish() {
        filter?.finish(deliver)
        status?.finish()
        renderers.forEach { $0.finish() }
        if let filter, filter.givenUpLong > 0, let minDuration {
            fputs("nstrace: --min-duration: \(filter.givenUpLong) calls of \(minDuration)ns or more not shown: over \(CallFilter.maxHeld) calls were held open in one thread\n", stderr)
        }
        guard !lost.isEmpty else { return }
        let all = lost.values.sorted { $0.cause < $1.cause }
        let count = all.reduce(0) { $0 &+ $1.count }, calls = all.reduce(0) { $0 &+ $1.calls }
        let causes = all.map { "\($0.count) because \($0.cause)" }.joined(separator: "; ")
        let advice = all.contains { $0.cause.contains("ring") || $0.cause.contains("output fell behind") }
            ? " (--lossless makes the program wait instead)" : ""
        fputs("nstrace: \(count) events lost, \(calls) of them calls: \(causes)\(advice)\n", stderr)
    }
}

/// A live line on the terminal while the trace goes to a file: events per second, calls, threads,
/// breakpoints.
public final class StatusLine: @unchecked Sendable {
    private let lock = NSLock()
    private var events = 0
    private var calls = 0
    /// Events lost so far, whatever the cause.
    private var lost = 0
    private var done = false

    public init(engine: EngineStatus) {
        Thread.detachNewThread { [self] in
            var previous = 0
            while true {
                usleep(500_000)
                lock.lock()
                let (e, c, l, d) = (events, calls, lost, done)
                lock.unlock()
                if d { return }
                let line = "\r\u{1b}[2Knstrace: \((e - previous) * 2) events/s, \(c) calls, \(engine.threads) threads, "
                    + "\(engine.breakpoints) breakpoints" + (l > 0 ? ", \(l) events lost" : "")
                previous = e
                fputs(line, stderr)
            }
        }
    }

    func count(events: Int, calls: Int, lost: Int) {
        lock.lock()
        self.events &+= events
        self.calls &+= calls
        self.lost = lost
        lock.unlock()
    }

    func finish() {
        lock.lock()
        done = true
        lock.unlock()
        fputs("\r\u{1b}[2K", stderr)
    }
}

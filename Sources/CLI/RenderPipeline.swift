import Foundation
import NonStop

/// Hands each event to every renderer, after the filters the user asked for: only some threads
/// (`--tid`), at most so many calls (`--max-calls`, then nstrace detaches).
final class RenderPipeline: Renderer {
    private let renderers: [Renderer]
    private let threads: Set<Int32>
    private let maxCalls: Int?
    private let status: StatusLine?
    private var calls = 0
    /// Events the engine could not record, told on stderr at the end whatever the output.
    private var lost = 0
    private var lostCalls = 0
    private var lostCauses: [String] = []
    /// Frames of calls shown, per thread, so the returns of calls past --max-calls are not shown either.
    private var shownDepth: [Int32: Int] = [:]

    init(renderers: [Renderer], threads: Set<Int32>, maxCalls: Int?, status: StatusLine?) {
        self.renderers = renderers
        self.threads = threads
        self.maxCalls = maxCalls
        self.status = status
    }

    func render(_ event: TraceEvent) {
        status?.count(event)
        if case .lost(let more) = event.kind {
            lost &+= more.count
            lostCalls &+= more.calls
            if !lostCauses.contains(more.cause) { lostCauses.append(more.cause) }
        }
        if !threads.isEmpty, !threads.contains(event.tid) {
            if case .notice = event.kind {} else { return }
        }
        switch event.kind {
        case .call(_, let depth, _, _):
            if let maxCalls, calls >= maxCalls { return }
            calls += 1
            shownDepth[event.tid] = depth + 1
            if let maxCalls, calls == maxCalls { StopRequest.request() }
        case .ret(_, let depth, _, _), .unwound(_, let depth, _):
            if maxCalls != nil {
                guard let shown = shownDepth[event.tid], depth < shown else { return }
                shownDepth[event.tid] = depth
            }
        default:
            break
        }
        for renderer in renderers { renderer.render(event) }
    }

    func flush() { renderers.forEach { $0.flush() } }

    func finish() {
        status?.finish()
        renderers.forEach { $0.finish() }
        if lost > 0 {
            let advice = lostCauses.contains { $0.contains("ring") } ? " (--lossless makes the program wait instead)" : ""
            fputs("nstrace: \(lost) events lost, \(lostCalls) of them calls: \(lostCauses.joined(separator: "; "))\(advice)\n", stderr)
        }
    }
}

/// A live line on the terminal while the trace goes to a file: events per second, calls, threads,
/// breakpoints.
final class StatusLine: @unchecked Sendable {
    private let lock = NSLock()
    private var events = 0
    private var calls = 0
    /// Events the engine could not record, told on stderr at the end whatever the output.
    private var lost = 0
    private var lostCalls = 0
    private var lostCauses: [String] = []
    private var done = false

    init(engine: EngineStatus) {
        Thread.detachNewThread { [self] in
            var previous = 0
            while true {
                usleep(500_000)
                lock.lock()
                let (e, c, d) = (events, calls, done)
                lock.unlock()
                if d { return }
                let line = "\r\u{1b}[2Knstrace: \((e - previous) * 2) events/s, \(c) calls, \(engine.threads) threads, "
                    + "\(engine.breakpoints) breakpoints"
                previous = e
                fputs(line, stderr)
            }
        }
    }

    func count(_ event: TraceEvent) {
        lock.lock()
        events += 1
        if case .call = event.kind { calls += 1 }
        lock.unlock()
    }

    func finish() {
        lock.lock()
        done = true
        lock.unlock()
        fputs("\r\u{1b}[2K", stderr)
    }
}

import Foundation
import NonStop

/// `-c`: at exit, per function — calls, total, mean, min, max, p50, p99 of the time between call and
/// return — sorted by total time, then a log2 latency histogram of each.
public final class SummaryRenderer: Renderer {
    private struct Entry {
        let name: String
        var calls = 0
        var unwound = 0
        var latency = LatencyHistogram()
    }

    private let output: Output
    /// By function number: an array index per event, no hashing. Merged by name when printed (one
    /// name can be several functions: a static function in two modules, a library loaded twice).
    private var entries: [Entry] = []
    private var lost: [String: LostEvents] = [:]
    private var syscalls = SyscallSummary()

    public init(output: Output) {
        self.output = output
    }

    public func render(_ event: Event, _ batch: BatchContext) {
        switch event.kind {
        case .call:
            guard let i = entry(event, batch) else { return }
            entries[i].calls &+= 1
        case .ret:
            guard let i = entry(event, batch) else { return }
            entries[i].latency.add(event.duration)
        case .unwound:
            guard let i = entry(event, batch) else { return }
            entries[i].unwound &+= 1
        case .syscall:
            if case .syscall(let call) = batch.detail(of: event) { syscalls.add(call, duration: event.duration) }
        case .notice:
            if case .notice(let message) = batch.detail(of: event) { output.write("nstrace: \(message)") }
        case .lost:
            if case .lost(let more) = batch.detail(of: event) {
                lost[more.cause] = lost[more.cause].map { $0.adding(more) } ?? more
            }
        default:
            break
        }
    }

    private func entry(_ event: Event, _ batch: BatchContext) -> Int? {
        batch.functions.index(of: event, in: &entries) { Entry(name: $0.name) }
    }

    public func flush() {}

    public func finish() {
        for line in lines() { output.write(line) }
        output.flush()
    }

    func lines() -> [String] {
        // Syscalls alone (`--syscalls` and no REGEX): their table, not an empty one of functions.
        if entries.isEmpty, !syscalls.isEmpty { return syscalls.lines() + lostLines() }
        var byName: [String: Entry] = [:]
        // A function numbered for a call the filters hid has an entry too (entries are made in number
        // order): only what was shown is a row.
        for entry in entries where entry.calls > 0 || entry.unwound > 0 || entry.latency.count > 0 {
            let name = entry.name
            if var merged = byName[name] {
                merged.calls += entry.calls
                merged.unwound += entry.unwound
                merged.latency.merge(entry.latency)
                byName[name] = merged
            } else {
                byName[name] = entry
            }
        }
        var rows = byName.map { (name: $0.key, entry: $0.value) }
        rows.sort { ($0.entry.latency.total, $1.name) > ($1.entry.latency.total, $0.name) }
        let nameWidth = max(8, rows.map(\.name.count).max() ?? 8)
        var out = ["function".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            + ["calls", "total", "mean", "min", "max", "p50", "p99"].map { $0.leftPadded(to: 11) }.joined()]
        for (name, entry) in rows {
            let latency = entry.latency
            let cells = [String(entry.calls), duration(latency.total), duration(UInt64(latency.mean)), duration(latency.count > 0 ? latency.min : 0),
                         duration(latency.max), duration(latency.percentile(50)), duration(latency.percentile(99))]
            out.append(name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + cells.map { $0.leftPadded(to: 11) }.joined())
        }
        out += lostLines()
        for (name, entry) in rows where entry.latency.count > 0 {
            out.append("")
            let unwound = entry.unwound > 0 ? ", \(entry.unwound) unwound" : ""
            out.append("@\(name) (ns, \(entry.latency.count) returns\(unwound)):")
            out += entry.latency.drawn()
        }
        if !syscalls.isEmpty {
            out.append("")
            out += syscalls.lines()
        }
        return out
    }

    private func lostLines() -> [String] {
        guard !lost.isEmpty else { return [] }
        var out = [""]
        for (_, lost) in lost.sorted(by: { $0.key < $1.key }) {
            out.append("\(lost.count) events lost (\(lost.calls) calls, \(lost.returns) returns): \(lost.cause)")
        }
        out.append("the figures above count what was recorded")
        return out
    }

    /// 12ns, 3.4µs, 1.25ms, 2.000s.
    private func duration(_ ns: UInt64) -> String {
        switch ns {
        case ..<1_000: return "\(ns)ns"
        case ..<1_000_000: return String(format: "%.1fµs", Double(ns) / 1e3)
        case ..<1_000_000_000: return String(format: "%.2fms", Double(ns) / 1e6)
        default: return String(format: "%.3fs", Double(ns) / 1e9)
        }
    }
}

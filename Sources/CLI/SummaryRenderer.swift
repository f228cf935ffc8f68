import Foundation
import NonStop

/// `-c`: at exit, per function — calls, total, mean, min, max, p50, p99 of the time between call and
/// return — sorted by total time, then a log2 latency histogram of each.
final class SummaryRenderer: Renderer {
    private struct Entry {
        var module = ""
        var calls = 0
        var unwound = 0
        var latency = LatencyHistogram()
    }

    private let output: Output
    /// By function (hashing an object's identity, not its name, for each event); merged by name when
    /// printed.
    private var entries: [ObjectIdentifier: (name: String, entry: Entry)] = [:]
    private var lost = LostEvents(calls: 0, returns: 0, others: 0, cause: "")

    init(output: Output) {
        self.output = output
    }

    func render(_ event: TraceEvent) {
        switch event.kind {
        case .call(let function, _, _, _):
            entries[ObjectIdentifier(function), default: (function.name, Entry(module: function.module))].entry.calls += 1
        case .ret(let function, _, _, let duration):
            entries[ObjectIdentifier(function), default: (function.name, Entry(module: function.module))].entry.latency.add(duration)
        case .unwound(let function, _, _):
            entries[ObjectIdentifier(function), default: (function.name, Entry(module: function.module))].entry.unwound += 1
        case .notice(let message):
            output.write("nstrace: \(message)")
        case .lost(let more):
            lost = LostEvents(calls: lost.calls &+ more.calls, returns: lost.returns &+ more.returns,
                              others: lost.others &+ more.others, cause: more.cause)
        default:
            break
        }
    }

    func flush() {}

    func finish() {
        for line in lines() { output.write(line) }
        output.flush()
    }

    func lines() -> [String] {
        var byName: [String: Entry] = [:]
        for (name, entry) in entries.values {
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
        if lost.count > 0 {
            out.append("")
            out.append("\(lost.count) events lost (\(lost.calls) calls, \(lost.returns) returns): \(lost.cause); the figures above count what was recorded")
        }
        for (name, entry) in rows where entry.latency.count > 0 {
            out.append("")
            let unwound = entry.unwound > 0 ? ", \(entry.unwound) unwound" : ""
            out.append("@\(name) (ns, \(entry.latency.count) returns\(unwound)):")
            out += entry.latency.drawn()
        }
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

import Foundation

/// The medians of one cell, and what they mean against the untraced run and the floor.
struct Summary {
    let workload: Workload
    let threads: Int
    let tool: ContenderID
    let stopsPerCall: String
    /// ok, skipped, timeout or failed (a cell with some failed runs is summarised from the rest).
    let status: String
    let reason: String?
    let calls: Int?
    let seen: Int?
    /// Median returns reported, for tools that count them.
    let returns: Int?
    let missed: Int?
    /// The most calls missed in any one round.
    let maxMissed: Int?
    let wallSeconds: Double?
    let loopSeconds: Double?
    let overheadNsPerCall: Double?
    let floorRatio: Double?
    let runs: [RunRecord]
}

struct Report {
    let plan: SuitePlan
    let summaries: [Summary]
    let environment: Environment

    init(plan: SuitePlan, results: [Cell], environment: Environment) {
        self.plan = plan
        self.environment = environment
        var out: [Summary] = []
        for workload in plan.workloads {
            for threads in plan.threadCounts {
                let row = results.filter { $0.workload == workload && $0.threads == threads }
                let untraced = row.first { $0.contender.id == .untraced }.flatMap { Report.median($0.runs.compactMap(\.loopSeconds)) }
                let floorCell = row.first { $0.contender.id == .floor }
                let floorOverhead = floorCell.flatMap { Report.overhead($0, untraced: untraced) }
                for cell in row {
                    out.append(Report.summarise(cell, untraced: untraced, floor: floorOverhead))
                }
            }
        }
        summaries = out
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func medianInt(_ values: [Int]) -> Int? {
        guard !values.isEmpty else { return nil }
        return values.sorted()[(values.count - 1) / 2]
    }

    /// (median traced loop − median untraced loop) / calls, in nanoseconds.
    static func overhead(_ cell: Cell, untraced: Double?) -> Double? {
        let ok = cell.runs.filter { $0.status == .ok }
        guard let untraced, let loop = median(ok.compactMap(\.loopSeconds)), let calls = medianInt(ok.compactMap(\.calls)), calls > 0
        else { return nil }
        return (loop - untraced) / Double(calls) * 1e9
    }

    static func summarise(_ cell: Cell, untraced: Double?, floor: Double?) -> Summary {
        let ok = cell.runs.filter { $0.status == .ok }
        let status: String
        var reason: String? = cell.skipped
        if cell.skipped != nil {
            status = "skipped"
        } else if ok.isEmpty {
            status = cell.runs.contains { $0.status == .timeout } ? "timeout" : "failed"
            reason = cell.runs.compactMap(\.detail).last
        } else {
            status = "ok"
            let bad = cell.runs.count - ok.count
            if bad > 0 { reason = "\(bad) of \(cell.runs.count) runs failed or timed out: \(cell.runs.compactMap(\.detail).last ?? "")" }
        }
        let calls = medianInt(ok.compactMap(\.calls))
        let traced = cell.contender.id != .untraced
        let seen = traced ? medianInt(ok.compactMap(\.seen)) : nil
        let missedPerRun = ok.compactMap { r -> Int? in
            guard let c = r.calls, let s = r.seen else { return nil }
            return c - s
        }
        let overhead = traced ? Report.overhead(cell, untraced: untraced) : nil
        return Summary(
            workload: cell.workload, threads: cell.threads, tool: cell.contender.id,
            stopsPerCall: cell.contender.stopsPerCall, status: status, reason: reason,
            calls: calls, seen: seen, returns: traced ? medianInt(ok.compactMap(\.returns)) : nil, missed: traced ? medianInt(missedPerRun) : nil,
            maxMissed: traced ? missedPerRun.max() : nil,
            wallSeconds: median(ok.map(\.wallSeconds)), loopSeconds: median(ok.compactMap(\.loopSeconds)),
            overheadNsPerCall: overhead,
            floorRatio: overhead.flatMap { o in floor.flatMap { $0 > 0 ? o / $0 : nil } },
            runs: cell.runs)
    }

    // MARK: Output

    private struct Column {
        let title: String
        let value: (Summary) -> String
        let right: Bool
    }

    private var columns: [Column] {
        [
            Column(title: "threads", value: { "\($0.threads)" }, right: true),
            Column(title: "tool", value: { $0.tool.rawValue }, right: false),
            Column(title: "calls", value: { $0.calls.map(String.init) ?? "–" }, right: true),
            Column(title: "seen", value: { $0.seen.map(String.init) ?? "–" }, right: true),
            Column(title: "returns", value: { $0.returns.map(String.init) ?? "–" }, right: true),
            Column(title: "missed", value: { $0.missed.map(String.init) ?? "–" }, right: true),
            Column(title: "wall s", value: { $0.wallSeconds.map { String(format: "%.3f", $0) } ?? "–" }, right: true),
            Column(title: "loop ms", value: { $0.loopSeconds.map { String(format: "%.1f", $0 * 1000) } ?? "–" }, right: true),
            Column(title: "overhead ns/call", value: { $0.overheadNsPerCall.map { String(format: "%.0f", $0) } ?? "–" }, right: true),
            Column(title: "× floor", value: { $0.floorRatio.map { String(format: "%.2f", $0) } ?? "–" }, right: true),
            Column(title: "stops/call", value: { $0.stopsPerCall }, right: false),
            Column(title: "note", value: { s in s.status == "ok" ? (s.reason ?? "") : "\(s.status): \(s.reason ?? "")" }, right: false),
        ]
    }

    private func heading(_ workload: Workload) -> String {
        "\(workload.title): \(plan.callsPerThread) calls per thread, " + (plan.rounds == 1 ? "one round" : "median of \(plan.rounds) rounds")
    }

    func text() -> String {
        var out = ""
        for workload in plan.workloads {
            out += "\n" + heading(workload) + "\n"
            let rows = summaries.filter { $0.workload == workload }
            let cols = columns
            let cells = rows.map { r in cols.map { $0.value(r) } }
            let widths = cols.indices.map { i in max(cols[i].title.count, cells.map { $0[i].count }.max() ?? 0) }
            func line(_ values: [String]) -> String {
                values.indices.map { i in
                    let pad = String(repeating: " ", count: max(0, widths[i] - values[i].count))
                    return cols[i].right ? pad + values[i] : values[i] + (i == values.count - 1 ? "" : pad)
                }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
            }
            out += line(cols.map(\.title)) + "\n"
            var last = -1
            for (r, values) in zip(rows, cells) {
                if r.threads != last, last != -1 { out += "\n" }
                last = r.threads
                out += line(values) + "\n"
            }
        }
        out += "\n" + legend
        return out
    }

    var legend: String {
        """
        overhead ns/call = (median loop time traced − untraced) / calls, the loop timed by the workload
        itself (tracer start-up and detach are not in it); × floor = that overhead over the floor's, a
        ptrace loop that only waits and continues (one stop per call, nothing else). missed = calls the
        workload made (its own count) − calls the tool reported.
        """
    }

    func markdown() -> String {
        var out = "Measured \(environment.date) on \(environment.cpus) × \(environment.cpu), Linux \(environment.kernel)"
        out += " (load average at the end: \(environment.loadAverage))."
        if !environment.peers.isEmpty { out += " Peers: \(environment.peers.joined(separator: ", "))." }
        out += "\n\n"
        out += "```\n\(environment.command)\n```\n"
        for workload in plan.workloads {
            out += "\n**\(heading(workload))**\n\n"
            let cols = columns
            out += "| " + cols.map(\.title).joined(separator: " | ") + " |\n"
            out += "|" + cols.map { $0.right ? "---:|" : "---|" }.joined() + "\n"
            for r in summaries where r.workload == workload {
                out += "| " + cols.map { $0.value(r).replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
            }
        }
        out += "\n" + legend.replacingOccurrences(of: "\n", with: " ") + "\n"
        return out
    }

    static func markdown(micro: [MicroBenchmarks.Result]) -> String {
        guard !micro.isEmpty else { return "" }
        var out = "\n**Micro-benchmarks** (in process, google/swift-benchmark: median time per operation, each iteration timed on its own)\n\n"
        out += "| benchmark | median | iterations |\n|---|---:|---:|\n"
        for r in micro {
            let t = r.medianNanoseconds
            let shown = t >= 1e6 ? String(format: "%.2f ms", t / 1e6) : t >= 1e3 ? String(format: "%.2f µs", t / 1e3) : String(format: "%.0f ns", t)
            out += "| \(r.name.replacingOccurrences(of: "|", with: "\\|")) | \(shown) | \(r.iterations) |\n"
        }
        return out
    }

    func json() -> String {
        var lines: [String] = []
        for s in summaries {
            var o: [String] = []
            func field(_ k: String, _ v: String) { o.append("\"\(k)\":\(v)") }
            func string(_ v: String?) -> String {
                guard let v else { return "null" }
                let escaped = v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    .replacingOccurrences(of: "\n", with: "\\n")
                return "\"\(escaped)\""
            }
            func number(_ v: Double?, _ digits: Int) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "null" }
            func int(_ v: Int?) -> String { v.map(String.init) ?? "null" }
            field("tool", string(s.tool.rawValue))
            field("workload", string(s.workload.rawValue))
            field("threads", "\(s.threads)")
            field("calls", int(s.calls))
            field("seen", int(s.seen))
            field("returns", int(s.returns))
            field("missed", int(s.missed))
            field("max_missed", int(s.maxMissed))
            field("wall_s", number(s.wallSeconds, 4))
            field("loop_s", number(s.loopSeconds, 6))
            field("overhead_ns_per_call", number(s.overheadNsPerCall, 0))
            field("floor_ratio", number(s.floorRatio, 3))
            field("stops_per_call", string(s.stopsPerCall))
            field("status", string(s.status))
            field("reason", string(s.reason))
            field("rounds", "[" + s.runs.map { r in
                "{\"status\":\(string(r.status.rawValue)),\"wall_s\":\(number(r.wallSeconds, 4)),\"loop_s\":\(number(r.loopSeconds, 6)),\"calls\":\(int(r.calls)),\"seen\":\(int(r.seen)),\"returns\":\(int(r.returns))}"
            }.joined(separator: ",") + "]")
            lines.append("{" + o.joined(separator: ",") + "}")
        }
        return "[\n" + lines.joined(separator: ",\n") + "\n]\n"
    }
}

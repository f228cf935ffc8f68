import Foundation
import Rendering

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
    /// The overhead per ptrace stop (per call over stops per call), and that over the floor's (whose
    /// one stop per call is its whole overhead): how far a stop is from the least a stop costs.
    let overheadNsPerStop: Double?
    let floorRatioPerStop: Double?
    /// Median share of CPU time stolen by the hypervisor during the runs, in percent.
    let stealPercent: Double?
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
        let perStop = cell.contender.stopsPerCallCount.flatMap { stops in overhead.map { $0 / Double(stops) } }
        return Summary(
            workload: cell.workload, threads: cell.threads, tool: cell.contender.id,
            stopsPerCall: cell.contender.stopsPerCall, status: status, reason: reason,
            calls: calls, seen: seen, returns: traced ? medianInt(ok.compactMap(\.returns)) : nil, missed: traced ? medianInt(missedPerRun) : nil,
            maxMissed: traced ? missedPerRun.max() : nil,
            wallSeconds: median(ok.map(\.wallSeconds)), loopSeconds: median(ok.compactMap(\.loopSeconds)),
            overheadNsPerCall: overhead,
            floorRatio: overhead.flatMap { o in floor.flatMap { $0 > 0 ? o / $0 : nil } },
            overheadNsPerStop: perStop,
            floorRatioPerStop: perStop.flatMap { o in floor.flatMap { $0 > 0 ? o / $0 : nil } },
            stealPercent: median(cell.runs.compactMap(\.stealPercent)),
            runs: cell.runs)
    }

    // MARK: Output

    private var columns: [Column<Summary>] {
        [
            Column("threads") { "\($0.threads)" },
            Column("tool", right: false) { $0.tool.rawValue },
            Column("calls") { Table.show($0.calls) },
            Column("seen") { Table.show($0.seen) },
            Column("returns") { Table.show($0.returns) },
            Column("missed") { Table.show($0.missed) },
            Column("wall s") { Table.show($0.wallSeconds, "%.3f") },
            Column("loop ms") { Table.show($0.loopSeconds.map { $0 * 1000 }, "%.1f") },
            Column("overhead ns/call") { Table.show($0.overheadNsPerCall, "%.0f") },
            Column("× floor") { Table.show($0.floorRatio, "%.2f") },
            Column("ns/stop") { Table.show($0.overheadNsPerStop, "%.0f") },
            Column("× floor/stop") { Table.show($0.floorRatioPerStop, "%.2f") },
            Column("steal %") { Table.show($0.stealPercent, "%.1f") },
            Column("stops/call", right: false) { $0.stopsPerCall },
            Column("note", right: false) { s in s.status == "ok" ? (s.reason ?? "") : "\(s.status): \(s.reason ?? "")" },
        ]
    }

    private func heading(_ workload: Workload) -> String {
        "\(workload.title): \(plan.callsPerThread) calls per thread, " + (plan.rounds == 1 ? "one round" : "median of \(plan.rounds) rounds")
            + (plan.pinned ? ", pinned to CPU 0 (taskset -c 0: tracer and workload on one CPU)" : ", unpinned")
    }

    func text() -> String {
        var out = ""
        for workload in plan.workloads {
            out += "\n" + heading(workload) + "\n"
            out += Table.text(summaries.filter { $0.workload == workload }, columns) { $0.threads != $1.threads }
        }
        return out + "\n" + legend
    }

    var legend: String {
        """
        overhead ns/call = (median loop time traced − untraced) / calls, the loop timed by the workload
        itself (tracer start-up and detach are not in it); × floor = that overhead over the floor's, a
        ptrace loop that only waits and continues (one stop per call, nothing else). ns/stop = overhead
        over the tool's ptrace stops per call, × floor/stop that over the floor's. steal % = the
        hypervisor's steal time over all CPU time during the runs (/proc/stat, median). missed = calls
        the workload made (its own count) − calls the tool reported.
        """
    }

    func markdown() -> String {
        var out = environment.markdownPreamble
        for workload in plan.workloads {
            out += "\n**\(heading(workload))**\n\n" + Table.markdown(summaries.filter { $0.workload == workload }, columns)
        }
        return out + "\n" + legend.replacingOccurrences(of: "\n", with: " ") + "\n"
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
        let lines = summaries.map { s -> String in
            var o = JSONWriter()
            o.field("tool", s.tool.rawValue)
            o.field("workload", s.workload.rawValue)
            o.field("threads", s.threads)
            o.field("calls", s.calls)
            o.field("seen", s.seen)
            o.field("returns", s.returns)
            o.field("missed", s.missed)
            o.field("max_missed", s.maxMissed)
            o.field("wall_s", s.wallSeconds, digits: 4)
            o.field("loop_s", s.loopSeconds, digits: 6)
            o.field("overhead_ns_per_call", s.overheadNsPerCall, digits: 0)
            o.field("floor_ratio", s.floorRatio, digits: 3)
            o.field("overhead_ns_per_stop", s.overheadNsPerStop, digits: 0)
            o.field("floor_ratio_per_stop", s.floorRatioPerStop, digits: 3)
            o.field("steal_percent", s.stealPercent, digits: 2)
            o.field("pinned", plan.pinned)
            o.field("stops_per_call", s.stopsPerCall)
            o.field("status", s.status)
            o.field("reason", s.reason)
            o.field("rounds", json: JSONWriter.array(s.runs.map { r in
                var w = JSONWriter()
                w.field("status", r.status.rawValue)
                w.field("wall_s", r.wallSeconds, digits: 4)
                w.field("loop_s", r.loopSeconds, digits: 6)
                w.field("calls", r.calls)
                w.field("seen", r.seen)
                w.field("returns", r.returns)
                w.field("steal_percent", r.stealPercent, digits: 2)
                return w.finished
            }))
            return o.finished
        }
        return "[\n" + lines.joined(separator: ",\n") + "\n]\n"
    }
}

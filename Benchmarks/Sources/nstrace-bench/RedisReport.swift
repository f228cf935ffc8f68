import Foundation
import Rendering

/// The medians of every tool's runs, as a text table, Markdown and JSON.
struct RedisReport {
    struct Summary {
        let tool: RedisToolID
        /// ok, skipped, failed or timeout (a tool with some failed runs is summarised from the rest).
        let status: String
        let reason: String?
        let requests: Int?
        let requestsPerSecond: Double?
        /// The median over rounds of requests/s over the same round's untraced requests/s, in percent.
        let percentOfUntraced: Double?
        /// Failed requests summed over all measured runs, and the worst run.
        let failedRequests: Int?
        let maxFailedRequests: Int?
        /// Median calls (and returns) of read and write the tool reported per request.
        let callsPerRequest: Double?
        let returnsPerRequest: Double?
        let attachSeconds: Double?
        let detachSeconds: Double?
        /// Runs after which the server was alive, answered PING and SET/GET, libc code restored.
        let checksPassed: Int
        let runs: [RedisRun]
    }

    let plan: RedisPlan
    let summaries: [Summary]
    let environment: Environment

    init(plan: RedisPlan, cells: [RedisCell], environment: Environment) {
        self.plan = plan
        self.environment = environment
        // Each round's untraced run, to pair with the same round's run of every tool: the machine's
        // speed drifts from round to round, and a ratio within one round cancels the drift.
        let untracedRuns = cells.first { $0.tool.id == .untraced }?.runs ?? []
        summaries = cells.map { cell in
            let ok = cell.runs.filter { $0.status == .ok }
            var status = "ok", reason = cell.skipped
            if cell.runs.isEmpty {
                status = cell.tool.skipReason != nil ? "skipped" : (cell.probe?.status.rawValue ?? "skipped")
            } else if ok.isEmpty {
                status = cell.runs.contains { $0.status == .timeout } ? "timeout" : "failed"
                reason = cell.runs.compactMap(\.detail).last
            } else if ok.count < cell.runs.count {
                reason = "\(cell.runs.count - ok.count) of \(cell.runs.count) runs failed: \(cell.runs.compactMap(\.detail).last ?? "")"
            } else if let problem = cell.runs.compactMap(\.detail).last {
                reason = problem
            }
            let rps = Report.median(ok.compactMap(\.requestsPerSecond))
            let perRequest = { (value: (RedisRun) -> Int?) -> Double? in
                Report.median(ok.compactMap { r in value(r).map { Double($0) / Double(max(1, r.requests)) } })
            }
            let failed = cell.runs.compactMap(\.failedRequests)
            return Summary(
                tool: cell.tool.id, status: status, reason: reason,
                requests: Report.medianInt(cell.runs.map(\.requests)),
                requestsPerSecond: rps,
                percentOfUntraced: Report.median(zip(cell.runs, untracedRuns).compactMap { run, base in
                    guard run.status == .ok, base.status == .ok, let r = run.requestsPerSecond, let b = base.requestsPerSecond, b > 0
                    else { return nil }
                    return r / b * 100
                }),
                failedRequests: failed.isEmpty ? nil : failed.reduce(0, +), maxFailedRequests: failed.max(),
                callsPerRequest: cell.tool.command == nil ? nil : perRequest(\.calls),
                returnsPerRequest: cell.tool.command == nil ? nil : perRequest(\.returns),
                attachSeconds: Report.median(ok.compactMap(\.attachSeconds)),
                detachSeconds: Report.median(ok.compactMap(\.detachSeconds)),
                checksPassed: cell.runs.filter(\.checksPassed).count,
                runs: cell.runs)
        }
    }

    private var columns: [Column<Summary>] {
        [
            Column("tool", right: false) { $0.tool.rawValue },
            Column("requests") { Table.show($0.requests) },
            Column("req/s") { Table.show($0.requestsPerSecond, "%.0f") },
            Column("% of untraced") { Table.show($0.percentOfUntraced, "%.1f") },
            Column("failed requests") { Table.show($0.failedRequests) },
            Column("calls/request") { Table.show($0.callsPerRequest, "%.2f") },
            Column("returns/request") { Table.show($0.returnsPerRequest, "%.2f") },
            Column("attach s") { Table.show($0.attachSeconds, "%.2f") },
            Column("detach s") { Table.show($0.detachSeconds, "%.2f") },
            Column("server after", right: false) { $0.runs.isEmpty ? "–" : "\($0.checksPassed)/\($0.runs.count) ok" },
            Column("note", right: false) { s in s.status == "ok" ? (s.reason ?? "") : "\(s.status): \(s.reason ?? "")" },
        ]
    }

    var heading: String {
        "redis-server, libc read and write traced: redis-benchmark -t get -c \(plan.clients), "
            + (plan.rounds == 1 ? "one round" : "median of \(plan.rounds) rounds")
    }

    var legend: String {
        """
        req/s = redis-benchmark's own figure (median); % of untraced = the median over rounds of req/s
        over the same round's untraced req/s. Requests per run are sized from each tool's first,
        uncounted run so that every run takes about \(String(format: "%.1f", plan.targetSeconds)) s. failed requests = GETs the
        server did not execute or executed with an error (INFO commandstats), summed over the rounds.
        calls/request = calls of read and write the tool reported while attached, per request (about
        2: one read and one write per GET). server after = runs after which the server was alive,
        answered PING and a SET/GET round trip, and libc's read and write were as before.
        """
    }

    func text() -> String {
        "\n" + heading + "\n" + Table.text(summaries, columns) + "\n" + legend + "\n"
    }

    func markdown() -> String {
        environment.markdownPreamble + "\n**\(heading)**\n\n" + Table.markdown(summaries, columns)
            + "\n" + legend.replacingOccurrences(of: "\n", with: " ") + "\n"
    }

    func json() -> String {
        let lines = summaries.map { s -> String in
            var o = JSONWriter()
            o.field("tool", s.tool.rawValue)
            o.field("benchmark", "redis-get")
            o.field("clients", plan.clients)
            o.field("requests", s.requests)
            o.field("requests_per_s", s.requestsPerSecond, digits: 1)
            o.field("percent_of_untraced", s.percentOfUntraced, digits: 2)
            o.field("failed_requests", s.failedRequests)
            o.field("max_failed_requests", s.maxFailedRequests)
            o.field("calls_per_request", s.callsPerRequest, digits: 3)
            o.field("returns_per_request", s.returnsPerRequest, digits: 3)
            o.field("attach_s", s.attachSeconds, digits: 3)
            o.field("detach_s", s.detachSeconds, digits: 3)
            o.field("checks_passed", s.checksPassed)
            o.field("status", s.status)
            o.field("reason", s.reason)
            o.field("rounds", json: JSONWriter.array(s.runs.map { r in
                var w = JSONWriter()
                w.field("status", r.status.rawValue)
                w.field("requests", r.requests)
                w.field("requests_per_s", r.requestsPerSecond, digits: 1)
                w.field("failed_requests", r.failedRequests)
                w.field("benchmark_error_lines", r.benchmarkErrors)
                w.field("calls", r.calls)
                w.field("returns", r.returns)
                w.field("attach_s", r.attachSeconds, digits: 3)
                w.field("detach_s", r.detachSeconds, digits: 3)
                w.field("server_alive", r.serverAlive)
                w.field("ping", r.ping)
                w.field("set_get", r.setGet)
                w.field("code_restored", r.codeRestored)
                w.field("detail", r.detail)
                return w.finished
            }))
            return o.finished
        }
        return "[\n" + lines.joined(separator: ",\n") + "\n]\n"
    }
}

import Foundation

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

    private struct Column {
        let title: String
        let value: (Summary) -> String
        let right: Bool
    }

    private var columns: [Column] {
        func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "–" }
        return [
            Column(title: "tool", value: { $0.tool.rawValue }, right: false),
            Column(title: "requests", value: { $0.requests.map(String.init) ?? "–" }, right: true),
            Column(title: "req/s", value: { f($0.requestsPerSecond, "%.0f") }, right: true),
            Column(title: "% of untraced", value: { f($0.percentOfUntraced, "%.1f") }, right: true),
            Column(title: "failed requests", value: { $0.failedRequests.map(String.init) ?? "–" }, right: true),
            Column(title: "calls/request", value: { f($0.callsPerRequest, "%.2f") }, right: true),
            Column(title: "returns/request", value: { f($0.returnsPerRequest, "%.2f") }, right: true),
            Column(title: "attach s", value: { f($0.attachSeconds, "%.2f") }, right: true),
            Column(title: "detach s", value: { f($0.detachSeconds, "%.2f") }, right: true),
            Column(title: "server after", value: { $0.runs.isEmpty ? "–" : "\($0.checksPassed)/\($0.runs.count) ok" }, right: false),
            Column(title: "note", value: { s in s.status == "ok" ? (s.reason ?? "") : "\(s.status): \(s.reason ?? "")" }, right: false),
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
        let cols = columns
        let cells = summaries.map { s in cols.map { $0.value(s) } }
        let widths = cols.indices.map { i in max(cols[i].title.count, cells.map { $0[i].count }.max() ?? 0) }
        func line(_ values: [String]) -> String {
            values.indices.map { i in
                let pad = String(repeating: " ", count: max(0, widths[i] - values[i].count))
                return cols[i].right ? pad + values[i] : values[i] + (i == values.count - 1 ? "" : pad)
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return "\n" + heading + "\n" + line(cols.map(\.title)) + "\n"
            + cells.map(line).joined(separator: "\n") + "\n\n" + legend + "\n"
    }

    func markdown() -> String {
        var out = "Measured \(environment.date) on \(environment.cpus) × \(environment.cpu), Linux \(environment.kernel)"
        out += " (load average at the end: \(environment.loadAverage))."
        if !environment.peers.isEmpty { out += " Peers: \(environment.peers.joined(separator: ", "))." }
        out += "\n\n```\n\(environment.command)\n```\n\n**\(heading)**\n\n"
        let cols = columns
        out += "| " + cols.map(\.title).joined(separator: " | ") + " |\n"
        out += "|" + cols.map { $0.right ? "---:|" : "---|" }.joined() + "\n"
        for s in summaries {
            out += "| " + cols.map { $0.value(s).replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
        }
        out += "\n" + legend.replacingOccurrences(of: "\n", with: " ") + "\n"
        return out
    }

    func json() -> String {
        func string(_ v: String?) -> String {
            guard let v else { return "null" }
            let escaped = v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\"\(escaped)\""
        }
        func number(_ v: Double?, _ digits: Int) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "null" }
        func int(_ v: Int?) -> String { v.map(String.init) ?? "null" }
        func bool(_ v: Bool?) -> String { v.map { $0 ? "true" : "false" } ?? "null" }
        let lines = summaries.map { s -> String in
            var o: [String] = []
            func field(_ k: String, _ v: String) { o.append("\"\(k)\":\(v)") }
            field("tool", string(s.tool.rawValue))
            field("benchmark", string("redis-get"))
            field("clients", "\(plan.clients)")
            field("requests", int(s.requests))
            field("requests_per_s", number(s.requestsPerSecond, 1))
            field("percent_of_untraced", number(s.percentOfUntraced, 2))
            field("failed_requests", int(s.failedRequests))
            field("max_failed_requests", int(s.maxFailedRequests))
            field("calls_per_request", number(s.callsPerRequest, 3))
            field("returns_per_request", number(s.returnsPerRequest, 3))
            field("attach_s", number(s.attachSeconds, 3))
            field("detach_s", number(s.detachSeconds, 3))
            field("checks_passed", "\(s.checksPassed)")
            field("status", string(s.status))
            field("reason", string(s.reason))
            field("rounds", "[" + s.runs.map { r in
                "{\"status\":\(string(r.status.rawValue)),\"requests\":\(r.requests),\"requests_per_s\":\(number(r.requestsPerSecond, 1)),"
                    + "\"failed_requests\":\(int(r.failedRequests)),\"benchmark_error_lines\":\(r.benchmarkErrors),"
                    + "\"calls\":\(int(r.calls)),\"returns\":\(int(r.returns)),\"attach_s\":\(number(r.attachSeconds, 3)),"
                    + "\"detach_s\":\(number(r.detachSeconds, 3)),\"server_alive\":\(bool(r.serverAlive)),\"ping\":\(bool(r.ping)),"
                    + "\"set_get\":\(bool(r.setGet)),\"code_restored\":\(bool(r.codeRestored)),\"detail\":\(string(r.detail))}"
            }.joined(separator: ",") + "]")
            return "{" + o.joined(separator: ",") + "}"
        }
        return "[\n" + lines.joined(separator: ",\n") + "\n]\n"
    }
}

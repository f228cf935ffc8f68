import Foundation

/// What the redis benchmark runs.
struct RedisPlan {
    let tools: [RedisTool]
    let rounds: Int
    let clients: Int
    /// Requests of each tool's first, uncounted run, whose rate sizes its measured runs.
    let probeRequests: Int
    /// How long one measured run should take; a tool's request count is its probe's rate times this.
    let targetSeconds: Double
    /// At least this many requests per measured run (as many as the probe), whatever the probe's
    /// rate: a probe slowed down by a busy machine must not make every later run a short one.
    let minRequests: Int
    let maxRequests: Int
    /// The most one redis-benchmark run may take; then it is killed and recorded as a timeout.
    let timeout: Double
    let redisServer: String
    let redisBenchmark: String
    let redisCLI: String
}

/// One redis-benchmark run under one tool.
struct RedisRun {
    enum Status: String { case ok, failed, timeout }

    let status: Status
    let requests: Int
    let requestsPerSecond: Double?
    /// Requests that did not succeed: GETs the server never executed, or executed with an error
    /// (`INFO commandstats`), counted from the server's side.
    let failedRequests: Int?
    /// Lines of redis-benchmark's output that report an error.
    let benchmarkErrors: Int
    /// Calls and returns of read and write the tool reported, over the whole time it was attached.
    let calls: Int?
    let returns: Int?
    /// From starting the tool until it was attached (its probes visible in the server's code).
    let attachSeconds: Double?
    /// From SIGINT until the tool had detached and exited.
    let detachSeconds: Double?
    /// After the tool had gone: the server still running, answering PING, reading back a SET, and
    /// libc's read and write as they were before.
    let serverAlive: Bool
    let ping: Bool
    let setGet: Bool
    let codeRestored: Bool?
    let detail: String?

    var checksPassed: Bool { serverAlive && ping && setGet && codeRestored != false }
}

/// Every run of one tool.
struct RedisCell {
    let tool: RedisTool
    var skipped: String?
    var probe: RedisRun?
    var requests = 0
    var runs: [RedisRun] = []
}

/// For each tool: a fresh server, the tool attached, redis-benchmark, the tool detached, the server
/// checked and stopped. One uncounted probe run per tool sizes its measured runs to about the same
/// duration (a tracer that costs 90% of the throughput gets fewer requests, not ten times longer);
/// then `rounds` rounds of every tool in an order rotated and reversed from round to round.
final class RedisSuite {
    let plan: RedisPlan
    let scratch: String
    let log: Progress

    init(plan: RedisPlan, scratch: String, log: Progress) {
        self.plan = plan
        self.scratch = scratch
        self.log = log
    }

    func run() throws -> [RedisCell] {
        var cells = plan.tools.map { RedisCell(tool: $0, skipped: $0.skipReason) }
        for i in cells.indices where cells[i].skipped == nil {
            let probe = try measure(cells[i].tool, requests: plan.probeRequests, label: "probe")
            cells[i].probe = probe
            log.note("probe  \(pad(cells[i].tool.id.rawValue)) \(describe(probe))")
            if let rps = probe.requestsPerSecond, probe.status == .ok {
                cells[i].requests = min(plan.maxRequests, max(plan.minRequests, Int(rps * plan.targetSeconds)))
            } else {
                cells[i].skipped = "\(probe.status.rawValue) in its first run: \(probe.detail ?? "")"
            }
        }
        for r in 0..<plan.rounds {
            log.note("round \(r + 1)/\(plan.rounds)")
            let rotated = (0..<cells.count).map { ($0 + r) % cells.count }
            for i in (r % 2 == 0 ? rotated : rotated.reversed()) where cells[i].skipped == nil {
                let run = try measure(cells[i].tool, requests: cells[i].requests, label: "round\(r + 1)")
                cells[i].runs.append(run)
                log.note("  \(pad(cells[i].tool.id.rawValue)) \(describe(run))")
                if run.status == .timeout { cells[i].skipped = "timed out in round \(r + 1)" }
            }
        }
        return cells
    }

    private func measure(_ tool: RedisTool, requests: Int, label: String) throws -> RedisRun {
        let name = "redis-\(tool.id.rawValue)-\(label)"
        let server = try RedisServer(server: plan.redisServer, cli: plan.redisCLI, scratch: scratch, name: "\(name)-server")
        defer { server.stop() }
        let functions = try server.libcFunctions()
        let original = functions.map { server.code(at: $0.address) }
        let target = RedisTool.Target(pid: server.pid, functions: functions, outputFile: "\(scratch)/\(name).trace")
        try? FileManager.default.removeItem(atPath: target.outputFile)
        defer { try? FileManager.default.removeItem(atPath: target.outputFile) }

        // A tool that never got as far as the benchmark (it is gone by the time this is called):
        // the server is checked all the same, since failing to attach must not break it either.
        func failed(_ detail: String, attach: Double? = nil) -> RedisRun {
            let alive = server.isRunning
            let answers = alive ? server.answersCorrectly() : (ping: false, setGet: false)
            let restored = alive ? zip(functions, original).allSatisfy { f, before in before != nil && server.code(at: f.address) == before } : nil
            return RedisRun(status: .failed, requests: requests, requestsPerSecond: nil, failedRequests: nil, benchmarkErrors: 0,
                            calls: nil, returns: nil, attachSeconds: attach, detachSeconds: nil, serverAlive: alive,
                            ping: answers.ping, setGet: answers.setGet, codeRestored: restored, detail: detail)
        }

        // Attach, and wait until the tool's probes are in.
        var tracer: RunningCommand?
        var attachSeconds: Double?
        if let command = tool.command {
            let started = Date()
            let t = try RunningCommand(command(target), scratch: scratch, name: name)
            tracer = t
            let deadline = started.addingTimeInterval(60)
            while true {
                if let o = t.wait(seconds: 0) {
                    return failed("exited with \(o.exitCode) before it had attached: \(lastLine(o.stderr))")
                }
                if !server.isRunning { _ = t.kill(); return failed("the server died while the tool attached") }
                var ready: Bool
                switch tool.readiness {
                case .none: ready = true
                case .codePatched(let marker):
                    ready = zip(functions, original).allSatisfy { f, before in
                        guard let before, let now = server.code(at: f.address) else { return false }
                        return now != before
                    }
                    if ready, let marker { ready = t.stdout.contains(marker) || t.stderr.contains(marker) }
                case .traceShows(let marker):
                    _ = server.ask(["PING"], timeout: 5)
                    ready = (Contender.occurrences(of: marker, inFile: target.outputFile) ?? 0) > 0
                }
                if ready { break }
                if Date() > deadline {
                    _ = t.stop(grace: 10)
                    return failed("not attached after 60 s: \(lastLine(t.stderr))")
                }
                usleep(50_000)
            }
            attachSeconds = Date().timeIntervalSince(started)
            // The server runs again (an attaching tracer may still hold it for a moment).
            guard server.ask(["PING"], timeout: 30) == "PONG" else {
                _ = t.stop(grace: 30)
                return failed("the server did not answer PING once the tool had attached", attach: attachSeconds)
            }
        }

        let bench = try Command.run([plan.redisBenchmark, "-h", "127.0.0.1", "-p", "\(server.port)", "-t", "get",
                                     "-c", "\(plan.clients)", "-n", "\(requests)", "--csv"],
                                    timeout: plan.timeout, scratch: scratch, name: "\(name)-benchmark")

        // Detach; what the tool printed at the end is its count.
        var detachSeconds: Double?
        var toolOutcome: Command.Outcome?
        var notes: [String] = []
        if let tracer {
            let asked = Date()
            let o = tracer.stop(signal: SIGINT, grace: 60, resendEvery: tool.resendsStopSignal ? 1 : nil)
            toolOutcome = o
            detachSeconds = Date().timeIntervalSince(asked)
            if o.timedOut {
                notes.append("the tool did not exit within 60 s of SIGINT and was killed")
            } else if o.exitCode != 0 && o.exitCode != 128 + SIGINT {
                notes.append("the tool exited with \(o.exitCode): \(lastLine(o.stderr))")
            }
        }

        // The server after the tool has gone.
        let alive = server.isRunning
        let answers = alive ? server.answersCorrectly() : (ping: false, setGet: false)
        let restored = alive ? zip(functions, original).allSatisfy { f, before in before != nil && server.code(at: f.address) == before } : nil
        let stats = alive ? server.getStatistics() : nil
        let counts = toolOutcome.map { tool.counts(target, $0) } ?? (calls: nil, returns: nil)
        if !alive { notes.append("the server died (exit \(server.exitCode.map(String.init) ?? "?"))") }
        if alive && !answers.ping { notes.append("no PONG after detach") }
        if alive && !answers.setGet { notes.append("SET/GET failed after detach") }
        if restored == false { notes.append("libc read/write not restored") }

        let text = bench.stdout + "\n" + bench.stderr
        let rps = text.split(separator: "\n").first { $0.hasPrefix("\"GET\",") }
            .flatMap { $0.split(separator: ",").dropFirst().first }
            .flatMap { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) }
        let errorLines = text.split(separator: "\n").filter { $0.range(of: "error", options: .caseInsensitive) != nil }.count
        let failedRequests = stats.map { max(0, requests - $0.calls) + $0.failed }

        let status: RedisRun.Status
        if bench.timedOut {
            status = .timeout
            notes.insert("redis-benchmark killed after \(Int(plan.timeout)) s", at: 0)
        } else if bench.exitCode != 0 || rps == nil {
            status = .failed
            notes.insert("redis-benchmark exited with \(bench.exitCode): \(lastLine(bench.stderr.isEmpty ? bench.stdout : bench.stderr))", at: 0)
        } else {
            status = alive && answers.ping && answers.setGet ? .ok : .failed
        }
        return RedisRun(status: status, requests: requests, requestsPerSecond: rps, failedRequests: failedRequests,
                        benchmarkErrors: errorLines, calls: counts.calls, returns: counts.returns,
                        attachSeconds: attachSeconds, detachSeconds: detachSeconds, serverAlive: alive,
                        ping: answers.ping, setGet: answers.setGet, codeRestored: restored,
                        detail: notes.isEmpty ? nil : notes.joined(separator: "; "))
    }

    private func lastLine(_ text: String) -> String {
        text.split(separator: "\n").last.map(String.init) ?? ""
    }

    private func pad(_ s: String) -> String { s.padding(toLength: 14, withPad: " ", startingAt: 0) }

    private func describe(_ r: RedisRun) -> String {
        let rps = r.requestsPerSecond.map { String(format: "%.0f req/s", $0) } ?? "-"
        let seen = r.calls.map { String(format: "%.2f calls/request", Double($0) / Double(max(1, r.requests))) } ?? ""
        return "\(r.status.rawValue)  \(r.requests) requests  \(rps)  failed \(r.failedRequests.map(String.init) ?? "?")  \(seen)"
            + (r.attachSeconds.map { String(format: "  attach %.1f s", $0) } ?? "")
            + (r.detachSeconds.map { String(format: "  detach %.1f s", $0) } ?? "")
            + (r.checksPassed ? "" : "  CHECKS FAILED")
            + (r.detail.map { "  (\($0))" } ?? "")
    }
}

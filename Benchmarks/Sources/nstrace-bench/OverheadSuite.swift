import Foundation

/// What the overhead suite runs.
struct SuitePlan {
    let workloads: [Workload]
    let threadCounts: [Int]
    let callsPerThread: Int
    let rounds: Int
    let timeout: Double
    let contenders: [Contender]
    /// Every run, tracer and workload alike, on one CPU (`taskset -c 0`): ptrace stops then cost no
    /// cross-CPU wake-up, and the figures stop following which CPU the scheduler picked.
    var pinned = false
}

/// One run of one contender.
struct RunRecord: Codable {
    enum Status: String, Codable { case ok, timeout, failed }

    let status: Status
    let wallSeconds: Double
    /// The workload's own timing of its calls; nil when it did not finish.
    let loopSeconds: Double?
    let calls: Int?
    let seen: Int?
    /// Returns the tool reported, for tools that count them.
    var returns: Int? = nil
    /// Why it failed: the exit code and the last line of stderr.
    let detail: String?
    /// The share of the machine's CPU time the hypervisor stole during the run (/proc/stat), in percent.
    var stealPercent: Double? = nil
}

/// Every run of one contender on one workload at one thread count.
struct Cell {
    let workload: Workload
    let threads: Int
    let contender: Contender
    var runs: [RunRecord] = []
    /// Why it was not run at all.
    var skipped: String?
}

/// Runs every contender on the same workload in the same run: for each workload and thread count,
/// `rounds` rounds of all contenders, in an order rotated and reversed from round to round so that
/// none always goes first or always follows the same neighbour (a machine's slow drift, a cache warmed
/// by the one before, fall on everyone alike).
final class OverheadSuite {
    let plan: SuitePlan
    let programs: Programs
    let log: Progress

    init(plan: SuitePlan, programs: Programs, log: Progress) {
        self.plan = plan
        self.programs = programs
        self.log = log
    }

    func run() throws -> [Cell] {
        var cells: [Cell] = []
        let total = plan.workloads.count * plan.threadCounts.count * plan.rounds
        var round = 0
        // A contender that timed out is not run again at higher thread counts of the same workload:
        // it would only time out again, slower.
        var givenUp: [Workload: [ContenderID: String]] = [:]
        // One untimed run first, so the page cache and the dynamic linker's files are warm for all.
        _ = try? Command.run(Workload.tiny.command(programs, threads: 1, calls: 1), timeout: 30,
                             scratch: programs.directory, name: "warm-up")

        for workload in plan.workloads {
            for threads in plan.threadCounts {
                var row = plan.contenders.map { Cell(workload: workload, threads: threads, contender: $0, skipped: $0.skipReason) }
                for (i, cell) in row.enumerated() where cell.skipped == nil {
                    if let reason = givenUp[workload]?[cell.contender.id] { row[i].skipped = reason }
                }
                for r in 0..<plan.rounds {
                    round += 1
                    log.note("round \(round)/\(total): \(workload.rawValue), \(threads) thread\(threads == 1 ? "" : "s")")
                    // A timeout is not retried in later rounds either.
                    for i in order(count: row.count, round: r)
                    where row[i].skipped == nil && !row[i].runs.contains(where: { $0.status == .timeout }) {
                        let record = try measure(row[i].contender, workload: workload, threads: threads)
                        row[i].runs.append(record)
                        log.note("  \(row[i].contender.id.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) \(describe(record))")
                        if record.status == .timeout {
                            givenUp[workload, default: [:]][row[i].contender.id] = "timed out at \(threads) threads"
                        }
                    }
                }
                cells += row
            }
        }
        return cells
    }

    /// Round r: the contenders rotated by r, reversed on odd rounds.
    private func order(count: Int, round r: Int) -> [Int] {
        let rotated = (0..<count).map { ($0 + r) % count }
        return r % 2 == 0 ? rotated : rotated.reversed()
    }

    private func measure(_ contender: Contender, workload: Workload, threads: Int) throws -> RunRecord {
        let name = "\(contender.id.rawValue)-\(workload.rawValue)-\(threads)"
        let resultFile = "\(programs.directory)/\(name).result"
        let spec = Contender.RunSpec(workload: workload, threads: threads, calls: plan.callsPerThread, programs: programs,
                                     traceFile: "\(programs.directory)/\(name).trace")
        try? FileManager.default.removeItem(atPath: resultFile)
        try? FileManager.default.removeItem(atPath: spec.traceFile)
        let command = (plan.pinned ? ["taskset", "-c", "0"] : []) + contender.command(spec)
        let before = CPUTimes.now()
        let outcome = try Command.run(command, environment: ["NSB_RESULT": resultFile],
                                      timeout: plan.timeout, scratch: programs.directory, name: name)
        let steal = before.flatMap { b in CPUTimes.now().map { $0.stealPercent(since: b) } }
        let truth = (try? String(contentsOfFile: resultFile, encoding: .utf8)).flatMap(GroundTruth.init)
        let seen = contender.seen(spec, outcome)
        let returns = contender.returns?(spec, outcome)
        try? FileManager.default.removeItem(atPath: spec.traceFile)
        if outcome.timedOut {
            return RunRecord(status: .timeout, wallSeconds: outcome.wallSeconds, loopSeconds: nil, calls: truth?.calls,
                             seen: seen, returns: returns, detail: "killed after \(Int(plan.timeout)) s", stealPercent: steal)
        }
        guard outcome.exitCode == 0, let truth else {
            let last = outcome.stderr.split(separator: "\n").last.map(String.init) ?? ""
            return RunRecord(status: .failed, wallSeconds: outcome.wallSeconds, loopSeconds: nil, calls: truth?.calls,
                             seen: seen, returns: returns, detail: "exit \(outcome.exitCode)\(truth == nil ? ", no ground truth" : ""): \(last)",
                             stealPercent: steal)
        }
        return RunRecord(status: .ok, wallSeconds: outcome.wallSeconds, loopSeconds: Double(truth.loopNanoseconds) / 1e9,
                         calls: truth.calls, seen: seen, returns: returns, detail: nil, stealPercent: steal)
    }

    private func describe(_ r: RunRecord) -> String {
        let seen = r.seen.map { "\($0)" } ?? "-"
        let calls = r.calls.map { "\($0)" } ?? "?"
        let loop = r.loopSeconds.map { String(format: "%.4f", $0) } ?? "-"
        return "\(r.status.rawValue)  wall \(String(format: "%.3f", r.wallSeconds)) s  loop \(loop) s  seen \(seen)/\(calls)"
            + (r.returns.map { "  returns \($0)" } ?? "")
            + (r.stealPercent.map { String(format: "  steal %.1f%%", $0) } ?? "")
            + (r.detail.map { "  (\($0))" } ?? "")
    }
}

import Foundation
import Glibc
import Symbols
import Testing
import TestSupport

/// The inline strategy on what only it has: a ring that can fill, pads that outlive nstrace, and
/// windows beside another tracer's uprobes. (Every test that runs the jump strategy runs it too.)
@Suite(.serialized) struct InlineStrategy {
    static let valuesFunctions = ["vx_ints", "vx_strings", "vx_floats", "vx_many", "vx_name", "vx_pair_sum", "vx_tail", "vx_leaf"]

    func values(cet: Bool) throws -> String {
        try Fixtures.build("values", flags: ["-O1", "-g", "-pthread"] + (cet ? ["-fcf-protection=full"] : ["-fcf-protection=none"]),
                           variant: cet ? "cet" : "plain")
    }

    func file(_ name: String) -> String { Paths.scratch.appendingPathComponent(name).path }

    /// Which of `functions` `nstrace list` says are traced with no int3 at all.
    func fullyInline(_ binary: String, _ pattern: String) throws -> Set<String> {
        let listing = try nstrace(["list", "--json", binary, pattern])
        #expect(listing.status == 0, "\(listing)")
        return Set(try jsonLines(listing.stdout).filter { $0["inline"] as? Bool == true }.compactMap { $0["function"] as? String })
    }

    /// (function, arguments) of every call and (function, value) of every return, as multisets.
    func reported(_ log: TraceLog) -> [String: Int] {
        var seen: [String: Int] = [:]
        for event in log.events {
            guard let kind = event["event"] as? String, let function = event["function"] as? String else { continue }
            let detail: Any?
            switch kind {
            case "call": detail = event["args"]
            case "return": detail = event["retval"]
            default: continue
            }
            let json = (try? JSONSerialization.data(withJSONObject: ["d": detail ?? NSNull()], options: [.sortedKeys]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "?"
            seen["\(kind) \(function) \(json)", default: 0] += 1
        }
        return seen
    }

    /// `^vx_tail$` alone: the function it tail-calls is not traced, and its returns are watched only
    /// to see vx_tail's.
    @Test(arguments: [false, true], ["^vx_", "^vx_tail$"])
    func inlineAndJumpReportTheSameCallsArgumentsAndResults(cet: Bool, pattern: String) throws {
        let binary = try values(cet: cet)
        var logs: [String: TraceLog] = [:]
        var made: [String: Int] = [:]
        for strategy in ["jump", "inline"] {
            let trace = file("values-\(strategy)-\(cet).jsonl")
            let result = try nstrace(["--strategy", strategy, "--json", "-o", trace, pattern, "--", binary, "calls", "4", "50"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdoutLines.contains("wrong 0"), "\(result)")
            let log = try TraceLog(file: trace)
            made = fixtureCounts(result.stdout).filter { $0.key.range(of: pattern, options: .regularExpression) != nil }
            #expect(log.calls() == made && log.returns() == made, "\(strategy): calls seen vs made")
            logs[strategy] = log
        }
        let jump = reported(try #require(logs["jump"])), inline = reported(try #require(logs["inline"]))
        #expect(jump.values.reduce(0, +) == 2 * made.values.reduce(0, +) && !made.isEmpty)
        #expect(jump == inline, "differences: \(Set(jump.keys).symmetricDifference(inline.keys).prefix(6))")
        if cet {
            // With endbr64 first, every one of them is inline: the pads read strings, stack arguments,
            // doubles and a struct themselves, and see a tail call return where its callee does.
            #expect(try fullyInline(binary, pattern).isSuperset(of: made.keys))
        }
    }

    /// `--debug`'s closing count: (breakpoint hits, hits whose registers came from a stop slot).
    func slotCounts(_ stderr: String) -> (hits: Int, fromSlots: Int)? {
        guard let line = stderr.split(separator: "\n").last(where: { $0.hasSuffix("with registers from stop slots") }) else { return nil }
        let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        guard numbers.count >= 3 else { return nil }
        return (numbers[numbers.count - 2], numbers[numbers.count - 1])
    }

    /// Under the jump strategy a trap pad leaves the thread's registers in its stop slot before the
    /// int3, and the stop needs no PTRACE_GETREGS. With every thread's tid mapped to one slot
    /// (`NSTRACE_TEST_STOP_SLOTS=1`), a thread that finds the slot held by another stops without and
    /// is read through the kernel: both ways report exactly what the inline strategy reports.
    @Test func trapPadsLeaveRegistersInStopSlotsAndThreadsThatShareOneFallBack() throws {
        let binary = try values(cet: true)
        var reports: [String: [String: Int]] = [:]
        for (name, environment) in [("inline", [String: String]()), ("jump", [:]), ("jump-one-slot", ["NSTRACE_TEST_STOP_SLOTS": "1"])] {
            let trace = file("slots-\(name).jsonl")
            let strategy = name == "inline" ? "inline" : "jump"
            let result = try nstrace(["--strategy", strategy, "--debug", "--json", "-o", trace, "^vx_", "--", binary, "calls", "4", "50"],
                                     environment: environment)
            #expect(result.status == 0 && result.stdoutLines.contains("wrong 0"), "\(result.stdout)")
            let log = try TraceLog(file: trace)
            let made = fixtureCounts(result.stdout).filter { $0.key.hasPrefix("vx_") }
            #expect(!made.isEmpty && log.calls() == made && log.returns() == made, "\(name): calls seen vs made")
            reports[name] = reported(log)
            guard strategy == "jump" else { continue }
            let counts = try #require(slotCounts(result.stderr), "no closing count in --debug")
            #expect(counts.fromSlots > 0 && counts.fromSlots <= counts.hits, "\(name): \(counts)")
            // Both ways of showing a slot's stop ran: from its words (vx_ints, vx_hot: numbers in
            // registers) and through the general path (strings, floats, a struct, stack arguments).
            let words = result.stderr.split(separator: "\n").last { $0.hasSuffix("shown straight from their slot's words") }
            let shown = words.flatMap { $0.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.last } ?? -1
            #expect(shown > 0 && shown < counts.fromSlots, "\(name): \(shown) of \(counts.fromSlots) from slots shown from words")
        }
        let inline = reports["inline"] ?? [:]
        for name in ["jump", "jump-one-slot"] {
            let report = reports[name] ?? [:]
            let same = report == inline
            #expect(same, "\(name) differs from inline: \(Set(report.keys).symmetricDifference(inline.keys).prefix(4))")
        }

        // Four threads calling as fast as they can through one slot: many stops find it held (counted
        // as hits without registers from a slot), and none is lost.
        let result = try nstrace(["--strategy", "jump", "--debug", "-c", "^vx_hot$", "--", binary, "hot", "4", "2000"],
                                 environment: ["NSTRACE_TEST_STOP_SLOTS": "1"])
        #expect(result.status == 0 && result.stdoutLines.contains("wrong 0"), "\(result.stdout)")
        let row = result.stderr.split(separator: "\n").first { $0.hasPrefix("vx_hot ") }
        #expect(row?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first == "8000", "\(row ?? "no row")")
        let counts = try #require(slotCounts(result.stderr))
        #expect(counts.fromSlots > 0 && counts.fromSlots < counts.hits, "\(counts)")
    }

    /// A signal storm whose handler calls a traced function, under the jump strategy with the default
    /// slots and with every tid on one slot: signals land while pads write slots, handlers' pads meet
    /// slots their thread still holds. Every call's arguments and every result are the program's own,
    /// each exactly as often as it made them.
    @Test(arguments: ["1", "1024"])
    func stopSlotsUnderASignalStormWhoseHandlerIsTracedReportEveryValue(slots: String) throws {
        // With endbr64 first, both functions are whole windows: trap pads at entry and `ret`.
        let binary = try Fixtures.build("slots", flags: ["-O1", "-g", "-pthread", "-fcf-protection=full"])
        #expect(try fullyInline(binary, "^sl_") == ["sl_work", "sl_in_handler"])
        let trace = file("slots-storm-\(slots).jsonl")
        let threads = 4, calls = 1000
        let result = try nstrace(["--strategy", "jump", "--json", "-o", trace, "^sl_", "--", binary, "\(threads)", "\(calls)"],
                                 timeout: 300, environment: ["NSTRACE_TEST_STOP_SLOTS": slots])
        #expect(result.status == 0 && result.stdoutLines.contains("wrong 0"), "\(result)")
        let made = fixtureCounts(result.stdout)
        #expect(made["sl_work"] == threads * calls && (made["sl_in_handler"] ?? 0) > 0, "\(made)")
        let log = try TraceLog(file: trace)
        #expect(log.calls() == made && log.returns() == made, "seen \(log.calls()), returns \(log.returns()), made \(made)")

        func ints(_ event: [String: Any]) -> [Int] {
            ((event["args"] as? [[String: Any]]) ?? []).compactMap { $0["value"] as? Int }
        }
        var pairs: [[Int]: Int] = [:], results: [Int: Int] = [:], handlerArgs: [[Int]: Int] = [:], handlerResults: [Int: Int] = [:]
        for event in log.events {
            switch (event["event"] as? String, event["function"] as? String) {
            case ("call", "sl_work"): pairs[ints(event), default: 0] += 1
            case ("return", "sl_work"): results[event["retval"] as? Int ?? -1, default: 0] += 1
            case ("call", "sl_in_handler"): handlerArgs[ints(event), default: 0] += 1
            case ("return", "sl_in_handler"): handlerResults[event["retval"] as? Int ?? -1, default: 0] += 1
            default: break
            }
        }
        var expectedPairs: [[Int]: Int] = [:], expectedResults: [Int: Int] = [:]
        for t in 0..<threads {
            for i in 0..<calls {
                expectedPairs[[i, t], default: 0] += 1
                expectedResults[i + t, default: 0] += 1
            }
        }
        let samePairs = pairs == expectedPairs, sameResults = results == expectedResults
        #expect(samePairs, "sl_work arguments: \(Set(pairs.keys).symmetricDifference(expectedPairs.keys).prefix(6))")
        #expect(sameResults, "sl_work results: \(results.filter { expectedResults[$0.key] != $0.value }.prefix(6))")
        let handled = made["sl_in_handler"] ?? -1
        #expect(handlerArgs == [[7]: handled] && handlerResults == [14: handled], "\(handlerArgs) \(handlerResults)")
    }

    /// `--lossless`: a million calls from four threads, into a summary and into JSON Lines, every one
    /// of them seen, as many as the fixture says it made, and nothing counted lost.
    @Test func losslessRingMakesTheProgramWaitAndMissesNothing() throws {
        let binary = try values(cet: true)
        #expect(try fullyInline(binary, "^vx_hot$") == ["vx_hot"])
        let summaryFile = file("hot-lossless.txt")
        let (_, made) = try millionCalls(binary, ["--lossless", "-c"], into: summaryFile)
        let summary = try String(contentsOfFile: summaryFile, encoding: .utf8)
        #expect(Self.summaryCalls(summary) == made, "\(summary.prefix(400))")
        #expect(!summary.contains("lost"), "\(summary.prefix(400))")

        let trace = file("hot-lossless.jsonl")
        let (jsonRun, madeThen) = try millionCalls(binary, ["--lossless", "--json"], into: trace)
        let tally = try TraceTally(file: trace)
        try? FileManager.default.removeItem(atPath: trace)
        #expect(tally.calls["vx_hot"] == madeThen && tally.returns["vx_hot"] == madeThen,
                "calls \(tally.calls), returns \(tally.returns), made \(madeThen)")
        #expect(tally.lost.isEmpty, "\(tally.lost)")
        #expect(!jsonRun.stderr.contains("lost"), "the exit notice: \(jsonRun.stderr)")
    }

    /// nstrace with `options` into `output`, on four threads calling vx_hot 250 000 times each: its
    /// result, and how many calls the fixture says it made.
    private func millionCalls(_ binary: String, _ options: [String], into output: String) throws -> (CommandResult, made: Int) {
        let result = try nstrace(["--strategy", "inline"] + options + ["-o", output, "^vx_hot$", "--", binary, "hot", "4", "250000"],
                                 timeout: 600)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong 0"))
        let made = fixtureCounts(result.stdout)["vx_hot"] ?? -1
        #expect(made >= 1_000_000, "the fixture's own count: \(result.stdout.prefix(200))")
        return (result, made)
    }

    /// The calls column of vx_hot's row in a summary; nil without one.
    private static func summaryCalls(_ summary: String) -> Int? {
        let row = summary.split(separator: "\n").first { $0.hasPrefix("vx_hot ") }
        return row?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
    }

    /// A million calls, as fast as four threads make them, into JSON Lines and into a summary: what is
    /// seen and what is counted lost (by the pads when the ring is full, by nstrace when its output
    /// falls behind) add up to every call the fixture says it made, in both.
    @Test func aMillionCallsAreSeenOrCountedLostInJSONAndInTheSummary() throws {
        let binary = try values(cet: true)
        let trace = file("hot-lossy.jsonl")
        let (result, made) = try millionCalls(binary, ["--json"], into: trace)
        let tally = try TraceTally(file: trace)
        try? FileManager.default.removeItem(atPath: trace)
        // Seen and lost are counted apart, by nstrace and by the pads: together, every call made.
        let seen = tally.calls["vx_hot"] ?? 0
        #expect(seen > 0)
        #expect(seen + tally.lostCalls == made, "seen \(seen), lost \(tally.lostCalls), made \(made)")
        // A return is seen, or counted lost, or belongs to a call that was lost (and is not shown alone).
        let returns = (tally.returns["vx_hot"] ?? 0) + tally.lostReturns
        #expect(returns <= made && returns + tally.lostCalls >= made,
                "returns \(tally.returns["vx_hot"] ?? 0), lost returns \(tally.lostReturns), lost calls \(tally.lostCalls)")
        if tally.lostCalls > 0 {
            #expect(result.stderr.contains("events lost"), "the exit notice: \(result.stderr)")
        }

        let summaryFile = file("hot-lossy.txt")
        let (_, madeThen) = try millionCalls(binary, ["-c"], into: summaryFile)
        let summary = try String(contentsOfFile: summaryFile, encoding: .utf8)
        let calls = Self.summaryCalls(summary) ?? 0
        // "N events lost (C calls, R returns): cause" for each cause.
        let lostCalls = summary.split(separator: "\n").compactMap { line -> Int? in
            guard line.contains("events lost ("), let open = line.firstIndex(of: "(") else { return nil }
            return Int(line[line.index(after: open)...].prefix { $0.isNumber })
        }.reduce(0, +)
        #expect(calls + lostCalls == madeThen, "made \(madeThen): \(summary.prefix(600))")
    }

    /// When the renderer cannot keep up (made slow on purpose with the test hook), the engine goes on
    /// reading the ring and hands the renderer batches without their calls: counted, under their own
    /// cause, and together with what was seen and what the ring lost, every call made.
    @Test func aRendererThatFallsBehindCountsWhatItCouldNotTake() throws {
        let binary = try values(cet: true)
        let trace = file("slow-renderer.jsonl")
        // A ring large enough for every record: what is lost is lost on the way out, not in the ring.
        let result = try nstrace(["--strategy", "inline", "--ring-size", "256", "--json", "-o", trace, "^vx_hot$", "--",
                                  binary, "hot", "4", "100000"],
                                 timeout: 600, environment: ["NSTRACE_TEST_RENDER_DELAY_MS": "150"])
        #expect(result.status == 0, "\(result)")
        let made = fixtureCounts(result.stdout)["vx_hot"] ?? -1
        let tally = try TraceTally(file: trace)
        let seen = tally.calls["vx_hot"] ?? 0
        #expect(made == 400_000 && seen + tally.lostCalls == made, "made \(made), seen \(seen), lost \(tally.lostCalls)")
        let behind = tally.lost.filter { ($0["cause"] as? String)?.contains("output fell behind") == true }
        #expect(behind.compactMap { $0["calls"] as? Int }.reduce(0, +) > 0, "\(tally.lost)")
        #expect(result.stderr.contains("output fell behind"), "the exit notice: \(result.stderr)")
    }

    /// With every traced site a window, nothing of nstrace's can kill the program: its pads go on
    /// writing into the ring (and counting what no one reads) after nstrace is SIGKILLed.
    @Test func sigkilledNstraceLeavesAnInlineTracedServerRunningCorrectly() throws {
        let server = try Fixtures.build("server", flags: ["-O1", "-g", "-pthread"])
        #expect(try fullyInline(server, "^srv_(handle|helper)$") == ["srv_handle", "srv_helper"])
        let fixture = try RunningFixture(server, ["4"])
        defer { fixture.stop() }
        let trace = file("sigkill.jsonl")
        let background = try BackgroundTrace(["--strategy", "inline", "--json", "-o", trace, "-p", "\(fixture.pid)",
                                              "^srv_(handle|helper)$"], outputFile: trace)
        #expect(background.waitForLines(containing: "\"return\"", count: 200))
        let log = try TraceLog(growingFile: trace)
        #expect(log.of("notice").isEmpty, "\(log.of("notice"))")
        background.process.kill(SIGKILL)
        _ = background.process.wait(timeout: 30)
        #expect(waitFor { tracers(of: fixture.pid).values.allSatisfy { $0 == 0 } }, "still traced after nstrace died")
        // The server goes on, right, through the pads nstrace left.
        fixture.skipPrinted()
        for _ in 0..<10 { #expect(fixture.waitForLine(containing: "tick") != nil, "the server stopped: \(fixture.state)") }
        #expect(!fixture.hasPrinted("BAD"))
        #expect(fixture.isRunning, "\(fixture.state)")
        // A later nstrace attaches to it as to any other process, and leaves it as it found it.
        let again = try BackgroundTrace(["--strategy", "inline", "--json", "-o", file("sigkill-2.jsonl"), "-p", "\(fixture.pid)",
                                         "^srv_(handle|helper)$"], outputFile: file("sigkill-2.jsonl"))
        #expect(again.waitForLines(containing: "\"return\"", count: 50))
        let end = try #require(again.stop())
        #expect(end.status == 0, "\(end.stderr)")
        // It took the windows the killed one left for its own, and put the file's code back.
        try expectTextUntouched(fixture.pid)
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil, "\(fixture.state)")
        #expect(!fixture.hasPrinted("BAD"))
    }

    /// A uprobe is an int3 the kernel writes over a function's first byte (and puts back when it is
    /// removed); inline windows start after the first instruction, so both tracers see every call,
    /// whichever came first, and the one that leaves last still sees them.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/bpftrace") && getuid() == 0,
                   "needs bpftrace and root"))
    func uprobesOnTracedFunctionsBeforeAndAfterNstraceBothSeeEveryCall() throws {
        let binary = try values(cet: true)
        #expect(try fullyInline(binary, "^vx_(hot|ints)$") == ["vx_hot", "vx_ints"])
        let fixture = try RunningFixture(binary, ["gate", "4", "2000"])
        defer { fixture.stop() }
        func bpftrace(_ function: String) throws -> (Subprocess, LinesReader) {
            // BEGIN runs once every probe is attached.
            let p = try Subprocess("/usr/bin/bpftrace", ["-e", "BEGIN { printf(\"live\\n\"); } uprobe:\(binary):\(function) { @c = count(); }"],
                                   stdout: .pipe, stderr: .pipe)
            let reader = LinesReader(p.stdoutHandle)
            return (p, reader)
        }
        // One uprobe before nstrace attaches (its int3 is in memory when nstrace reads the code)...
        let (before, beforeOut) = try bpftrace("vx_hot")
        defer { if before.isRunning { before.kill(SIGKILL) } }
        #expect(beforeOut.waitForLine(containing: "live") != nil)
        let trace = file("uprobes.jsonl")
        let background = try BackgroundTrace(["--strategy", "inline", "--json", "-o", trace, "-p", "\(fixture.pid)",
                                              "^vx_hot$"], outputFile: trace)
        // nstrace has patched once the jump is in memory, just after the endbr64 the uprobe sits on.
        let listing = try jsonLines(try nstrace(["list", "--json", "-p", "\(fixture.pid)", "^vx_hot$"]).stdout)
        let address = try #require((listing.first?["address"] as? String).flatMap { UInt64($0.dropFirst(2), radix: 16) })
        #expect(waitFor { memory(of: fixture.pid, at: address + 4, count: 1) == [0xe9] }, "the window never appeared")
        #expect(memory(of: fixture.pid, at: address, count: 1) == [0xcc], "the first uprobe's int3 is gone")
        // ...one after.
        let (after, afterOut) = try bpftrace("vx_hot")
        defer { if after.isRunning { after.kill(SIGKILL) } }
        #expect(afterOut.waitForLine(containing: "live") != nil)
        kill(fixture.pid, SIGUSR1)
        #expect(fixture.waitForLine(containing: "batch 1 done") != nil)
        // Both uprobes go; nstrace stays and sees the next batch too.
        // bpftrace detaches its uprobes and prints its map on SIGINT; on a loaded machine that can take
        // a while.
        for p in [before, after] {
            p.kill(SIGINT)
            #expect(p.wait(timeout: 120) != nil, "bpftrace did not exit after SIGINT")
        }
        let counts = [beforeOut, afterOut].map { out in
            out.lines(timeout: 120).first { $0.hasPrefix("@c: ") }.flatMap { Int($0.dropFirst(4)) }
        }
        #expect(counts == [8000, 8000], "bpftrace saw \(counts): \(beforeOut.lines(timeout: 1)) \(afterOut.lines(timeout: 1))")
        kill(fixture.pid, SIGUSR1)
        #expect(fixture.waitForLine(containing: "batch 2 done") != nil)
        let end = try #require(background.stop())
        #expect(end.status == 0, "\(end.stderr)")
        let log = try TraceLog(file: trace)
        #expect(log.calls()["vx_hot"] == 16_000 && log.returns()["vx_hot"] == 16_000,
                "nstrace saw \(log.calls()) calls, \(log.returns()) returns")
        #expect(log.of("lost").isEmpty)
        kill(fixture.pid, SIGTERM)
        #expect(fixture.waitForLine(containing: "wrong 0") != nil)
    }

    /// A uprobe put on an instruction that holds nstrace's int3 takes the traps there while it lives,
    /// and when it goes the kernel writes the file's byte back over nstrace's int3. nstrace must say
    /// both, put its int3 back within its check period, and see the calls after.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/bpftrace") && getuid() == 0,
                   "needs bpftrace and root"))
    func aUprobeThatCameAndWentOverAnInt3IsToldAndTheInt3PutBack() throws {
        let binary = try Fixtures.build("probed", flags: ["-O1", "-g"])
        let fixture = try RunningFixture(binary)
        defer { fixture.stop() }
        let trace = file("probed.jsonl")
        // The step strategy keeps an int3 on the first instruction, where the uprobe goes.
        let background = try BackgroundTrace(["--strategy", "step", "--json", "-o", trace, "-p", "\(fixture.pid)", "^pr_work$"],
                                             outputFile: trace)
        #expect(background.waitForLines(containing: "\"call\"", count: 20))
        let bpftrace = try Subprocess("/usr/bin/bpftrace", ["-e", "BEGIN { printf(\"live\\n\"); } uprobe:\(binary):pr_work { @c = count(); }"],
                                      stdout: .pipe, stderr: .pipe)
        defer { if bpftrace.isRunning { bpftrace.kill(SIGKILL) } }
        let out = LinesReader(bpftrace.stdoutHandle)
        #expect(out.waitForLine(containing: "live") != nil)
        #expect(background.waitForLines(containing: "a uprobe", count: 1), "the uprobe's arrival was not told")
        bpftrace.kill(SIGINT)
        #expect(bpftrace.wait(timeout: 120) != nil, "bpftrace did not exit after SIGINT")
        let uprobeCalls = out.lines(timeout: 60).first { $0.hasPrefix("@c: ") }.flatMap { Int($0.dropFirst(4)) } ?? 0
        #expect(uprobeCalls > 0, "the uprobe saw nothing: the test proves nothing")
        #expect(background.waitForLines(containing: "was put back", count: 1), "the overwritten int3 was not noticed")
        // Calls are seen again after the int3 is back.
        let seenAtPutBack = try TraceLog(growingFile: trace).calls()["pr_work"] ?? 0
        #expect(background.waitForLines(containing: "\"call\"", count: seenAtPutBack + 50), "no call seen after the put-back")
        let end = try #require(background.stop())
        #expect(end.status == 0, "\(end.stderr)")
        try expectTextUntouched(fixture.pid)
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "calls pr_work") != nil)
        #expect(!fixture.hasPrinted("BAD"))
    }
}

/// Lines of a child's stdout, collected as they come.
final class LinesReader: @unchecked Sendable {
    private let condition = NSCondition()
    private var collected: [String] = []
    private var finished = false

    init(_ handle: FileHandle?) {
        guard let handle else { return }
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let data = handle.availableData
                if data.isEmpty {
                    condition.lock()
                    finished = true
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                pending.append(data)
                while let newline = pending.firstIndex(of: 0x0a) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    condition.lock()
                    collected.append(line)
                    condition.broadcast()
                    condition.unlock()
                }
            }
        }
    }

    func waitForLine(containing text: String, timeout: TimeInterval = 30) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let line = collected.first(where: { $0.contains(text) }) { return line }
            if !condition.wait(until: deadline) { return nil }
        }
    }

    /// Everything, once the child has closed its end (it exited), or what came within `timeout`.
    func lines(timeout: TimeInterval = 30) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !finished, condition.wait(until: deadline) {}
        return collected
    }
}

/// Bytes of a process's memory, read through /proc (nil when they cannot be).
func memory(of pid: pid_t, at address: UInt64, count: Int) -> [UInt8]? {
    let fd = open("/proc/\(pid)/mem", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: count)
    guard pread(fd, &bytes, count, off_t(Int64(bitPattern: address))) == count else { return nil }
    return bytes
}

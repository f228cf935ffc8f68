import Foundation
import Glibc
import Testing
import TestSupport

/// Go programs: every goroutine's calls and returns, across migration between threads, stack growth
/// and recovered panics; SIGURG passed through; a Go server attached to and left serving.
@Suite(.serialized, .enabled(if: Fixtures.goCompiler != nil, "go is not installed (Scripts/setup installs golang-go)"))
struct GoPrograms {
    static let traced = "^main\\.(work|recurse|mayPanic|guarded|sum)$"

    @Test(arguments: ["inline", "jump", "step"])
    func everyGoroutinesCallsAndReturnsAreSeenExactly(strategy: String) throws {
        let binary = try Fixtures.buildGo("goworkers")
        let untraced = try run(binary, ["work", "8", "60"], environment: ["GOMAXPROCS": "4"])
        #expect(untraced.status == 0, "\(untraced)")
        let file = Paths.scratch.appendingPathComponent("go-\(strategy).jsonl").path
        let chrome = Paths.scratch.appendingPathComponent("go-\(strategy).chrome.json").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", file, "--chrome-trace", chrome, Self.traced, "--",
                                  binary, "work", "8", "60"],
                                 timeout: 300, environment: ["GOMAXPROCS": "4"])
        #expect(result.status == 0, "\(result)")
        // The program says the same with and without nstrace.
        #expect(result.stdout == untraced.stdout)
        #expect(result.stdoutLines.contains("results ok"))

        let log = try TraceLog(file: file)
        let expected = fixtureCounts(result.stdout)
        let panics = try #require(result.stdoutLines.first { $0.hasPrefix("panics ") }.flatMap { Int($0.dropFirst(7)) })
        #expect(panics > 0 && expected["main.recurse"] ?? 0 > 1000)
        #expect(log.calls() == expected, "calls seen vs calls made")
        var returns = expected
        returns["main.mayPanic", default: 0] -= panics
        #expect(log.returns() == returns, "a panicking call does not return")
        // ...it is unwound, and the deferred recover makes its caller return normally.
        #expect(log.count("unwound", function: "main.mayPanic") == panics)
        #expect(log.count("unwound") == panics)

        // Every event of a call or return names its goroutine, and goroutines moved between threads.
        let calls = log.of("call")
        #expect(calls.allSatisfy { ($0["goid"] as? Int ?? 0) > 0 })
        var threadsOfGoroutine: [Int: Set<Int>] = [:]
        for call in calls { threadsOfGoroutine[call["goid"] as? Int ?? 0, default: []].insert(call["tid"] as? Int ?? 0) }
        #expect(threadsOfGoroutine.count >= 9, "8 workers and main")
        #expect(threadsOfGoroutine.values.contains { $0.count > 1 }, "no goroutine ran on two threads")
        // The Chrome trace nests calls by goroutine, not by thread: every call is one complete span,
        // closed by its own return (or unwinding), though it may have returned on another thread.
        let trace = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: chrome))) as? [String: Any])
        let spans = (trace["traceEvents"] as? [[String: Any]] ?? []).filter { $0["ph"] as? String == "X" }
        #expect(!spans.contains { ($0["args"] as? [String: Any])?["incomplete"] != nil }, "a span left open")
        // Each span is its call's: the same function, start and duration as a return (or unwinding) in
        // the JSON trace. A span closed by another goroutine's return that ran on the same thread would
        // have another's duration.
        func nanoseconds(_ micros: Any?) -> Int {
            let text = "\(micros ?? "")", parts = text.split(separator: ".")
            return (Int(parts.first ?? "") ?? 0) * 1000 + (parts.count > 1 ? Int(parts[1].prefix(3).padding(toLength: 3, withPad: "0", startingAt: 0)) ?? 0 : 0)
        }
        var fromSpans: [String: Int] = [:], fromReturns: [String: Int] = [:]
        for span in spans {
            fromSpans["\(span["name"] ?? "?") \(nanoseconds(span["ts"])) \(nanoseconds(span["dur"]))", default: 0] += 1
        }
        for end in log.of("return") + log.of("unwound") {
            let ts = end["ts_ns"] as? Int ?? 0, duration = end["duration_ns"] as? Int ?? 0
            fromReturns["\(end["function"] ?? "?") \(ts - duration) \(duration)", default: 0] += 1
        }
        #expect(spans.count == expected.values.reduce(0, +))
        #expect(fromSpans == fromReturns, "spans that are not their call's: \(fromSpans.filter { fromReturns[$0.key] != $0.value }.prefix(3))")

        // The runtime's asynchronous preemption signal went through.
        #expect(log.of("signal").contains { $0["signal"] as? String == "SIGURG" })
    }

    @Test(arguments: ["inline", "jump"])
    func goArgumentsAndResultsReadTheRegisterABI(strategy: String) throws {
        let binary = try Fixtures.buildGo("goworkers")
        let file = Paths.scratch.appendingPathComponent("go-args-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", file, "^main\\.(work|sum)$", "--", binary, "work", "1", "2"])
        #expect(result.status == 0, "\(result)")
        let log = try TraceLog(file: file)
        let work = try #require(log.of("call").first { $0["function"] as? String == "main.work" })
        let args = try #require(work["args"] as? [[String: Any]])
        #expect(args.map { $0["name"] as? String } == ["i", "tag"])
        #expect(args.map { $0["type"] as? String } == ["int", "string"])
        #expect(args[0]["value"] as? Int == 0 && args[1]["value"] as? String == "go")
        let workReturn = try #require(log.of("return").first { $0["function"] as? String == "main.work" })
        #expect(workReturn["retval"] as? Int == 2)

        let sum = try #require(log.of("call").first { $0["function"] as? String == "main.sum" })
        let xs = try #require((sum["args"] as? [[String: Any]])?.first?["value"] as? [String: Any])
        #expect(xs["len"] as? Int == 3 && xs["cap"] as? Int == 3)
        #expect(xs["elements"] as? [Int] == [1, 2, 3])
        let sumReturn = try #require(log.of("return").first { $0["function"] as? String == "main.sum" })
        let values = try #require(sumReturn["retval"] as? [Any])
        #expect(values.first as? Int == 6 && values.last is NSNull, "(6, nil): \(values)")
    }

    @Test(arguments: ["inline", "jump"])
    func goServerAttachedTenTimesKeepsServing(strategy: String) throws {
        let binary = try Fixtures.buildGo("goworkers")
        let server = try RunningFixture(binary, ["serve"])
        defer { server.stop() }
        let file = Paths.scratch.appendingPathComponent("go-serve-\(strategy).jsonl").path
        for round in 1...10 {
            let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", file, "-p", "\(server.pid)", "^main\\.compute$"],
                                            outputFile: file)
            #expect(trace.waitForLines(containing: "\"return\"", count: 20), "round \(round): no calls seen")
            let end = try #require(trace.stop(), "round \(round): nstrace did not exit after SIGINT")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
            #expect(server.isRunning, "round \(round): the server died: \(server.state)")
            #expect(tracers(of: server.pid).values.allSatisfy { $0 == 0 })
            let log = try TraceLog(file: file)
            #expect(log.of("call").allSatisfy { ($0["goid"] as? Int ?? 0) > 0 })
        }
        server.skipPrinted()
        let first = try #require(server.waitForLine(containing: "tick"))
        let later = try #require(server.waitForLine(containing: "tick"))
        #expect(okCount(later) > okCount(first), "the server stopped answering: \(first) → \(later)")
        #expect(!server.hasPrinted("BAD"))
    }

    private func okCount(_ tick: String) -> Int {
        Int(tick.split(separator: "=").last ?? "") ?? -1
    }

    /// delve's TestTraceDirRecursion, on nstrace: `--follow-calls 4` from `main.A`, which calls itself,
    /// shows A(5, 5) down to A(1, 1) (every A is a root) and the returns 1, 2, 6, 24, 120; from B the
    /// depth cuts the recursion and fmt.Sprint's callees are shown one level under it.
    @Test(arguments: ["inline", "jump", "step"])
    func followCallsShowsLeafrecAsDelveDoes(strategy: String) throws {
        let binary = try Fixtures.buildGo("leafrec")
        func lines(_ pattern: String, _ depth: Int) throws -> [String] {
            let file = Paths.scratch.appendingPathComponent("go-leafrec-\(strategy).txt").path
            let result = try nstrace(["--strategy", strategy, "-o", file, "--follow-calls", "\(depth)", pattern, "--", binary], timeout: 300)
            #expect(result.stdoutLines == ["A(5, 5) = 120", "B() = 121"], "\(result)")
            // Without the goroutine stack's growth, which comes when the runtime pleases (delve's test
            // leaves it out too).
            return try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").compactMap { line in
                guard let g = line.range(of: "[g 1] "), !line.contains("morestack") else { return nil }
                return String(line[g.upperBound...])
            }
        }
        let a = try lines("^main\\.A$", 4)
        #expect(a == [
            "→ main.A(i=5, n=5)", "  → main.A(i=4, n=4)", "    → main.A(i=3, n=3)", "      → main.A(i=2, n=2)",
            "        → main.A(i=1, n=1)", "        ← main.A = 1", "      ← main.A = 2", "    ← main.A = 6", "  ← main.A = 24",
            "← main.A = 120",
            "→ main.A(i=5, n=5)", "  → main.A(i=4, n=4)", "    → main.A(i=3, n=3)", "      → main.A(i=2, n=2)",
            "        → main.A(i=1, n=1)", "        ← main.A = 1", "      ← main.A = 2", "    ← main.A = 6", "  ← main.A = 24",
            "← main.A = 120",
        ], "\(strategy)")
        let b = try lines("^main\\.B$", 2)
        #expect(b.prefix(5) == ["→ main.B()", "  → main.A(i=5, n=5)", "    → main.A(i=4, n=4)", "    ← main.A = 24", "  ← main.A = 120"],
                "\(strategy): \(b)")
        #expect(b.contains("  → fmt.Sprint(a=[…] len=1 cap=1)") && b.contains("  ← fmt.Sprint = \"7\""), "\(strategy): \(b)")
        #expect(b.last == "← main.B = 121", "\(strategy)")
        // Nothing deeper than two levels under B.
        #expect(b.allSatisfy { !$0.hasPrefix("      ") }, "\(strategy): \(b)")
    }
}

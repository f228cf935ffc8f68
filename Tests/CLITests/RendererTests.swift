import Foundation
import Glibc
import Testing
import TestSupport

/// Each renderer, on real traces of a fixture whose calls are known exactly.
@Suite struct Renderers {
    func calls() throws -> String { try Fixtures.build("calls", flags: ["-O1", "-g"]) }

    func traceFile(_ name: String) -> String { Paths.scratch.appendingPathComponent(name).path }

    @Test func textShowsDepthArgumentsReturnValuesAndEscapes() throws {
        let binary = try calls()
        let result = try nstrace(["fx_", "--", binary])
        #expect(result.status == 0, "\(result)")
        // Only the trace goes to stderr; the program's own output stays on stdout.
        #expect(result.stdoutLines == ["calls fx_outer 1", "calls fx_inner 3", "calls fx_ratio 1", "calls fx_echo 1"])
        let lines = result.stderrLines.map { line in
            // "[tid] rest": drop the tid, which changes from run to run.
            line.hasPrefix("[") ? String(line[line.index(after: line.firstIndex(of: "]") ?? line.startIndex)...].dropFirst()) : line
        }
        #expect(lines == [
            "→ fx_outer(n=3, tag=\"hello\\n\\\"world\\\"\")",
            "  → fx_inner(x=0)",
            "  ← fx_inner = 0",
            "  → fx_inner(x=1)",
            "  ← fx_inner = 2",
            "  → fx_inner(x=2)",
            "  ← fx_inner = 4",
            "← fx_outer = 7",
            "→ fx_ratio(a=1.0, b=4.0)",
            "← fx_ratio = 0.25",
            "→ fx_echo(s=\"abc\")",
            "← fx_echo = \"abc\"",
        ] + [lines.last ?? ""])
        #expect(lines.last?.hasSuffix("exited with 0 +++") == true)
    }

    @Test func timestampsDurationsAndMaxString() throws {
        let binary = try calls()
        let result = try nstrace(["-t", "-T", "--max-string", "3", "fx_outer", "--", binary])
        #expect(result.status == 0, "\(result)")
        let call = try #require(result.stderrLines.first { $0.contains("→ fx_outer") })
        #expect(call.range(of: #"^\d\d:\d\d:\d\d\.\d{6} \[\d+\] → fx_outer\(n=3, tag="hel"\.\.\.\)$"#, options: .regularExpression) != nil, "\(call)")
        let ret = try #require(result.stderrLines.first { $0.contains("← fx_outer") })
        #expect(ret.range(of: #"← fx_outer = 7  <\d+\.\d{6}>$"#, options: .regularExpression) != nil, "\(ret)")
    }

    @Test func jsonLinesFollowTheSchema() throws {
        let binary = try calls()
        let file = traceFile("schema.jsonl")
        let result = try nstrace(["--json", "-o", file, "fx_", "--", binary, "5"])
        #expect(result.status == 0, "\(result)")
        let log = try TraceLog(file: file)
        for event in log.events {
            #expect(event["event"] is String && event["ts_ns"] is Int && event["pid"] is Int && event["tid"] is Int, "\(event)")
        }
        for call in log.of("call") {
            #expect(call["function"] is String && call["module"] is String && call["depth"] is Int, "\(call)")
            let address = try #require(call["address"] as? String)
            #expect(address.hasPrefix("0x") && UInt64(address.dropFirst(2), radix: 16) != nil)
            let args = try #require(call["args"] as? [[String: Any]])
            #expect(args.allSatisfy { $0["name"] is String && $0["type"] is String && $0.keys.contains("value") })
        }
        for ret in log.of("return") {
            #expect(ret["function"] is String && ret["module"] is String && ret["depth"] is Int, "\(ret)")
            #expect(ret.keys.contains("retval") && ret["duration_ns"] is Int, "\(ret)")
        }
        #expect(log.calls() == fixtureCounts(result.stdout))
        #expect(log.returns() == fixtureCounts(result.stdout))
        let outer = try #require(log.of("call").first { $0["function"] as? String == "fx_outer" })
        let args = try #require(outer["args"] as? [[String: Any]])
        #expect(args[0]["value"] as? Int == 3)
        #expect(args[1]["value"] as? String == "hello\n\"world\"")
        #expect(args[1]["type"] as? String == "const char *")
        let ratio = try #require(log.of("return").first { $0["function"] as? String == "fx_ratio" })
        #expect(ratio["retval"] as? Double == 0.25)
        #expect(log.of("exit").first?["status"] as? Int == 0)
    }

    @Test func summaryCountsEqualTheCallsTheProgramMade() throws {
        let binary = try calls()
        let result = try nstrace(["-c", "fx_", "--", binary, "40"])
        #expect(result.status == 0, "\(result)")
        let expected = fixtureCounts(result.stdout)
        #expect(expected["fx_inner"] == 120)
        let header = try #require(result.stderrLines.first)
        #expect(header.split(separator: " ").map(String.init) == ["function", "calls", "total", "mean", "min", "max", "p50", "p99"])
        var seen: [String: Int] = [:]
        for line in result.stderrLines.dropFirst() {
            let cells = line.split(separator: " ")
            if cells.count == 8, let calls = Int(cells[1]) { seen[String(cells[0])] = calls }
        }
        #expect(seen == expected)
        // Sorted by total time: fx_outer contains its three fx_inner calls.
        #expect(result.stderrLines[1].hasPrefix("fx_outer"))
        // One histogram per function, whose bucket counts add up to its calls.
        for (function, calls) in expected {
            let start = try #require(result.stderrLines.firstIndex { $0.hasPrefix("@\(function) (ns") })
            let buckets = result.stderrLines[(start + 1)...].prefix { $0.hasPrefix("[") }
            let total = buckets.compactMap { line in Int(line.split(separator: "|")[0].split(separator: " ").last ?? "") }.reduce(0, +)
            #expect(total == calls, "\(function)")
        }
    }

    @Test func chromeTraceHasOneCompleteEventPerCall() throws {
        let binary = try calls()
        let file = traceFile("chrome.json")
        let result = try nstrace(["--chrome-trace", file, "-o", traceFile("chrome-text.txt"), "fx_", "--", binary, "7"])
        #expect(result.status == 0, "\(result)")
        let data = try #require(FileManager.default.contents(atPath: file))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let events = try #require(root["traceEvents"] as? [[String: Any]])
        var complete: [String: Int] = [:]
        for event in events where event["ph"] as? String == "X" {
            complete[event["name"] as? String ?? "?", default: 0] += 1
            #expect(event["ts"] is Double && event["dur"] is Double && event["pid"] is Int && event["tid"] is Int)
        }
        #expect(complete == fixtureCounts(result.stdout))
        #expect(events.contains { $0["ph"] as? String == "M" && $0["name"] as? String == "thread_name" })
    }

    @Test func maxCallsStopsTheTraceAndTidFiltersThreads() throws {
        let binary = try calls()
        let file = traceFile("max.jsonl")
        let result = try nstrace(["--json", "--max-calls", "5", "-o", file, "fx_", "--", binary, "50"])
        #expect(result.status == 0, "\(result)")
        let log = try TraceLog(file: file)
        #expect(log.count("call") == 5)
        #expect(log.count("return") <= 5)

        let other = traceFile("tid.jsonl")
        let filtered = try nstrace(["--json", "--tid", "1", "-o", other, "fx_", "--", binary])
        #expect(filtered.status == 0)
        #expect(try TraceLog(file: other).count("call") == 0, "thread 1 is not the fixture's")
    }

    @Test func stackTracesNameTheCallers() throws {
        for variant in [("fp", ["-O0", "-fno-omit-frame-pointer"]), ("cfi", ["-O2", "-fomit-frame-pointer"])] {
            let binary = try Fixtures.build("calls", flags: variant.1 + ["-g"], variant: "stack-\(variant.0)")
            let file = traceFile("stack-\(variant.0).jsonl")
            let result = try nstrace(["--json", "-s", "3", "-o", file, "^fx_inner$", "--", binary])
            #expect(result.status == 0, "\(result)")
            let call = try #require(try TraceLog(file: file).of("call").first)
            let stack = try #require(call["stack"] as? [[String: Any]], "\(variant.0)")
            #expect(stack.prefix(2).map { $0["function"] as? String } == ["fx_outer", "main"], "\(variant.0): \(stack)")
        }
    }
}

import Foundation
import Glibc
import Testing
import TestSupport

/// `--min-duration`, `--max-depth`, `--exclude`, `--caller` and `--folded` on a fixture whose call tree
/// is known: each round, fl_root calls fl_mid (two fl_leaf), fl_skip (fl_mid, two fl_leaf), fl_slow
/// (sleeps, one fl_leaf) and fl_lib_apply, in a shared library, which calls fl_leaf three times.
@Suite(.serialized) struct CallFilters {
    /// The fixture and its library; the program is `filters-main`, the library `filters_lib-so`.
    func fixture() throws -> (program: String, library: String) {
        let library = try Fixtures.build("filters_lib", flags: ["-O1", "-g", "-shared", "-fPIC"], variant: "so")
        let directory = (library as NSString).deletingLastPathComponent
        let program = try Fixtures.build("filters", flags: ["-O1", "-g", library, "-Wl,-rpath," + directory], variant: "main")
        return (program, library)
    }

    /// Runs the fixture under nstrace with `options`, ROUNDS rounds sleeping SLEEP ms; the JSON trace.
    func traced(_ options: [String], strategy: String, rounds: Int = 2, sleep: Int = 1, pattern: String = "^fl_",
                name: String) throws -> (log: TraceLog, result: CommandResult) {
        let program = try fixture().program
        let file = Paths.scratch.appendingPathComponent("filters-\(name)-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", file] + options + [pattern, "--", program, "\(rounds)", "\(sleep)"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong 0"), "\(result)")
        return (try TraceLog(file: file), result)
    }

    /// The text trace's call and return lines, without the thread and with addresses as `0x…`.
    func textLines(_ options: [String], strategy: String, rounds: Int, sleep: Int, pattern: String = "^fl_") throws -> [String] {
        let program = try fixture().program
        let file = Paths.scratch.appendingPathComponent("filters-text-\(strategy).txt").path
        let result = try nstrace(["--strategy", strategy, "-o", file] + options + [pattern, "--", program, "\(rounds)", "\(sleep)"])
        #expect(result.status == 0, "\(result)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> String? in
            guard line.contains("→") || line.contains("←") else { return nil }
            let rest = String(line[line.index(after: line.firstIndex(of: "]") ?? line.startIndex)...].dropFirst())
            return rest.replacingOccurrences(of: "0x[0-9a-f]+", with: "0x…", options: .regularExpression)
        }
    }

    @Test(arguments: ["inline", "jump", "step"])
    func minDurationShowsTheSlowCallsWithTheirCallersAtTheirDepth(strategy: String) throws {
        // fl_slow sleeps 200 ms; nothing else in a round lasts a millisecond, whatever a stop costs.
        let (log, _) = try traced(["--min-duration", "100ms"], strategy: strategy, sleep: 200, name: "min")
        #expect(log.shape("call") == ["fl_root@0": 2, "fl_slow@1": 2], "\(strategy)")
        #expect(log.shape("return") == log.shape("call"), "\(strategy)")
        #expect(log.of("return").allSatisfy { ($0["duration_ns"] as? Int ?? 0) >= 100_000_000 }, "\(strategy)")
        #expect(log.of("return").compactMap { $0["retval"] as? Int } == [201, 216, 201, 222], "\(strategy)")
        // Held calls keep their arguments.
        #expect(log.of("call").map { "\($0["args"] ?? "")" }.allSatisfy { $0.contains("200") }, "\(strategy)")

        let text = try textLines(["--min-duration", "0.1s"], strategy: strategy, rounds: 2, sleep: 200)
        #expect(text == [
            "→ fl_root(r=0, ms=200)", "  → fl_slow(ms=200)", "  ← fl_slow = 201", "← fl_root = 216",
            "→ fl_root(r=1, ms=200)", "  → fl_slow(ms=200)", "  ← fl_slow = 201", "← fl_root = 222",
        ], "\(strategy)")
    }

    /// More calls open at once than are held: the oldest are given up, and the one of them that
    /// turns out long enough is told, not dropped silently. Inline alone: what is held is the filter's
    /// business whatever the strategy, and only inline measures 2 000 nested calls without the cost of
    /// 4 000 stops in their durations (which makes more of them long, by as much as the machine is slow).
    @Test(arguments: ["inline"])
    func minDurationTellsTheLongCallsItCouldNotHold(strategy: String) throws {
        let program = try fixture().program
        let file = Paths.scratch.appendingPathComponent("filters-deep-\(strategy).jsonl").path
        // Only the outermost of the 1031 calls sleeps (1.5 s); the others last microseconds.
        let result = try nstrace(["--strategy", strategy, "--json", "-o", file, "--min-duration", "1s", "^fl_deep$",
                                  "--", program, "0", "1500", "1030"], timeout: 300)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("calls fl_deep 1031"), "\(result)")
        #expect(result.stderrLines == ["nstrace: --min-duration: 1 calls of 1000000000ns or more not shown: over 1024 calls were held open in one thread"],
                "\(strategy): \(result)")
        let log = try TraceLog(file: file)
        #expect(log.count("call") == 0 && log.count("return") == 0, "\(strategy)")
    }

    @Test(arguments: ["inline", "jump", "step"])
    func maxDepthShowsThatManyLevels(strategy: String) throws {
        let (log, _) = try traced(["--max-depth", "2"], strategy: strategy, name: "depth")
        let expected = ["fl_root@0": 2, "fl_mid@1": 2, "fl_skip@1": 2, "fl_slow@1": 2, "fl_lib_apply@1": 2]
        #expect(log.shape("call") == expected, "\(strategy)")
        #expect(log.shape("return") == expected, "\(strategy)")

        let text = try textLines(["--max-depth", "1"], strategy: strategy, rounds: 2, sleep: 1)
        #expect(text == ["→ fl_root(r=0, ms=1)", "← fl_root = 17", "→ fl_root(r=1, ms=1)", "← fl_root = 23"], "\(strategy)")
    }

    @Test(arguments: ["inline", "jump", "step"])
    func excludeHidesTheFunctionAndEverythingUnderIt(strategy: String) throws {
        let (log, _) = try traced(["--exclude", "^fl_skip$"], strategy: strategy, name: "exclude")
        let expected = ["fl_root@0": 2, "fl_mid@1": 2, "fl_leaf@2": 12, "fl_slow@1": 2, "fl_lib_apply@1": 2]
        #expect(log.shape("call") == expected, "\(strategy)")
        #expect(log.shape("return") == expected, "\(strategy)")

        // fl_skip is not in REGEX: it is traced all the same to know what is under it. Untraced, fl_slow
        // and fl_lib_apply leave their fl_leaf calls at depth 1.
        let (narrow, _) = try traced(["--exclude", "^fl_skip$"], strategy: strategy, pattern: "^fl_(root|mid|leaf)$", name: "exclude-narrow")
        let narrowExpected = ["fl_root@0": 2, "fl_mid@1": 2, "fl_leaf@2": 4, "fl_leaf@1": 8]
        #expect(narrow.shape("call") == narrowExpected, "\(strategy)")
        #expect(narrow.shape("return") == narrowExpected, "\(strategy)")

        let text = try textLines(["--exclude", "^fl_(skip|lib_apply|slow)$"], strategy: strategy, rounds: 1, sleep: 1)
        #expect(text == ["→ fl_root(r=0, ms=1)", "  → fl_mid(x=0)", "    → fl_leaf(x=0)", "    ← fl_leaf = 1",
                         "    → fl_leaf(x=1)", "    ← fl_leaf = 2", "  ← fl_mid = 3", "← fl_root = 17"], "\(strategy)")
    }

    @Test(arguments: ["inline", "jump", "step"])
    func callerShowsOnlyTheCallsMadeFromThatModule(strategy: String) throws {
        let (fromProgram, _) = try traced(["--caller", "filters-main"], strategy: strategy, name: "caller-main")
        // Every call but the library's three fl_leaf callbacks a round.
        let programExpected = ["fl_root@0": 2, "fl_mid@1": 2, "fl_leaf@2": 6, "fl_skip@1": 2, "fl_mid@2": 2, "fl_leaf@3": 4,
                               "fl_slow@1": 2, "fl_lib_apply@1": 2]
        #expect(fromProgram.shape("call") == programExpected, "\(strategy)")
        #expect(fromProgram.shape("return") == programExpected, "\(strategy)")

        let library = try fixture().library
        for module in ["filters_lib-so", library] {
            let (fromLibrary, _) = try traced(["--caller", module], strategy: strategy, name: "caller-lib")
            #expect(fromLibrary.shape("call") == ["fl_leaf@2": 6], "\(strategy) \(module)")
            #expect(fromLibrary.shape("return") == ["fl_leaf@2": 6], "\(strategy) \(module)")
        }

        let text = try textLines(["--caller", "filters_lib-so"], strategy: strategy, rounds: 1, sleep: 1)
        #expect(text == ["    → fl_leaf(x=0)", "    ← fl_leaf = 1", "    → fl_leaf(x=1)", "    ← fl_leaf = 2",
                         "    → fl_leaf(x=2)", "    ← fl_leaf = 3"], "\(strategy)")
    }

    /// The same filter in the summary and the Chrome trace as in the text and JSON.
    @Test func summaryAndChromeTraceSeeTheSameFilteredCalls() throws {
        let program = try fixture().program
        let chrome = Paths.scratch.appendingPathComponent("filters-chrome.json").path
        let result = try nstrace(["-c", "--chrome-trace", chrome, "--exclude", "^fl_(skip|mid|lib_apply)$", "--max-depth", "2",
                                  "^fl_", "--", program, "2", "1"])
        #expect(result.status == 0, "\(result)")
        let rows = result.stderrLines.filter { $0.hasPrefix("fl_") }.map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
        #expect(rows.sorted() == ["fl_root 2", "fl_slow 2"], "\(result)")
        let trace = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: chrome))) as? [String: Any]
        let spans = (trace?["traceEvents"] as? [[String: Any]] ?? []).filter { $0["ph"] as? String == "X" }
        #expect(spans.compactMap { $0["name"] as? String }.sorted() == ["fl_root", "fl_root", "fl_slow", "fl_slow"])
    }

    static let stacks = ["fl_root", "fl_root;fl_lib_apply", "fl_root;fl_lib_apply;fl_leaf", "fl_root;fl_mid", "fl_root;fl_mid;fl_leaf",
                         "fl_root;fl_skip", "fl_root;fl_skip;fl_mid", "fl_root;fl_skip;fl_mid;fl_leaf", "fl_root;fl_slow",
                         "fl_root;fl_slow;fl_leaf"]

    @Test(arguments: ["inline", "jump", "step"])
    func foldedStacksOfAKnownTree(strategy: String) throws {
        let folded = Paths.scratch.appendingPathComponent("filters-\(strategy).folded").path
        _ = try traced(["--folded", folded, "--folded-weight", "calls"], strategy: strategy, name: "folded-calls")
        #expect(try String(contentsOfFile: folded, encoding: .utf8) == """
            fl_root 2
            fl_root;fl_lib_apply 2
            fl_root;fl_lib_apply;fl_leaf 6
            fl_root;fl_mid 2
            fl_root;fl_mid;fl_leaf 4
            fl_root;fl_skip 2
            fl_root;fl_skip;fl_mid 2
            fl_root;fl_skip;fl_mid;fl_leaf 4
            fl_root;fl_slow 2
            fl_root;fl_slow;fl_leaf 2

            """, "\(strategy)")

        // By time: the same stacks, each its self time, which add up to fl_root's time exactly; the
        // sleeps are fl_slow's own.
        let (log, _) = try traced(["--folded", folded], strategy: strategy, sleep: 50, name: "folded-time")
        let lines = try String(contentsOfFile: folded, encoding: .utf8).split(separator: "\n").map { line in
            (stack: String(line[..<(line.lastIndex(of: " ") ?? line.endIndex)]), weight: Int(line.split(separator: " ").last ?? "") ?? -1)
        }
        #expect(lines.map(\.stack) == Self.stacks, "\(strategy)")
        let rootTime = log.of("return").filter { $0["function"] as? String == "fl_root" }.compactMap { $0["duration_ns"] as? Int }.reduce(0, +)
        #expect(lines.map(\.weight).reduce(0, +) == rootTime, "\(strategy)")
        let slow = lines.first { $0.stack == "fl_root;fl_slow" }?.weight ?? 0
        #expect(slow >= 100_000_000 && slow <= rootTime, "\(strategy): \(lines)")
    }

    /// Filters cut the folded stacks as they cut the trace: what is hidden counts as its caller's time.
    @Test func foldedStacksFollowTheFilters() throws {
        let folded = Paths.scratch.appendingPathComponent("filters-filtered.folded").path
        _ = try traced(["--folded", folded, "--folded-weight", "calls", "--exclude", "^fl_skip$", "--max-depth", "2"],
                       strategy: "inline", name: "folded-filtered")
        #expect(try String(contentsOfFile: folded, encoding: .utf8)
                == "fl_root 2\nfl_root;fl_lib_apply 2\nfl_root;fl_mid 2\nfl_root;fl_slow 2\n")
    }
}

import Foundation
import Glibc
import Testing
import TestSupport

/// `--follow-calls N` on a fixture whose call tree is known (Tests/Fixtures/follow.c): fw_handle, the
/// root, calls strlen (libc, through the PLT), fw_step1 → fw_step2 → fw_step3 → fw_step4, and
/// fw_on_item through a function pointer; fw_outside makes the same calls outside any root, and must
/// show nothing. fw_start calls fw_rec(5, 5), delve's leafrec.
@Suite(.serialized) struct FollowCalls {
    /// At -O0: GCC turns fw_rec's recursion into a loop at -O2, and keeps every call here as a call.
    func program() throws -> String {
        try Fixtures.build("follow", flags: ["-O0", "-g", "-pthread"], variant: "O0")
    }

    /// The trace's call and return lines, without the thread.
    func textLines(_ options: [String], strategy: String, pattern: String, threads: Int = 1, rounds: Int = 1) throws -> [String] {
        let file = Paths.scratch.appendingPathComponent("follow-text-\(strategy).txt").path
        let result = try nstrace(["--strategy", strategy, "-o", file] + options + [pattern, "--", try program(), "\(threads)", "\(rounds)"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong 0"), "\(result)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> String? in
            guard line.contains("→") || line.contains("←") else { return nil }
            return String(line[line.index(after: line.firstIndex(of: "]") ?? line.startIndex)...].dropFirst())
        }
    }

    @Test(arguments: ["inline", "jump", "step"])
    func fourThreadsShowTheRootsCalleesToTheDepthAndNothingOutsideIt(strategy: String) throws {
        let file = Paths.scratch.appendingPathComponent("follow-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", file, "--follow-calls", "2", "^fw_handle$",
                                  "--", try program(), "4", "50"], timeout: 300)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong 0"), "\(result)")
        // The fixture's own count of root calls; fw_outside made as many calls of the same callees.
        let made = try #require(result.stdoutLines.first { $0.hasPrefix("calls fw_handle ") }.flatMap { Int($0.split(separator: " ")[2]) })
        #expect(made == 200)
        let log = try TraceLog(file: file)
        let expected = ["fw_handle@0": made, "strlen@1": made, "fw_step1@1": made, "fw_step2@2": made, "fw_on_item@1": made]
        #expect(log.shape("call") == expected, "\(strategy)")
        #expect(log.shape("return") == expected, "\(strategy)")
        let onItem = log.of("return").filter { $0["function"] as? String == "fw_on_item" }.compactMap { $0["retval"] as? Int }
        #expect(onItem == Array(repeating: 104, count: made), "\(strategy)")
        #expect(Set(log.of("call").compactMap { $0["tid"] as? Int }).count == 4, "\(strategy)")
    }

    @Test(arguments: ["inline", "jump", "step"])
    func theTreeUnderARootIsShownAsItNests(strategy: String) throws {
        let lines = try textLines(["--follow-calls", "4"], strategy: strategy, pattern: "^fw_handle$")
        #expect(lines == [
            "→ fw_handle(x=0, name=\"name\")",
            "  → strlen(s=\"name\")", "  ← strlen = 4",
            "  → fw_step1(x=0)", "    → fw_step2(x=0)", "      → fw_step3(x=0)", "        → fw_step4(x=0)", "        ← fw_step4 = 0",
            "      ← fw_step3 = 1", "    ← fw_step2 = 2", "  ← fw_step1 = 3",
            "  → fw_on_item(x=4)", "  ← fw_on_item = 104",
            "← fw_handle = 107",
        ], "\(strategy)")
    }

    /// libc's strlen reached through each way a call leaves a module: the lazy PLT, the IBT PLT
    /// (`.plt.sec`, which unwind information describes as one unnamed function), and a GOT call
    /// (`-fno-plt`).
    @Test(arguments: [["-Wl,-z,lazy"], ["-fcf-protection=full", "-Wl,-z,ibtplt"], ["-fno-plt"]])
    func libraryCallsAreFollowedThroughEveryKindOfPLT(flags: [String]) throws {
        let variant = try Fixtures.build("follow", flags: ["-O0", "-g", "-pthread"] + flags, variant: "O0-\(flags.joined().filter(\.isLetter))")
        let file = Paths.scratch.appendingPathComponent("follow-plt.txt").path
        let result = try nstrace(["-o", file, "--follow-calls", "1", "^fw_handle$", "--", variant, "1", "1"])
        #expect(result.status == 0 && result.stdoutLines.contains("wrong 0"), "\(result)")
        let calls = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").filter { $0.contains("→") }
            .map { String($0[$0.index(after: $0.firstIndex(of: "]")!)...].dropFirst()) }
        #expect(calls == ["→ fw_handle(x=0, name=\"name\")", "  → strlen(s=\"name\")", "  → fw_step1(x=0)", "  → fw_on_item(x=4)"], "\(flags)")
    }

    /// delve's TestTraceDirRecursion: `dlv trace leafrec.go main.A --follow-calls 4` shows A(5, 5) down
    /// to A(1, 1), since every A is a root, with the returns 1, 2, 6, 24, 120.
    @Test(arguments: ["inline", "jump", "step"])
    func leafrecShowsWhatDelveShows(strategy: String) throws {
        let lines = try textLines(["--follow-calls", "4"], strategy: strategy, pattern: "^fw_rec$")
        #expect(lines == [
            "→ fw_rec(i=5, n=5)", "  → fw_rec(i=4, n=4)", "    → fw_rec(i=3, n=3)", "      → fw_rec(i=2, n=2)",
            "        → fw_rec(i=1, n=1)", "        ← fw_rec = 1",
            "      ← fw_rec = 2", "    ← fw_rec = 6", "  ← fw_rec = 24", "← fw_rec = 120",
        ], "\(strategy)")

        // From a caller that is not recursive itself, the depth cuts the recursion.
        let cut = try textLines(["--follow-calls", "3"], strategy: strategy, pattern: "^fw_start$")
        #expect(cut == [
            "→ fw_start()", "  → fw_rec(i=5, n=5)", "    → fw_rec(i=4, n=4)", "      → fw_rec(i=3, n=3)",
            "      ← fw_rec = 6", "    ← fw_rec = 24", "  ← fw_rec = 120", "← fw_start = 120",
        ], "\(strategy)")
    }
}

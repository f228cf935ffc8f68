import Foundation
import Glibc
import Testing
import TestSupport

/// GNU indirect functions (glibc's strcmp, memcpy, memset): traced as the implementation the process
/// runs, under the name asked for, with libc's prototypes for arguments DWARF does not describe.
@Suite(.serialized) struct IndirectFunctions {
    static let pattern = "^(strcmp|memcpy|memset)$"

    func fixture() throws -> String {
        // No builtins: gcc would expand small memset/memcpy calls inline, and no call would be made.
        try Fixtures.build("ifuncs", flags: ["-O1", "-g", "-fno-builtin", "-pthread"])
    }

    @Test(arguments: ["inline", "jump", "step"])
    func everyCallOfFourThreadsReachesTheChosenImplementation(strategy: String) throws {
        let traceFile = Paths.scratch.appendingPathComponent("ifuncs-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, Self.pattern, "--", try fixture()],
                                 timeout: 300)
        #expect(result.status == 0, "\(result)")
        try checkProgramCalls(log: try TraceLog(file: traceFile), stdout: result.stdout, strategy: strategy)
    }

    /// strstr has no IRELATIVE slot in libc, and lazy binding leaves the program's slot on its PLT
    /// until the first call: its resolver is asked instead.
    @Test(arguments: ["inline", "jump"])
    func anIndirectFunctionNoSlotHasBoundYetIsTracedFromItsFirstCall(strategy: String) throws {
        let binary = try Fixtures.build("ifuncs", flags: ["-O1", "-g", "-fno-builtin", "-pthread", "-Wl,-z,lazy"], variant: "lazy")
        let traceFile = Paths.scratch.appendingPathComponent("ifuncs-lazy-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^strstr$", "--", binary], timeout: 300)
        #expect(result.status == 0, "\(result)")
        #expect(!result.stderr.contains("not traced"), "\(result.stderr)")
        #expect(result.stdoutLines.contains("calls strstr 10"))
        let log = try TraceLog(file: traceFile)
        let mine = log.of("call").filter { call in
            (call["args"] as? [[String: Any]])?.first?["value"] as? String == "ifx-haystack-needle"
        }
        #expect(mine.count == 10 && mine.allSatisfy { $0["module"] as? String == "libc.so.6" && $0["function"] as? String == "strstr" })
        let needles = log.of("return").filter { $0["function"] as? String == "strstr" && $0["retval"] as? String == "needle" }
        #expect(needles.count == 10)
    }

    @Test func attachedToAProcessItsCallsAreSeenToo() throws {
        let running = try RunningFixture(try fixture(), ["wait"])
        defer { running.stop() }
        let traceFile = Paths.scratch.appendingPathComponent("ifuncs-attach.jsonl").path
        let trace = try BackgroundTrace(["--json", "-o", traceFile, "-p", "\(running.pid)", Self.pattern], outputFile: traceFile)
        #expect(trace.waitForLines(containing: "\"attach\"", count: 1, timeout: 60))
        kill(running.pid, SIGUSR1)
        // Its ground truth, in the order it prints it.
        var stdout: [String] = []
        for prefix in ["sources", "calls strcmp", "calls memcpy", "calls memset", "sum strcmp", "bytes memcpy", "bytes memset"] {
            guard let line = running.waitForLine(containing: prefix, timeout: 120) else {
                Issue.record("the fixture never printed \(prefix): \(running.state)")
                return
            }
            stdout.append(line)
        }
        let stopped = try #require(trace.stop(timeout: 60))
        #expect(stopped.status == 0, "\(stopped.stderr)")
        try checkProgramCalls(log: try TraceLog(file: traceFile), stdout: stdout.joined(separator: "\n"), strategy: "attach")
    }

    /// The program's calls — told apart from libc's own calls of the same implementations by arguments
    /// only the program passes — are all there, each with its arguments and its exact result.
    private func checkProgramCalls(log: TraceLog, stdout: String, strategy: String) throws {
        let lines = stdout.split(separator: "\n").map(String.init)
        func number(_ prefix: String) -> Int? { lines.first { $0.hasPrefix(prefix) }.flatMap { Int($0.split(separator: " ").last ?? "") } }
        let sourcesLine = try #require(lines.first { $0.hasPrefix("sources ") }, "\(stdout)")
        let parts = sourcesLine.split(separator: " ")
        let sources = try #require(UInt64(parts[1].dropFirst(2), radix: 16))
        let sourcesEnd = sources + (UInt64(parts[2]) ?? 0)

        // Each call paired with its return: these functions call none of the others, so a thread's
        // return follows its call.
        var open: [Int: [String: Any]] = [:]
        var pairs: [(call: [String: Any], ret: [String: Any])] = []
        for event in log.events {
            guard let tid = event["tid"] as? Int else { continue }
            switch event["event"] as? String {
            case "call": open[tid] = event
            case "return":
                if let call = open.removeValue(forKey: tid) { pairs.append((call, event)) }
            default: break
            }
        }
        #expect(log.count("call") == log.count("return"), "\(strategy): every call returns")
        #expect(log.count("unwound") == 0 && log.count("lost") == 0, "\(strategy)")
        // Every call is named as asked, in the module whose code ran: libc's implementation, or the
        // dynamic linker's own private copy.
        #expect(Set(log.of("call").compactMap { $0["function"] as? String }).isSubset(of: ["strcmp", "memcpy", "memset"]))
        #expect(Set(log.of("call").compactMap { $0["module"] as? String }).isSubset(of: ["libc.so.6", "ld-linux-x86-64.so.2"]))

        func args(_ call: [String: Any]) -> [String: Any] {
            var byName: [String: Any] = [:]
            for arg in call["args"] as? [[String: Any]] ?? [] { byName[arg["name"] as? String ?? "?"] = arg["value"] }
            return byName
        }
        func address(_ value: Any?) -> UInt64? {
            (value as? String).flatMap { $0.hasPrefix("0x") ? UInt64($0.dropFirst(2), radix: 16) : nil }
        }

        // strcmp("ifx-TD", "ifx-T3") returns D - '3', as every implementation of glibc computes it.
        let strcmps = pairs.filter { ($0.call["function"] as? String) == "strcmp" && (args($0.call)["s1"] as? String)?.hasPrefix("ifx-") == true }
        #expect(strcmps.count == number("calls strcmp"), "\(strategy): strcmp calls seen vs made")
        #expect(strcmps.allSatisfy { $0.call["module"] as? String == "libc.so.6" })
        var strcmpSum = 0
        for (call, ret) in strcmps {
            let a = args(call)
            let s1 = Array((a["s1"] as? String ?? "").utf8), s2 = Array((a["s2"] as? String ?? "").utf8)
            #expect(s1.count == 6 && s2.count == 6 && s2.last == UInt8(ascii: "3") && s1.prefix(5) == s2.prefix(5))
            let expected = Int(s1.last ?? 0) - Int(s2.last ?? 0)
            #expect(ret["retval"] as? Int == expected, "strcmp(\(a)) returned \(ret["retval"] ?? "nil")")
            strcmpSum += ret["retval"] as? Int ?? 0
        }
        #expect(strcmpSum == number("sum strcmp"))

        // memcpy(dest, src in `sources`, n) returns dest; memset(s in `sources`, 'Z', n) returns s.
        for (name, pointer) in [("memcpy", "src"), ("memset", "s")] {
            let mine = pairs.filter { pair in
                guard (pair.call["function"] as? String) == name, let p = address(args(pair.call)[pointer]) else { return false }
                return p >= sources && p < sourcesEnd
            }
            #expect(mine.count == number("calls \(name)"), "\(strategy): \(name) calls seen vs made")
            #expect(mine.allSatisfy { $0.call["module"] as? String == "libc.so.6" })
            let bytes = mine.reduce(0) { $0 + (args($1.call)["n"] as? Int ?? 0) }
            #expect(bytes == number("bytes \(name)"), "\(strategy): \(name) sizes")
            let target = name == "memcpy" ? "dest" : "s"
            #expect(mine.allSatisfy { address($0.ret["retval"]) == address(args($0.call)[target]) && address($0.ret["retval"]) != nil },
                    "\(name) returns its first argument")
            if name == "memset" { #expect(mine.allSatisfy { args($0.call)["c"] as? Int == 90 }, "memset's fill byte 'Z'") }
        }
    }
}

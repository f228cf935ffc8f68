import Foundation
import Glibc
import Testing
import TestSupport

/// `--follow-calls` attached to a running process (Tests/Fixtures/follow.c): the callees found by
/// decoding and the one found when its indirect call first runs are shown inside the root's calls
/// only, in every thread, and detach leaves every byte of text as the file has it.
@Suite(.serialized) struct FollowCallsAttached {
    @Test(arguments: ["inline", "jump", "step"])
    func attachedFourThreadsShowTheCalleesAndDetachLeavesTheTextWhole(strategy: String) throws {
        let binary = try Fixtures.build("follow", flags: ["-O0", "-g", "-pthread"], variant: "O0")
        let fixture = try RunningFixture(binary, ["4", "50", "wait"])
        defer { fixture.stop() }
        let file = Paths.scratch.appendingPathComponent("follow-attach-\(strategy).jsonl").path
        let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", file, "--follow-calls", "2", "-p", "\(fixture.pid)",
                                         "^fw_handle$"], outputFile: file)
        #expect(trace.waitForLines(containing: "\"attach\"", count: 1))
        kill(fixture.pid, SIGUSR1)
        #expect(fixture.waitForLine(containing: "done") != nil)
        #expect(fixture.hasPrinted("wrong 0"))
        #expect(fixture.hasPrinted("calls fw_handle 200"))
        // 5 calls a root call: fw_handle, strlen, fw_step1, fw_step2, fw_on_item.
        #expect(trace.waitForLines(containing: "\"return\"", count: 5 * 200))
        let end = try #require(trace.stop(), "nstrace did not exit after SIGINT")
        #expect(end.status == 0, "\(end.stderr)")
        let log = try TraceLog(file: file)
        let expected = ["fw_handle": 200, "strlen": 200, "fw_step1": 200, "fw_step2": 200, "fw_on_item": 200]
        #expect(log.calls() == expected, "\(strategy)")
        #expect(log.returns() == expected, "\(strategy)")
        #expect(Set(log.of("call").compactMap { $0["tid"] as? Int }).count == 4, "\(strategy)")
        // Let go whole, still running.
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 })
        try expectTextUntouched(fixture.pid)
        #expect(fixture.isRunning)
        #expect(fixture.stop(signal: SIGUSR1) == 0)
    }
}

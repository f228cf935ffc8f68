import Foundation
import Glibc
import Symbols
import Testing
import TestSupport

/// Processes that are hard on a tracer: job control in the middle of a step, vfork storms, JIT code
/// and dlopen, sigqueue'd signals with values, and nstrace itself being signalled.
@Suite(.serialized) struct HostileProcesses {
    func hostile() throws -> String { try Fixtures.build("hostile", flags: ["-O1", "-g", "-pthread", "-ldl"]) }
    func server() throws -> String { try Fixtures.build("server", flags: ["-O1", "-g", "-pthread"]) }
    func file(_ name: String) -> String { Paths.scratch.appendingPathComponent(name).path }

    /// Ctrl-Z and fg while threads are mid-step: a group-stop taken between the single-step request and
    /// the instruction must not let the thread run on through its slot.
    @Test(arguments: ["step", "jump"])
    func stopAndContinueWhileTracedLeaveTheProgramWhole(strategy: String) throws {
        let fixture = try RunningFixture(try server(), ["4"])
        defer { fixture.stop() }
        let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", file("stopcont-\(strategy).jsonl"),
                                         "-p", "\(fixture.pid)", "^srv_"], outputFile: file("stopcont-\(strategy).jsonl"))
        #expect(trace.waitForLines(containing: "\"return\"", count: 50))
        for round in 1...25 {
            kill(fixture.pid, SIGSTOP)
            #expect(waitFor { ProcStat.state(of: fixture.pid) == "T" || ProcStat.state(of: fixture.pid) == "t" }, "round \(round)")
            kill(fixture.pid, SIGCONT)
            #expect(fixture.isRunning, "round \(round): \(fixture.state)")
        }
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        let end = try #require(trace.stop())
        #expect(end.status == 0, "\(end.stderr)")
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil, "the program stopped running: \(fixture.state)")
        #expect(!fixture.hasPrinted("BAD"))
        #expect(fixture.isRunning)
    }

    /// Any signal that would end nstrace makes it detach first: dying with its int3s in place would
    /// kill the program at its next traced call.
    @Test(arguments: [SIGQUIT, SIGUSR1, SIGALRM, SIGTERM, SIGHUP])
    func nstraceDetachesBeforeATerminatingSignalEndsIt(signal: Int32) throws {
        let fixture = try RunningFixture(try server(), ["2"])
        defer { fixture.stop() }
        let trace = try BackgroundTrace(["--json", "-o", file("signalled.jsonl"), "-p", "\(fixture.pid)", "^srv_"],
                                        outputFile: file("signalled.jsonl"))
        #expect(trace.waitForLines(containing: "\"return\"", count: 20))
        let end = try #require(trace.stop(signal: signal), "nstrace did not exit on \(signal)")
        #expect(end.status == 0, "\(end.stderr)")
        #expect(try TraceLog(file: file("signalled.jsonl")).count("detach") == 1)
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil, "the program died: \(fixture.state)")
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 })
    }

    /// A thread that vforks without pause: attach and detach find it blocked in the kernel until its
    /// child exits, and must neither hang nor leave anything behind.
    @Test func vforkStormDuringAttachAndDetach() throws {
        let fixture = try RunningFixture(try hostile(), ["vfork"])
        defer { fixture.stop() }
        for round in 1...8 {
            let start = Date()
            let trace = try BackgroundTrace(["--json", "-o", file("vfork.jsonl"), "-p", "\(fixture.pid)", "^hx_work$"],
                                            outputFile: file("vfork.jsonl"))
            #expect(trace.waitForLines(containing: "\"return\"", count: 20), "round \(round): no calls seen")
            let end = try #require(trace.stop(), "round \(round): nstrace hung")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
            #expect(Date().timeIntervalSince(start) < 30, "round \(round) took too long")
            #expect(fixture.isRunning, "round \(round): \(fixture.state)")
        }
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        #expect(!fixture.hasPrinted("BAD"))
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 })
    }

    /// Calls from JIT code: its return addresses are in anonymous memory, where the jump strategy puts
    /// no int3 (the code may be freed and reused) and says so; the inline strategy sees the returns at
    /// the function's own `ret`s. A dlopen while tracing must not strand anything either.
    @Test(arguments: ["inline", "jump"])
    func callsFromJITCodeAndALaterDlopen(strategy: String) throws {
        let fixture = try RunningFixture(try hostile(), ["jit"])
        defer { fixture.stop() }
        let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", file("jit.jsonl"), "-p", "\(fixture.pid)", "^hx_work$"],
                                        outputFile: file("jit.jsonl"))
        #expect(trace.waitForLines(containing: "\"call\"", count: 50))
        kill(fixture.pid, SIGUSR2)
        #expect(fixture.waitForLine(containing: "dlopened") != nil)
        #expect(trace.waitForLines(containing: "\"call\"", count: 200))
        let end = try #require(trace.stop())
        #expect(end.status == 0, "\(end.stderr)")
        let log = try TraceLog(file: file("jit.jsonl"))
        if strategy == "jump" {
            #expect(log.of("notice").contains { ($0["message"] as? String ?? "").contains("not in any module") })
        } else {
            let calls = log.calls()["hx_work"] ?? 0, returns = log.returns()["hx_work"] ?? 0
            #expect(calls >= 200 && calls - returns <= 4, "\(calls) calls, \(returns) returns")
        }
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil, "the program died: \(fixture.state)")
        #expect(!fixture.hasPrinted("BAD"))
    }

    /// Signals sent with sigqueue while nstrace attaches, traces and detaches, again and again: every
    /// one arrives, with its code and value.
    @Test(arguments: ["inline", "jump", "step"])
    func sigqueuedSignalsArriveWithTheirValues(strategy: String) throws {
        let fixture = try RunningFixture(try hostile(), ["sigqueue"])
        defer { fixture.stop() }
        for round in 1...6 {
            let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", file("sigq.jsonl"), "-p", "\(fixture.pid)", "^hx_work$"],
                                            outputFile: file("sigq.jsonl"))
            #expect(trace.waitForLines(containing: "\"signal\"", count: 20), "round \(round): no signal seen")
            let end = try #require(trace.stop(), "round \(round): nstrace hung")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
        }
        kill(fixture.pid, SIGTERM)
        let summary = try #require(fixture.waitForLine(containing: "sent "))
        let numbers = summary.split(separator: " ").compactMap { Int($0) }
        #expect(numbers.count == 3 && numbers[0] > 1000, "\(summary)")
        #expect(numbers.count == 3 && numbers[1] == numbers[0], "every signal received: \(summary)")
        #expect(numbers.count == 3 && numbers[2] == 0, "with its own code and value: \(summary)")
    }
}

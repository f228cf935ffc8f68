import Foundation
import Glibc
import Symbols
import Testing
import TestSupport

/// Attaching to a live process, tracing, detaching: the process must run on as if nothing happened.
@Suite(.serialized) struct AttachedProcesses {
    func server() throws -> String {
        try Fixtures.build("server", flags: ["-O1", "-g", "-pthread"])
    }

    @Test(arguments: ["inline", "jump", "step"])
    func attachTraceDetachTenTimesLeavesTheServerUntouched(strategy: String) throws {
        let fixture = try RunningFixture(try server(), ["4"])
        defer { fixture.stop() }
        let traceFile = Paths.scratch.appendingPathComponent("attach-\(strategy).jsonl").path
        for round in 1...10 {
            let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_"],
                                            outputFile: traceFile)
            #expect(trace.waitForLines(containing: "\"return\"", count: 50), "round \(round): no calls seen")
            let end = try #require(trace.stop(), "round \(round): nstrace did not exit after SIGINT")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
            let log = try TraceLog(file: traceFile)
            #expect(log.count("attach") == 1 && log.count("detach") == 1)
            let calls = log.calls()["srv_handle"] ?? 0, returns = log.returns()["srv_handle"] ?? 0
            #expect(calls > 0)
            // Each of the 4 workers can be inside srv_handle when nstrace detaches; and with the inline
            // strategy a full ring loses records, each counted (a lost return leaves its call open).
            let lostReturns = log.of("lost").compactMap { $0["returns"] as? Int }.reduce(0, +)
            #expect(returns <= calls && calls - returns <= 4 + lostReturns,
                    "round \(round): \(calls) calls, \(returns) returns, \(lostReturns) returns lost")
            #expect(fixture.isRunning, "round \(round): the server died: \(fixture.state)")
            #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 }, "round \(round): a thread is still traced")
        }
        try expectServerRunsOnUntouched(fixture)
    }

    @Test(arguments: ["inline", "jump", "step"])
    func threadsBornAndDyingDuringAttachAndDetach(strategy: String) throws {
        let fixture = try RunningFixture(try server(), ["2", "churn"])
        defer { fixture.stop() }
        let traceFile = Paths.scratch.appendingPathComponent("churn-\(strategy).jsonl").path
        for round in 1...5 {
            let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_"],
                                            outputFile: traceFile)
            #expect(trace.waitForLines(containing: "srv_short_lived", count: 20), "round \(round): no short-lived thread seen")
            let end = try #require(trace.stop(), "round \(round): nstrace hung on detach")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
            let log = try TraceLog(file: traceFile)
            #expect(log.count("thread_start") > 0)
            #expect(fixture.isRunning, "round \(round): the process died: \(fixture.state)")
            #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 }, "round \(round): a thread is left traced")
        }
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        #expect(!fixture.hasPrinted("BAD"))
        try expectTextUntouched(fixture.pid)
    }

    @Test func stoppedProcessStaysStoppedWhileTracedAndAfterDetach() throws {
        let fixture = try RunningFixture(try server(), ["2"])
        defer { fixture.stop() }
        kill(fixture.pid, SIGSTOP)
        #expect(waitFor { ProcStat.state(of: fixture.pid) == "T" })
        let traceFile = Paths.scratch.appendingPathComponent("stopped.jsonl").path
        let trace = try BackgroundTrace(["--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_"], outputFile: traceFile)
        #expect(trace.waitForLines(containing: "\"attach\"", count: 1))
        #expect(trace.waitForLines(containing: "is stopped", count: 1))
        // Traced and stopped: every thread in a tracing stop, none running.
        let states = Set(tasks(fixture.pid).compactMap { ProcStat.state(of: fixture.pid, task: $0) })
        #expect(states.isSubset(of: ["t", "T"]), "\(states)")
        let end = try #require(trace.stop())
        #expect(end.status == 0, "\(end.stderr)")
        #expect(ProcStat.state(of: fixture.pid) == "T", "the process must still be stopped after detach")
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick", timeout: 0.3) == nil, "it ran while it should be stopped")
        kill(fixture.pid, SIGCONT)
        #expect(fixture.waitForLine(containing: "tick") != nil, "it did not run on after SIGCONT")
    }

    @Test func aStoppedProcessContinuedWhileTracedGetsItsBreakpointsThen() throws {
        let fixture = try RunningFixture(try server(), ["2"])
        defer { fixture.stop() }
        kill(fixture.pid, SIGSTOP)
        #expect(waitFor { ProcStat.state(of: fixture.pid) == "T" })
        let traceFile = Paths.scratch.appendingPathComponent("continued.jsonl").path
        let trace = try BackgroundTrace(["--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_handle$"], outputFile: traceFile)
        #expect(trace.waitForLines(containing: "is stopped", count: 1))
        kill(fixture.pid, SIGCONT)
        #expect(trace.waitForLines(containing: "\"return\"", count: 20))
        let end = try #require(trace.stop())
        #expect(end.status == 0)
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        try expectTextUntouched(fixture.pid)
    }

    /// Under the jump strategy a function whose every site is a window (what `nstrace list` calls
    /// inline) is entered through a `jmp` to a trap pad, not an int3 in its code: its first byte is a
    /// jump while traced, its calls and returns are all seen, and detach puts every byte back.
    @Test func jumpStrategyEntersWindowedFunctionsThroughTrapPads() throws {
        let binary = try server()
        let listing = try nstrace(["list", "--json", binary, "^srv_handle$"])
        let inline = try jsonLines(listing.stdout).contains { $0["function"] as? String == "srv_handle" && $0["inline"] as? Bool == true }
        try #require(inline, "srv_handle has no window to test with: \(listing.stdout)")
        let fixture = try RunningFixture(binary, ["2"])
        defer { fixture.stop() }
        let image = try ProcessImage(pid: fixture.pid)
        let handle = try #require(image.modules.lazy.flatMap { image.functions(in: $0) }.first { $0.name == "srv_handle" })
        let traceFile = Paths.scratch.appendingPathComponent("trap-pads.jsonl").path
        let trace = try BackgroundTrace(["--strategy", "jump", "--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_handle$"],
                                        outputFile: traceFile)
        #expect(trace.waitForLines(containing: "\"return\"", count: 50))
        let onDisk = try #require(image.fileBytes(of: handle))
        var inMemory = [UInt8](repeating: 0, count: onDisk.count)
        let fd = open("/proc/\(fixture.pid)/mem", O_RDONLY)
        _ = pread(fd, &inMemory, onDisk.count, off_t(Int64(bitPattern: handle.address)))
        close(fd)
        // The entry window may begin after the first instruction. Every change is a jump (jmp rel32, or
        // jmp rel8 to a slot in the padding), none an int3.
        var jumps = 0, i = 0
        while i < onDisk.count {
            guard inMemory[i] != onDisk[i] else { i += 1; continue }
            #expect(inMemory[i] == 0xe9 || inMemory[i] == 0xeb, "srv_handle+\(i) is \(inMemory[i]), not a jmp: \(inMemory)")
            jumps += 1
            i += inMemory[i] == 0xe9 ? 5 : 2
        }
        #expect(jumps > 0, "srv_handle is unchanged while traced")
        let end = try #require(trace.stop())
        #expect(end.status == 0, "\(end.stderr)")
        let log = try TraceLog(file: traceFile)
        let calls = log.calls()["srv_handle"] ?? 0, returns = log.returns()["srv_handle"] ?? 0
        // Each of the 2 workers can be inside srv_handle when nstrace detaches.
        #expect(calls >= 50 && returns <= calls && calls - returns <= 2, "\(calls) calls, \(returns) returns")
        #expect(fixture.isRunning, "the server died: \(fixture.state)")
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        #expect(!fixture.hasPrinted("BAD"))
        try expectTextUntouched(fixture.pid)
    }

    /// A sandbox's seccomp filter that kills the process for an executable mmap: nstrace reads the
    /// filter back, runs it on the mmap it would inject, and refuses instead of killing the server.
    @Test(arguments: ["inline", "jump", "step"])
    func aSeccompFilterThatWouldKillForTheInjectedMmapIsObeyed(strategy: String) throws {
        let fixture = try RunningFixture(try Fixtures.build("seccomp", flags: ["-O1", "-g"]))
        defer { fixture.stop() }
        let result = try nstrace(["--strategy", strategy, "-p", "\(fixture.pid)", "^sc_work$"], timeout: 60)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("a seccomp filter would answer the mmap nstrace must inject with KILL_PROCESS"), "\(result.stderr)")
        #expect(fixture.isRunning, "the filter killed the server: \(fixture.state)")
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 })
        try expectTextUntouched(fixture.pid)
        fixture.skipPrinted()
        #expect(fixture.waitForLine(containing: "tick") != nil)
        #expect(!fixture.hasPrinted("BAD"))
    }

    func tasks(_ pid: pid_t) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { pid_t($0) }
    }
}

/// The server fixture after nstrace has gone: running, traced by no one, its code as the file has it,
/// still ticking, every result right.
func expectServerRunsOnUntouched(_ fixture: RunningFixture, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(fixture.isRunning, "the server died: \(fixture.state)", sourceLocation: sourceLocation)
    #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 }, "a thread is still traced", sourceLocation: sourceLocation)
    try expectTextUntouched(fixture.pid, sourceLocation: sourceLocation)
    fixture.skipPrinted()
    #expect(fixture.waitForLine(containing: "tick") != nil, "the server stopped ticking", sourceLocation: sourceLocation)
    #expect(!fixture.hasPrinted("BAD"), "the server computed a wrong result", sourceLocation: sourceLocation)
    #expect(fixture.isRunning, sourceLocation: sourceLocation)
}

/// Every byte of every function of every file-backed module, in memory, equals the file's.
func expectTextUntouched(_ pid: pid_t, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let image = try ProcessImage(pid: pid)
    var checked = 0, differing: [String] = []
    for module in image.modules where module.path.hasPrefix("/") {
        let fd = open("/proc/\(pid)/mem", O_RDONLY)
        defer { close(fd) }
        for function in image.functions(in: module) where function.size > 0 {
            guard let onDisk = image.fileBytes(of: function) else { continue }
            var inMemory = [UInt8](repeating: 0, count: onDisk.count)
            let n = pread(fd, &inMemory, onDisk.count, off_t(Int64(bitPattern: function.address)))
            if n != onDisk.count || inMemory != onDisk { differing.append("\(function.name)@\(module.name)") }
            checked += 1
        }
    }
    #expect(checked > 1000, "too few functions compared", sourceLocation: sourceLocation)
    #expect(differing.isEmpty, "text differs from the file after detach: \(differing.prefix(10))",
            sourceLocation: sourceLocation)
}

/// Polls a condition until it holds or `timeout` passes.
func waitFor(timeout: TimeInterval = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

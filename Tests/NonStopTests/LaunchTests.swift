import Foundation
import Glibc
import Testing
import TestSupport

/// Programs launched under nstrace: every call and return of every thread, exactly, while signals,
/// forks and vforks happen around them.
@Suite(.serialized) struct LaunchedPrograms {
    static let workerFunctions = ["fx_riprel", "fx_jmp8", "fx_tail32", "fx_tail_target", "fx_recursive"]

    func workers(cet: Bool) throws -> String {
        try Fixtures.build("workers", flags: ["-O1", "-g", "-pthread"] + (cet ? ["-fcf-protection=full"] : ["-fcf-protection=none"]),
                           variant: cet ? "cet" : "plain")
    }

    /// `jump-one-slot`: the jump strategy with every thread's tid on one stop slot, so that signals
    /// land while a trap pad holds a slot, pads find it held, and spoiled slots are settled.
    @Test(arguments: ["inline", "jump", "jump-one-slot", "step"], [false, true])
    func eightThreadsUnderSignalStormMissNoCall(strategy: String, cet: Bool) throws {
        let binary = try workers(cet: cet)
        let traceFile = Paths.scratch.appendingPathComponent("workers-\(strategy)-\(cet).jsonl").path
        let oneSlot = strategy == "jump-one-slot"
        let result = try nstrace(["--strategy", oneSlot ? "jump" : strategy, "--json", "-o", traceFile, "^fx_", "--", binary, "8", "250"],
                                 timeout: 300, environment: oneSlot ? ["NSTRACE_TEST_STOP_SLOTS": "1"] : [:])
        #expect(result.status == 0, "\(result)")
        // The program's own results and its children are unharmed.
        #expect(result.stdoutLines.contains("wrong results 0"), "\(result)")
        #expect(result.stdoutLines.contains("child exited 0"), "a forked child with inherited int3s must not die of SIGTRAP")
        #expect(result.stdoutLines.contains("vfork child exited 0"))

        let log = try TraceLog(file: traceFile)
        let expected = fixtureCounts(result.stdout)
        #expect(Set(expected.keys) == Set(Self.workerFunctions))
        let mainPid = try #require(log.of("exit").first?["pid"] as? Int)
        #expect(log.calls(pid: mainPid) == expected, "calls seen vs calls made")
        #expect(log.returns(pid: mainPid) == expected, "returns seen vs calls made")
        #expect(log.count("unwound") == 0)
        // Without -f, nothing is reported for the children.
        #expect(Set(log.events.compactMap { $0["pid"] as? Int }) == [mainPid])
        // The storm was real, and passed through to the program.
        #expect(log.count("signal") > 0)
        let received = result.stdoutLines.first { $0.hasPrefix("signals sent") }
        #expect(received != nil && !(received?.hasSuffix("received 0") ?? true), "\(received ?? "")")
        // Each with its own siginfo (SI_TKILL from the program), even one held behind another during a
        // step and sent again by nstrace.
        #expect(result.stdoutLines.contains("foreign signals 0"), "\(result.stdoutLines.filter { $0.contains("signals") })")
        #expect(log.count("thread_start") == 9)
        #expect(log.count("thread_exit") == 9)
    }

    @Test(arguments: ["inline", "jump", "step"])
    func followedChildrenAreTracedToo(strategy: String) throws {
        let binary = try workers(cet: false)
        let traceFile = Paths.scratch.appendingPathComponent("workers-follow-\(strategy).jsonl").path
        let result = try nstrace(["-f", "--strategy", strategy, "--json", "-o", traceFile, "^fx_", "--", binary, "4", "100"],
                                 timeout: 300)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong results 0"))
        let log = try TraceLog(file: traceFile)
        let forks = log.of("fork").compactMap { $0["child"] as? Int }
        #expect(forks.count == 2)
        let mainPid = try #require(log.of("fork").first?["pid"] as? Int)
        #expect(log.calls(pid: mainPid) == fixtureCounts(result.stdout))
        // The fork child runs 100 rounds: one call each, and DEPTH+1 = 4 for the recursion.
        let child = forks[0], vchild = forks[1]
        #expect(log.calls(pid: child) == ["fx_riprel": 100, "fx_jmp8": 100, "fx_tail32": 100, "fx_tail_target": 100,
                                          "fx_recursive": 400])
        #expect(log.returns(pid: child) == log.calls(pid: child))
        // The vfork child calls fx_jmp8 once in the parent's memory, then execs /bin/true.
        #expect(log.calls(pid: vchild) == ["fx_jmp8": 1])
        #expect(log.count("exec", pid: vchild) == 1)
    }

    /// A call still open when its process execs never returns: it is closed as unwound before the
    /// exec is told, and the new image is traced from its start.
    @Test(arguments: ["inline", "jump", "step"])
    func aCallOpenAtExecIsUnwoundAndTheNewImageIsTraced(strategy: String) throws {
        let binary = try Fixtures.build("calls", flags: ["-O1", "-g"])
        let traceFile = Paths.scratch.appendingPathComponent("exec-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^fx_(outer|exec)$", "--", binary, "2", "exec"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.filter { $0 == "calls fx_outer 2" }.count == 2, "both images ran: \(result.stdout)")
        let log = try TraceLog(file: traceFile)
        #expect(log.calls() == ["fx_outer": 4, "fx_exec": 1], "\(strategy)")
        #expect(log.returns() == ["fx_outer": 4], "\(strategy)")
        let kinds = log.events.compactMap { $0["event"] as? String }
        let unwound = kinds.firstIndex(of: "unwound"), exec = kinds.firstIndex(of: "exec")
        #expect(log.count("unwound", function: "fx_exec") == 1 && log.count("unwound") == 1, "\(strategy)")
        #expect(unwound != nil && exec != nil && unwound! < exec!, "\(strategy): the frame closes before the exec is told")
    }

    @Test func libraryLoadedByDlopenIsTraced() throws {
        let host = try Fixtures.build("dlopen_host", flags: ["-O1", "-g", "-ldl"])
        let library = try Fixtures.build("plugin", flags: ["-O1", "-g", "-shared", "-fPIC"], variant: "so")
        let traceFile = Paths.scratch.appendingPathComponent("dlopen.jsonl").path
        for strategy in ["inline", "jump", "step"] {
            let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^plugin_work$", "--", host, library, "300"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdoutLines.first?.hasPrefix("plugin calls 300") == true)
            let log = try TraceLog(file: traceFile)
            #expect(log.calls() == ["plugin_work": 300], "\(strategy)")
            #expect(log.returns() == ["plugin_work": 300], "\(strategy)")
            // Nothing matched in the program and the libraries it started with: told once, and nstrace
            // kept watching.
            let told = log.of("notice").compactMap { $0["message"] as? String }
                .filter { $0.contains("no function matches '^plugin_work$'") && $0.contains("keeps watching") }
            #expect(told.count == 1, "\(strategy): \(log.of("notice"))")
        }
    }

    /// dlclose takes a library's sites with it, and a dlopen of it again (at the same address, as a
    /// rule) gets them anew: only that library's, each time.
    @Test func libraryClosedAndOpenedAgainIsTracedEachTime() throws {
        let host = try Fixtures.build("dlopen_host", flags: ["-O1", "-g", "-ldl"])
        let library = try Fixtures.build("plugin", flags: ["-O1", "-g", "-shared", "-fPIC"], variant: "so")
        let traceFile = Paths.scratch.appendingPathComponent("dlclose.jsonl").path
        for strategy in ["inline", "jump", "step"] {
            let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^plugin_work$", "--", host, library, "100", "3"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdoutLines.first?.hasPrefix("plugin calls 300") == true, "\(result)")
            let log = try TraceLog(file: traceFile)
            #expect(log.calls() == ["plugin_work": 300], "\(strategy)")
            #expect(log.returns() == ["plugin_work": 300], "\(strategy)")
        }
    }

    /// The first instruction of a traced function faults: emulated (`jmp [rdi]`), relocated (`mov rax,
    /// [rdi]`), and once more where the handler repairs the page and returns so the load runs again.
    @Test(arguments: ["inline", "jump", "step"])
    func faultsInTracedInstructionsReachTheProgramAsTheyWouldHave(strategy: String) throws {
        let binary = try Fixtures.build("faults", flags: ["-O1", "-g"])
        let traceFile = Paths.scratch.appendingPathComponent("faults-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^fx_", "--", binary, "20"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong 0") && result.stdoutLines.contains("faults 60")
                && result.stdoutLines.contains("repaired 20"), "\(result)")
        let log = try TraceLog(file: traceFile)
        // A fault repaired by its handler re-runs the instruction: still one call.
        #expect(log.calls() == fixtureCounts(result.stdout))
        #expect(log.returns() == ["fx_jump_through": 20, "fx_load": 40])
        #expect(log.count("unwound") == 40, "the calls the handler longjmp'd out of")
        #expect(log.of("signal").count == 60 && log.of("signal").allSatisfy { $0["signal"] as? String == "SIGSEGV" })
    }

    @Test func exitStatusOfTheProgramIsNstracesOwn() throws {
        let result = try nstrace(["main", "--", "/bin/sh", "-c", "exit 7"])
        #expect(result.status == 7, "\(result)")
    }
}

import Foundation
import Glibc
import NonStop
import Testing
import TestSupport

/// `-S`: each thread's own syscalls, stopped on alone, with their arguments, results and errors, as
/// the fixture made them (it says how many), launched or attached to.
@Suite(.serialized) struct SyscallEvents {
    static let rounds = 3
    static let filter = "--syscalls=openat|read|write|close"

    func fixture() throws -> String {
        try Fixtures.build("syscalls", flags: ["-O1", "-g", "-pthread"])
    }

    /// One syscall event as `name(param=value,…) = retval errno`, addresses as `<addr>`.
    static func canonical(_ event: [String: Any]) -> String {
        let args = (event["args"] as? [[String: Any]] ?? []).map { arg -> String in
            var value = arg["value"].map { "\($0)" } ?? "nil"
            if value.hasPrefix("0x") { value = "<addr>" }
            return "\(arg["name"] as? String ?? "?")=\(value)"
        }
        let errno = (event["errno"] as? String).map { " \($0)" } ?? ""
        return "\(event["name"] as? String ?? "?")(\(args.joined(separator: ","))) = \(event["retval"].map { "\($0)" } ?? "nil")\(errno)"
    }

    /// What worker `i` makes in one round, with the fds its openats returned.
    static func round(_ i: Int, in fdIn: Int, out fdOut: Int) -> [String] {
        [
            "openat(dfd=AT_FDCWD,filename=/nonexistent/nstrace-missing-\(i),flags=O_RDONLY) = -1 ENOENT",
            "openat(dfd=AT_FDCWD,filename=/dev/zero,flags=O_RDONLY|O_CLOEXEC) = \(fdIn)",
            "openat(dfd=AT_FDCWD,filename=/dev/null,flags=O_WRONLY|O_CREAT|O_TRUNC,mode=0644) = \(fdOut)",
            "read(fd=\(fdIn),buf=\(String(repeating: "\0", count: 16)),count=16) = 16",
            "write(fd=\(fdOut),buf=worker \(i)\n,count=9) = 9",
            "read(fd=-1,buf=<addr>,count=16) = -1 EBADF",
            "close(fd=\(fdIn)) = 0",
            "close(fd=\(fdOut)) = 0",
        ]
    }

    /// Every worker thread (every thread but the main one) made exactly the fixture's syscalls, in order.
    static func expectWorkerSyscalls(_ log: TraceLog, mainPid: Int, rounds: Int = SyscallEvents.rounds,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        let syscalls = log.of("syscall")
        let byThread = Dictionary(grouping: syscalls.filter { $0["tid"] as? Int != mainPid }) { $0["tid"] as? Int ?? 0 }
        #expect(byThread.count == 4, "worker threads seen: \(byThread.keys.sorted())", sourceLocation: sourceLocation)
        var workersSeen: Set<Int> = []
        for (tid, events) in byThread {
            #expect(events.count == 8 * rounds, "thread \(tid): \(events.count) syscalls", sourceLocation: sourceLocation)
            guard events.count == 8 * rounds else { continue }
            let path = ((events[0]["args"] as? [[String: Any]])?.dropFirst().first?["value"] as? String) ?? ""
            guard let i = Int(path.split(separator: "-").last ?? "") else {
                Issue.record("thread \(tid) begins with \(canonical(events[0]))", sourceLocation: sourceLocation)
                continue
            }
            workersSeen.insert(i)
            for r in 0..<rounds {
                let slice = Array(events[(8 * r)..<(8 * r + 8)])
                let fdIn = slice[1]["retval"] as? Int ?? -1, fdOut = slice[2]["retval"] as? Int ?? -1
                #expect(fdIn >= 3 && fdOut >= 3 && fdIn != fdOut, sourceLocation: sourceLocation)
                #expect(slice.map(canonical) == round(i, in: fdIn, out: fdOut), "thread \(tid) round \(r)",
                        sourceLocation: sourceLocation)
                for event in slice {
                    #expect(event["duration_ns"] is Int && event["pid"] as? Int == mainPid && event["ts_ns"] is Int,
                            sourceLocation: sourceLocation)
                }
            }
        }
        #expect(workersSeen == [0, 1, 2, 3], sourceLocation: sourceLocation)
    }

    static func pid(in stdout: String) -> Int? {
        stdout.split(separator: "\n").first { $0.hasPrefix("pid ") }.flatMap { Int($0.dropFirst(4)) }
    }

    @Test func launchedProgramsSyscallsAreReportedExactlyInJSON() throws {
        let binary = try fixture()
        let traceFile = Paths.scratch.appendingPathComponent("syscalls-launch.jsonl").path
        let result = try nstrace([Self.filter, "--json", "-o", traceFile, "--", binary, "\(Self.rounds)"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("failures 0"))
        #expect(result.stdoutLines.contains("syscalls per thread \(8 * Self.rounds)"))
        let log = try TraceLog(file: traceFile)
        let mainPid = try #require(Self.pid(in: result.stdout))
        Self.expectWorkerSyscalls(log, mainPid: mainPid)
        // The main thread's own: the dynamic loader's opens and reads, the fixture's printf.
        let main = log.of("syscall").filter { $0["tid"] as? Int == mainPid }
        #expect(main.contains { $0["name"] as? String == "write" && ($0["args"] as? [[String: Any]])?.first?["value"] as? Int == 1 })
        #expect(log.count("call") == 0, "syscalls alone: no function is traced")
    }

    @Test func launchedProgramsSyscallsReadAsStraceWritesThem() throws {
        let binary = try fixture()
        let traceFile = Paths.scratch.appendingPathComponent("syscalls-launch.txt").path
        let result = try nstrace(["-S", "-T", "-o", traceFile, "--", binary, "\(Self.rounds)"])
        #expect(result.status == 0, "\(result)")
        let mainPid = try #require(Self.pid(in: result.stdout))
        let text = try String(contentsOfFile: traceFile, encoding: .utf8)
        // `[tid] name(args) = result  <seconds>`
        let line = try Regex(#"^\[(\d+)\] ([a-z0-9_]+\(.*\) = .*)  <\d+\.\d{6}>$"#)
        var byThread: [Int: [String]] = [:]
        for raw in text.split(separator: "\n") {
            guard let match = try line.wholeMatch(in: String(raw)), let tid = Int(match.output[1].substring ?? ""),
                  tid != mainPid, let call = match.output[2].substring else { continue }
            let name = call.prefix { $0 != "(" }
            guard ["openat", "read", "write", "close"].contains(name) else { continue }
            byThread[tid, default: []].append(String(call))
        }
        #expect(byThread.count == 4, "\(text.prefix(2000))")
        let fdPattern = try Regex(#"= (\d+)$"#)
        var workersSeen: Set<Int> = []
        for (tid, lines) in byThread {
            #expect(lines.count == 8 * Self.rounds, "thread \(tid)")
            guard lines.count == 8 * Self.rounds, let i = Int(lines[0].split(separator: "\"")[1].split(separator: "-").last ?? "")
            else { continue }
            workersSeen.insert(i)
            for r in 0..<Self.rounds {
                let slice = Array(lines[(8 * r)..<(8 * r + 8)])
                let fdIn = Int(slice[1].firstMatch(of: fdPattern)?.output[1].substring ?? "") ?? -1
                let fdOut = Int(slice[2].firstMatch(of: fdPattern)?.output[1].substring ?? "") ?? -1
                let zeros = String(repeating: #"\0"#, count: 16)
                let expected = [
                    #"openat(AT_FDCWD, "/nonexistent/nstrace-missing-\#(i)", O_RDONLY) = -1 ENOENT (No such file or directory)"#,
                    #"openat(AT_FDCWD, "/dev/zero", O_RDONLY|O_CLOEXEC) = \#(fdIn)"#,
                    #"openat(AT_FDCWD, "/dev/null", O_WRONLY|O_CREAT|O_TRUNC, 0644) = \#(fdOut)"#,
                    #"read(\#(fdIn), "\#(zeros)", 16) = 16"#,
                    #"write(\#(fdOut), "worker \#(i)\n", 9) = 9"#,
                    "read(-1, <addr>, 16) = -1 EBADF (Bad file descriptor)",
                    "close(\(fdIn)) = 0",
                    "close(\(fdOut)) = 0",
                ]
                let seen = slice.map { $0.replacing(try! Regex("0x[0-9a-f]+"), with: "<addr>") }
                #expect(seen == expected, "thread \(tid) round \(r)")
            }
        }
        #expect(workersSeen == [0, 1, 2, 3])
        // exit and exit_group never return: told at their entry, with strace's `= ?`.
        let lines = text.split(separator: "\n").map(String.init)
        for tid in byThread.keys { #expect(lines.contains("[\(tid)] exit(0) = ?  <0.000000>"), "thread \(tid)") }
        #expect(lines.contains("[\(mainPid)] exit_group(0) = ?  <0.000000>"), "\(text.suffix(500))")
    }

    /// Calls from the inline ring (or from stops) and syscalls from stops, merged: each thread's events
    /// in the order it made them.
    @Test(arguments: ["inline", "jump", "step"])
    func syscallsNestInsideTheCallsThatMadeThem(strategy: String) throws {
        let binary = try fixture()
        let traceFile = Paths.scratch.appendingPathComponent("syscalls-calls-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, Self.filter, "--json", "-o", traceFile, "^sx_round$", "--", binary,
                                  "\(Self.rounds)"])
        #expect(result.status == 0, "\(result)")
        let log = try TraceLog(file: traceFile)
        let mainPid = try #require(Self.pid(in: result.stdout))
        Self.expectWorkerSyscalls(log, mainPid: mainPid)
        let workers = Dictionary(grouping: log.events.filter {
            $0["tid"] as? Int != mainPid && ["call", "return", "syscall"].contains($0["event"] as? String ?? "")
        }) { $0["tid"] as? Int ?? 0 }
        let oneRound = ["call"] + Array(repeating: "syscall", count: 8) + ["return"]
        for (tid, events) in workers {
            #expect(events.map { $0["event"] as? String ?? "" } == Array([[String]](repeating: oneRound, count: Self.rounds).joined()),
                    "thread \(tid)")
        }
    }

    @Test func attachedProcessesSyscallsAreReportedAndNoFilterIsLeft() throws {
        let binary = try fixture()
        let fixture = try RunningFixture(binary, ["\(Self.rounds)", "wait"])
        defer { fixture.stop() }
        let traceFile = Paths.scratch.appendingPathComponent("syscalls-attach.jsonl").path
        let trace = try BackgroundTrace([Self.filter, "--json", "-o", traceFile, "-p", "\(fixture.pid)"], outputFile: traceFile)
        #expect(trace.waitForLines(containing: "\"attach\"", count: 1))
        kill(fixture.pid, SIGUSR1)
        #expect(fixture.waitForLine(containing: "done") != nil)
        #expect(fixture.hasPrinted("failures 0"))
        // The workers' and the main thread's printf (one write).
        #expect(trace.waitForLines(containing: "\"syscall\"", count: 4 * 8 * Self.rounds + 1))
        let end = try #require(trace.stop(), "nstrace did not exit after SIGINT")
        #expect(end.status == 0, "\(end.stderr)")
        let log = try TraceLog(file: traceFile)
        Self.expectWorkerSyscalls(log, mainPid: Int(fixture.pid))
        #expect(log.count("attach") == 1 && log.count("detach") == 1)
        // Let go whole: no tracer, no seccomp filter, still running.
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 })
        let status = try String(contentsOfFile: "/proc/\(fixture.pid)/status", encoding: .utf8)
        #expect(status.split(separator: "\n").contains("Seccomp:\t0"), "\(status)")
        #expect(fixture.isRunning)
        // SIGUSR1 (blocked, waited for) lets it finish: exit 0.
        #expect(fixture.stop(signal: SIGUSR1) == 0)
    }
}

/// The checked-in name table (Scripts/gen-syscall-names) against the installed kernel header: a
/// number added, renamed or moved there shows here.
@Test func syscallTableMatchesKernelHeader() throws {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    let text = try String(contentsOfFile: header, encoding: .utf8)
    var fromHeader: [Int: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[0] == "#define", parts[1].hasPrefix("__NR_"), let number = Int(parts[2]) else { continue }
        fromHeader[number] = String(parts[1].dropFirst(5))
    }
    #expect(fromHeader.count > 300)
    #expect(fromHeader[257] == "openat")
    #expect(SyscallSelection.highestNumber == fromHeader.keys.max())
    for number in 0...SyscallSelection.highestNumber {
        #expect(SyscallSelection.name(of: number) == fromHeader[number], "syscall \(number)")
    }
    // Whole names, as strace's -e trace= takes them; commas as alternatives.
    let chosen = try SyscallSelection(pattern: "read,openat")
    #expect((0...SyscallSelection.highestNumber).filter { chosen.contains(UInt64($0)) } == [0, 257])
    #expect(try SyscallSelection(pattern: "nosuchsyscall").isEmpty)
}

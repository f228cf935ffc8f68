import Foundation
import Glibc
import Testing
import TestSupport

/// nstrace crashing on purpose (`NSTRACE_TEST_CRASH=N`: a precondition failure on the engine thread
/// after N events) in the middle of a trace: its crash guard must put every byte back and let every
/// thread go, so the program runs on with correct results, as if nstrace had never been there.
@Suite(.serialized) struct CrashGuard {
    static let crashMessage = "nstrace: internal error (signal 4): put back"

    @Test(arguments: ["inline", "jump", "step"])
    func aCrashOfNstraceLeavesTheAttachedServerRunningUntouched(strategy: String) throws {
        let fixture = try RunningFixture(try Fixtures.build("server", flags: ["-O1", "-g", "-pthread"]), ["4"])
        defer { fixture.stop() }
        let traceFile = Paths.scratch.appendingPathComponent("crash-\(strategy).jsonl").path
        let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", traceFile, "-p", "\(fixture.pid)", "^srv_"],
                                        outputFile: traceFile, environment: ["NSTRACE_TEST_CRASH": "2000"])
        let end = try #require(trace.waitForExit(timeout: 120), "nstrace neither crashed nor exited")
        #expect(end.status == 128 + SIGILL, "nstrace did not crash as asked: \(end)")
        #expect(end.stderr.contains(Self.crashMessage) && end.stderr.contains("the traced program runs on"), "\(end.stderr)")
        // What was traced before the crash may not have reached the file; the engine says how far it got.
        #expect(end.stderr.contains("a crash on purpose, after"), "it crashed elsewhere: \(end.stderr)")
        try expectServerRunsOnUntouched(fixture)
    }

    @Test(arguments: ["inline", "jump", "step"])
    func aCrashOfNstraceLetsTheLaunchedProgramFinishWithCorrectResults(strategy: String) throws {
        let binary = try Fixtures.build("workers", flags: ["-O1", "-g", "-pthread", "-fcf-protection=none"], variant: "plain")
        let traceFile = Paths.scratch.appendingPathComponent("crash-launch-\(strategy).jsonl").path
        let process = try Subprocess(Paths.nstrace, ["--strategy", strategy, "--json", "-o", traceFile, "^fx_", "--", binary, "8", "400"],
                                     environment: ["NSTRACE_TEST_CRASH": "3000"], stdout: .pipe, stderr: .pipe)
        let out = DrainedPipe(process.stdoutHandle), err = DrainedPipe(process.stderrHandle)
        let status = process.wait(timeout: 120)
        if status == nil { process.kill(SIGKILL) }
        #expect(status == 128 + SIGILL, "nstrace did not crash as asked")
        // The program outlives nstrace and keeps its stdout: its output ends when it does.
        let program = (try? TraceLog(growingFile: traceFile))?.events.first?["pid"] as? Int
        guard let data = out.wait(timeout: 120) else {
            if let program { kill(pid_t(program), SIGKILL) }
            Issue.record("the program never finished after nstrace crashed")
            return
        }
        let stderr = String(decoding: err.wait(timeout: 30) ?? Data(), as: UTF8.self)
        #expect(stderr.contains(Self.crashMessage), "\(stderr)")
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.contains("wrong results 0"), "\(lines)")
        #expect(lines.contains("child exited 0"), "\(lines)")
        #expect(lines.contains("vfork child exited 0"), "\(lines)")
        let counts = fixtureCounts(lines.joined(separator: "\n"))
        #expect(counts["fx_riprel"] == 8 * 400, "\(counts)")
        #expect(lines.contains("riprel counter \(counts["fx_riprel"] ?? -1)"), "\(lines)")
    }
}

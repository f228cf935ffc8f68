import Foundation
import Glibc
import Testing
import TestSupport

/// Bad input to the trace command: one line on stderr naming the problem, a non-zero exit, and
/// nothing attached or launched.
@Suite struct TraceErrors {
    func expectOneLine(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try nstrace(arguments, timeout: 60)
        #expect(result.status != 0, "\(arguments)", sourceLocation: sourceLocation)
        #expect(result.stderrLines == ["nstrace: \(message)"], "\(result)", sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, sourceLocation: sourceLocation)
    }

    @Test func targetsThatCannotBeTraced() throws {
        try expectOneLine(["-p", "99999999", "x"], "no such process: 99999999")
        try expectOneLine(["x", "--", "/nonexistent/program"], "no such program: /nonexistent/program")
        try expectOneLine(["x", "--", "no-such-program-on-path"], "no such program: no-such-program-on-path")
        let plain = Paths.scratch.appendingPathComponent("not-executable").path
        try "just words\n".write(toFile: plain, atomically: true, encoding: .utf8)
        chmod(plain, 0o644)
        try expectOneLine(["x", "--", plain], "permission denied: cannot execute \(plain)")
        let text = Paths.scratch.appendingPathComponent("executable-text").path
        try "just words\n".write(toFile: text, atomically: true, encoding: .utf8)
        chmod(text, 0o755)
        try expectOneLine(["x", "--", text], "not an ELF file: \(text)")
    }

    @Test func patternsThatAreWrongOrMatchNothing() throws {
        let fixture = try RunningFixture(try Fixtures.build("symbols", flags: ["-O1", "-g"], variant: "errors"), ["wait"])
        defer { fixture.stop() }
        try expectOneLine(["-p", "\(fixture.pid)", "fx_(add"], "invalid regexp \"fx_(add\" at column 8: expected ')'")
        try expectOneLine(["-p", "\(fixture.pid)", "^no_such_function$"], "no function matches \"^no_such_function$\"")
        #expect(tracers(of: fixture.pid).values.allSatisfy { $0 == 0 }, "a bad pattern must not leave anything attached")
    }

    @Test func nstraceWillNotTraceItself() throws {
        // The shell execs nstrace, which keeps the shell's pid: `-p $$` names nstrace itself.
        let result = try run("/bin/sh", ["-c", "exec \(Paths.nstrace) -p $$ main"])
        #expect(result.status != 0)
        #expect(result.stderrLines == ["nstrace: nstrace cannot trace itself"], "\(result)")
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run nstrace as another user"))
    func someoneElsesProcessIsPermissionDenied() throws {
        let fixture = try RunningFixture(try Fixtures.build("symbols", flags: ["-O1"], variant: "root-owned-trace"), ["wait"])
        defer { fixture.stop() }
        let result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                  Paths.nstrace, "-p", "\(fixture.pid)", "fx_"])
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1, "\(result)")
        #expect(result.stderr.hasPrefix("nstrace: permission denied"), "\(result)")
    }

    @Test(arguments: [
        (["x"], "give a program after -- or a process with -p PID"),
        (["-p", "1", "x", "--", "/bin/true"], "-p PID and a program after -- cannot be combined"),
        (["--strategy", "teleport", "x", "--", "/bin/true"], "--strategy must be inline, jump or step"),
        (["-c", "--json", "x", "--", "/bin/true"], "--summary and --json cannot be combined (the summary is text)"),
        (["--max-calls", "0", "x", "--", "/bin/true"], "--max-calls must be at least 1"),
        (["--duration=-1", "x", "--", "/bin/true"], "--duration must be a positive number of seconds"),
        (["--stack=-3", "x", "--", "/bin/true"], "--stack must be between 0 and 256"),
        (["-p", "1", "-p", "1", "x"], "the same -p PID is given twice"),
        (["-p", "0", "x"], "-p takes a process id greater than 0"),
        (["-o", "/tmp/same", "--chrome-trace", "/tmp/same", "x", "--", "/bin/true"], "--chrome-trace and -o must name different files"),
        (["--no-such-flag", "x", "--", "/bin/true"], "Unknown option '--no-such-flag'"),
        (["--min-duration", "10parsecs", "x", "--", "/bin/true"], "--min-duration must be a duration such as 500ns, 10us, 1ms or 2s"),
        (["--min-duration=-5ms", "x", "--", "/bin/true"], "--min-duration must be a duration such as 500ns, 10us, 1ms or 2s"),
        (["--max-depth", "0", "x", "--", "/bin/true"], "--max-depth must be at least 1"),
        (["--follow-calls", "0", "x", "--", "/bin/true"], "--follow-calls must be between 1 and 64"),
        (["--follow-calls", "2", "--syscalls=read", "--", "/bin/true"], "--follow-calls needs a REGEX of functions whose calls to follow"),
        (["--exclude", "fx_(", "x", "--", "/bin/true"], "--exclude: invalid regexp \"fx_(\" at column 5: expected ')'"),
        (["--caller", "", "x", "--", "/bin/true"], "--caller needs a module's file name or path"),
        (["--folded-weight", "bytes", "x", "--", "/bin/true"], "--folded-weight must be time or calls"),
        (["-o", "/tmp/same", "--folded", "/tmp/same", "x", "--", "/bin/true"], "--folded must name a file of its own (not the -o or --chrome-trace one)"),
        (["-p", "abc", "x"], "The value 'abc' is invalid for '-p <PID>'"),
    ] as [([String], String)])
    func badFlagCombinations(arguments: [String], message: String) throws {
        try expectOneLine(arguments, message)
    }

    @Test func helpReadsLikeStracesAndExitsZero() throws {
        let result = try nstrace(["--help"])
        #expect(result.status == 0)
        for text in ["-p", "-f", "-o", "-c", "-T", "-t", "--stack", "--json", "--chrome-trace", "--strategy",
                     "--max-string", "--max-calls", "--duration", "--tid", "--debug",
                     "--min-duration", "--max-depth", "--exclude", "--caller", "--folded", "--follow-calls", "Examples:", "nstrace list"] {
            #expect(result.stdout.contains(text), "--help does not mention \(text)")
        }
    }
}

import BenchSupport
import Foundation

/// A command running in the background in a process group of its own, its output in files: the
/// redis server, and a tracer attached to it until it is told to stop.
final class RunningCommand {
    let argv: [String]
    let stdoutPath: String
    let stderrPath: String
    private var child = nsb_child()
    private(set) var outcome: Command.Outcome?

    var pid: pid_t { pid_t(child.pid) }

    /// Starts `argv` with `environment` added to nstrace-bench's own; returns once it runs.
    init(_ argv: [String], environment: [String: String] = [:], scratch: String, name: String) throws {
        self.argv = argv
        let out = "\(scratch)/\(name).stdout", err = "\(scratch)/\(name).stderr"
        stdoutPath = out
        stderrPath = err
        var spawned = nsb_child()
        let rc = Command.withCArguments(argv, environment) { nsb_spawn($0, $1, out, err, &spawned) }
        child = spawned
        if rc != 0 { throw BenchError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
    }

    deinit {
        if outcome == nil { _ = kill() }
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Whether it has ended (reaping it if so).
    var hasExited: Bool { wait(seconds: 0) != nil }

    /// Waits at most `seconds` for it to end by itself.
    @discardableResult
    func wait(seconds: Double) -> Command.Outcome? {
        if let outcome { return outcome }
        var result = nsb_run_result()
        guard nsb_wait(&child, Int64(seconds * 1000), &result) == 0 else { return nil }
        let o = Command.Outcome(timedOut: false, exitCode: nsb_exit_code(result.status),
                                wallSeconds: Double(result.wall_ns) / 1e9, stdout: stdout, stderr: stderr)
        outcome = o
        return o
    }

    /// Sends `signal` to the command and waits at most `grace` seconds for it to end; then kills its
    /// whole process group. With `resendEvery`, the signal is sent again at that interval while it
    /// runs (for a command that takes a repeated signal as harmless). `timedOut` in the outcome says
    /// whether it had to be killed.
    func stop(signal: Int32 = SIGINT, grace: Double, resendEvery: Double? = nil) -> Command.Outcome {
        if let outcome { return outcome }
        let deadline = Date().addingTimeInterval(grace)
        repeat {
            _ = nsb_signal(&child, signal)
            let left = deadline.timeIntervalSinceNow
            if let o = wait(seconds: max(0, min(left, resendEvery ?? left))) { return o }
        } while deadline.timeIntervalSinceNow > 0
        return kill()
    }

    /// Kills its process group and reaps it.
    @discardableResult
    func kill() -> Command.Outcome {
        if let outcome { return outcome }
        _ = nsb_kill_group(&child, SIGKILL)
        let o = wait(seconds: 60) ?? Command.Outcome(timedOut: true, exitCode: -1, wallSeconds: 0, stdout: stdout, stderr: stderr)
        let killed = Command.Outcome(timedOut: true, exitCode: o.exitCode, wallSeconds: o.wallSeconds, stdout: o.stdout, stderr: o.stderr)
        outcome = killed
        return killed
    }
}

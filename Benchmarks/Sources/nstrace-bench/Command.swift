import BenchSupport
import Foundation

/// One command run to completion, with a deadline, its output in files.
enum Command {
    struct Outcome {
        let timedOut: Bool
        let exitCode: Int32
        let wallSeconds: Double
        let stdout: String
        let stderr: String
    }

    /// Runs `argv` with `environment` added to nstrace-bench's own, stdout and stderr to files
    /// under `scratch` (kept until the next run with the same name overwrites them).
    static func run(_ argv: [String], environment: [String: String] = [:], timeout: Double,
                    scratch: String, name: String) throws -> Outcome {
        let out = "\(scratch)/\(name).stdout", err = "\(scratch)/\(name).stderr"
        var result = nsb_run_result()
        let rc = withCArguments(argv, environment) { nsb_run($0, $1, out, err, Int64(timeout * 1000), &result) }
        if rc != 0 { throw BenchError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        return Outcome(timedOut: result.timed_out != 0, exitCode: nsb_exit_code(result.status),
                       wallSeconds: Double(result.wall_ns) / 1e9,
                       stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// `argv` and nstrace-bench's own environment with `environment` added, as the NULL-terminated C
    /// arrays exec takes, valid during `body`.
    static func withCArguments<R>(_ argv: [String], _ environment: [String: String],
                                  _ body: ([UnsafeMutablePointer<CChar>?], [UnsafeMutablePointer<CChar>?]) -> R) -> R {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        return body(cArgs, cEnv)
    }

    /// A build step: output passed through to stderr unless `quiet` (then shown only on failure).
    static func run(_ argv: [String], quiet: Bool) throws -> Int32 {
        let scratch = NSTemporaryDirectory()
        let name = "nstrace-bench-\(getpid())-build"
        let outcome = try run(argv, timeout: 1800, scratch: scratch, name: name)
        defer {
            try? FileManager.default.removeItem(atPath: "\(scratch)/\(name).stdout")
            try? FileManager.default.removeItem(atPath: "\(scratch)/\(name).stderr")
        }
        if !quiet || outcome.exitCode != 0 {
            FileHandle.standardError.write(Data((outcome.stdout + outcome.stderr).utf8))
        }
        return outcome.exitCode
    }

    /// Whether `program` is found in PATH.
    static func which(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

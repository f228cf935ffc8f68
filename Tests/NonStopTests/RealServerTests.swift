import Foundation
import Glibc
import Testing
import TestSupport

/// A server nobody here wrote, under load from its own benchmark client, traced and let go repeatedly.
@Suite(.serialized) struct RealServer {
    static let redisServer = "/usr/bin/redis-server"
    static let redisBenchmark = "/usr/bin/redis-benchmark"
    static let redisCLI = "/usr/bin/redis-cli"

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: redisServer), "redis-server is not installed (Scripts/setup installs it)"),
          arguments: ["inline", "jump", "step"])
    func redisUnderLoadServesEveryRequestWhileTracedAndAfter(strategy: String) throws {
        let port = 17_000 + Int(getpid() % 1000) + (strategy == "jump" ? 0 : 1)
        let redis = try RunningFixture(Self.redisServer, ["--port", "\(port)", "--save", "", "--appendonly", "no"],
                                       readyText: "Ready to accept connections")
        defer { redis.stop(signal: SIGTERM) }
        let load = try Subprocess(Self.redisBenchmark, ["-p", "\(port)", "-n", "150000", "-c", "16", "-q", "-t", "set,get"],
                                  stdout: .pipe, stderr: .pipe)
        let loadOutput = DrainedOutput(load)
        let traceFile = Paths.scratch.appendingPathComponent("redis-\(strategy).jsonl").path
        for round in 1...3 {
            let trace = try BackgroundTrace(["--strategy", strategy, "--json", "-o", traceFile, "-p", "\(redis.pid)", "^(read|write)$"],
                                            outputFile: traceFile)
            #expect(trace.waitForLines(containing: "\"return\"", count: 200), "round \(round): no read/write seen")
            let end = try #require(trace.stop(), "round \(round): nstrace did not exit after SIGINT")
            #expect(end.status == 0, "round \(round): \(end.stderr)")
            #expect(redis.isRunning, "round \(round): redis died: \(redis.state)")
            #expect(tracers(of: redis.pid).values.allSatisfy { $0 == 0 })
        }
        let status = load.wait(timeout: 300)
        let output = loadOutput.text
        #expect(status == 0, "redis-benchmark: \(output)")
        #expect(!output.lowercased().contains("error"), "redis-benchmark saw errors: \(output)")
        #expect(output.contains("GET:") && output.contains("SET:"), "\(output)")
        // And it keeps serving.
        let set = try run(Self.redisCLI, ["-p", "\(port)", "set", "nstrace", "untouched"])
        let get = try run(Self.redisCLI, ["-p", "\(port)", "get", "nstrace"])
        #expect(set.stdout.contains("OK") && get.stdout.contains("untouched"), "\(set) \(get)")
    }
}

/// A subprocess's stdout and stderr, read as they come, available once it has exited.
final class DrainedOutput: @unchecked Sendable {
    private let out: DrainedPipe
    private let err: DrainedPipe

    init(_ process: Subprocess) {
        out = DrainedPipe(process.stdoutHandle)
        err = DrainedPipe(process.stderrHandle)
    }

    var text: String {
        String(decoding: out.wait() + err.wait(), as: UTF8.self).replacingOccurrences(of: "\r", with: "\n")
    }
}

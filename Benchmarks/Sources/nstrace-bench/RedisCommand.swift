import ArgumentParser
import Foundation

/// `nstrace-bench redis`: a redis server's throughput while each tool traces libc's read and write
/// in it (attach mode), against the same server untraced.
struct RedisCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "A redis server's GET throughput while each tool traces its read and write.",
        discussion: """
            For each tool and round: a fresh redis-server on a free loopback port (no persistence), \
            the tool attached to it (nstrace -p PID -c, bpftrace, frida's Interceptor, ltrace -p), \
            redis-benchmark -t get, the tool detached, then the server checked: still running, \
            answering PING and a SET/GET round trip, libc's read and write restored. Rounds \
            alternate the tools' order; medians are reported. Needs redis-server, redis-cli and \
            redis-benchmark (apt-get install redis-server redis-tools).
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("Seconds one measured run should take; requests are sized from each tool's first run (default 2.5; --quick 0.6).", valueName: "SECONDS"))
    var seconds: Double?

    @Option(help: ArgumentHelp("The most requests in one run.", valueName: "N"))
    var maxRequests: Int = 100_000

    @Option(help: ArgumentHelp("redis-benchmark's parallel connections.", valueName: "N"))
    var clients: Int = 16

    func validate() throws {
        if let seconds, !(seconds > 0) { throw ValidationError("--seconds must be positive") }
        if maxRequests < 1000 { throw ValidationError("--max-requests must be at least 1000") }
        if !(1...1000).contains(clients) { throw ValidationError("--clients takes 1 to 1000") }
        _ = try options.selected(known: RedisToolID.allCases.map(\.rawValue), what: "tool")
    }

    func run() throws {
        let log = Progress()
        let location = try Location.find()
        let binary = try options.nstrace ?? location.nstraceBinary(log: log)
        let only = try options.selected(known: RedisToolID.allCases.map(\.rawValue), what: "tool")
        let quick = options.quick
        let scratch = NSTemporaryDirectory() + "nstrace-bench-redis-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let peers = Peers.find(packageRoot: location.packageRoot, scratch: scratch)
        log.note("peers: " + (peers.versions.isEmpty ? "none installed" : peers.versions.joined(separator: ", ")))
        guard let server = peers.redisServer, let benchmark = peers.redisBenchmark, let cli = peers.redisCLI else {
            throw BenchError("redis-server, redis-benchmark and redis-cli are needed (apt-get install redis-server redis-tools)")
        }

        let plan = RedisPlan(
            tools: RedisTool.all(nstrace: binary, peers: peers).filter { t in
                t.id == .untraced || (only?.contains(t.id.rawValue) ?? true)
            },
            rounds: options.rounds ?? (quick ? 3 : 5), clients: clients,
            probeRequests: quick ? 1000 : 2000, targetSeconds: seconds ?? (quick ? 0.6 : 2.5),
            minRequests: quick ? 1000 : 2000, maxRequests: maxRequests, timeout: options.timeout ?? 60,
            redisServer: server, redisBenchmark: benchmark, redisCLI: cli)
        let cells = try RedisSuite(plan: plan, scratch: scratch, log: log).run()
        let report = RedisReport(plan: plan, cells: cells, environment: .current(workIterations: 0, peers: peers.versions))
        print(report.text())
        if let json = options.json { try report.json().write(toFile: json, atomically: true, encoding: .utf8) }
        if let markdown = options.markdown { try report.markdown().write(toFile: markdown, atomically: true, encoding: .utf8) }
    }
}

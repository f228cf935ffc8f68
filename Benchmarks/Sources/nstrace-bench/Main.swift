import ArgumentParser
import Foundation

/// `swift run -c release nstrace-bench`: the overhead suite, then the micro-benchmarks.
@main
struct NSTraceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nstrace-bench",
        abstract: "nstrace's overhead against other tracers, a ptrace floor, and micro-benchmarks of its hot paths.",
        discussion: """
            Every contender traces the same C workload (T threads, each calling one function K
            times) in the same run, in alternating order, several rounds; medians are reported.
            Per-call overhead is (traced - untraced) loop time / calls, the loop timed by the
            workload itself, so start-up and detach are not counted. Peers that are not installed
            (ltrace, gdb, bpftrace, uftrace, frida) are reported as skipped. `nstrace-bench redis`
            measures a redis server's throughput while each tool traces its read and write.
            """,
        subcommands: [MicroCommand.self, RedisCommand.self, CoverageCommand.self, RenderCommand.self, SyscallCommand.self]
    )

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("Write the per-call overhead plot (SVG) to FILE.", valueName: "FILE"))
    var plot: String?

    @Option(help: ArgumentHelp("Thread counts (default 1,2,4,8,16; --quick 1,4).", valueName: "N,N,..."))
    var threads: String?

    @Option(help: ArgumentHelp("Calls per thread in each run (default 500).", valueName: "K"))
    var calls: Int?

    @Option(help: ArgumentHelp("Workloads to run, comma-separated: tiny, work (default: both).", valueName: "NAME,..."))
    var workloads: String?

    @Flag(help: "Skip the micro-benchmarks.")
    var noMicro = false

    @Flag(help: "Run every contender, tracer and workload alike, on CPU 0 (taskset -c 0).")
    var pin = false

    var quick: Bool { options.quick }

    func validate() throws {
        if let calls, calls < 1 { throw ValidationError("--calls must be at least 1") }
        _ = try threadCounts()
        _ = try selectedWorkloads()
        // This runs for `nstrace-bench redis --only …` too (the parent is always decoded): accept
        // the redis tools' names here, and let each command check its own.
        _ = try options.selected(known: ContenderID.allCases.map(\.rawValue)
                                     + RedisToolID.allCases.map(\.rawValue).filter { ContenderID(rawValue: $0) == nil },
                                 what: "contender")
    }

    func threadCounts() throws -> [Int] {
        guard let threads else { return quick ? [1, 4] : [1, 2, 4, 8, 16] }
        let counts = threads.split(separator: ",").compactMap { Int($0) }
        guard !counts.isEmpty, counts.count == threads.split(separator: ",").count, counts.allSatisfy({ (1...64).contains($0) })
        else { throw ValidationError("--threads takes thread counts between 1 and 64, comma-separated") }
        return counts
    }

    func selectedWorkloads() throws -> [Workload] {
        guard let workloads else { return Workload.allCases }
        return try workloads.split(separator: ",").map {
            guard let w = Workload(rawValue: String($0)) else { throw ValidationError("unknown workload \($0); known: tiny, work") }
            return w
        }
    }

    func run() throws {
        let log = Progress()
        let location = try Location.find()
        let binary = try options.nstrace ?? location.nstraceBinary(log: log)
        let only = try options.selected(known: ContenderID.allCases.map(\.rawValue), what: "contender")
        let programs = try Programs.build(sources: location.cSources, log: log)
        defer { programs.remove() }
        let peers = Peers.find(packageRoot: location.packageRoot, scratch: programs.directory)
        log.note("peers: " + (peers.versions.isEmpty ? "none installed" : peers.versions.joined(separator: ", ")))

        var plan = SuitePlan(
            workloads: try selectedWorkloads(),
            threadCounts: try threadCounts(),
            callsPerThread: calls ?? 500,
            rounds: options.rounds ?? (quick ? 3 : 7),
            timeout: options.timeout ?? 120,
            contenders: Contender.all(nstrace: binary, programs: programs, peers: peers)
                .filter { c in
                    // Every figure is read against these two, so they always run.
                    c.id == .untraced || c.id == .floor
                        || (only?.contains(c.id.rawValue) ?? true)
                }
        )
        plan.pinned = pin
        let suite = OverheadSuite(plan: plan, programs: programs, log: log)
        let results = try suite.run()
        let report = Report(plan: plan, results: results, environment: .current(workIterations: programs.workIterations, peers: peers.versions))

        print(report.text())
        if let json = options.json { try report.json().write(toFile: json, atomically: true, encoding: .utf8) }
        if let plot { try OverheadPlot(report: report).svg().write(toFile: plot, atomically: true, encoding: .utf8) }

        var micro: [MicroBenchmarks.Result] = []
        if !noMicro {
            print("")
            print("Micro-benchmarks (in process, google/swift-benchmark; median time per operation)")
            if _isDebugAssertConfiguration() { print("(a debug build: these figures are not the product's; use -c release)") }
            log.note("micro-benchmarks")
            micro = try MicroBenchmarks.run(programs: programs, settings: MicroBenchmarks.settings(quick: quick))
        }
        if let markdown = options.markdown {
            try (report.markdown() + Report.markdown(micro: micro)).write(toFile: markdown, atomically: true, encoding: .utf8)
        }
    }
}

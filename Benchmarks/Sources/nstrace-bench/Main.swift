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
            (ltrace, gdb, bpftrace) are reported as skipped.
            """,
        subcommands: [MicroCommand.self]
    )

    @Flag(help: "Threads 1 and 4, fewer rounds: under three minutes.")
    var quick = false

    @Option(help: ArgumentHelp("Write the results as JSON to FILE: one object per workload, contender and thread count.", valueName: "FILE"))
    var json: String?

    @Option(help: ArgumentHelp("Write the per-call overhead plot (SVG) to FILE.", valueName: "FILE"))
    var plot: String?

    @Option(help: ArgumentHelp("Write the tables as Markdown to FILE.", valueName: "FILE"))
    var markdown: String?

    @Option(help: ArgumentHelp("Thread counts (default 1,2,4,8,16; --quick 1,4).", valueName: "N,N,..."))
    var threads: String?

    @Option(help: ArgumentHelp("Calls per thread in each run (default 500).", valueName: "K"))
    var calls: Int?

    @Option(help: ArgumentHelp("Rounds of every contender (default 7; --quick 3).", valueName: "N"))
    var rounds: Int?

    @Option(help: ArgumentHelp("Contenders to run besides untraced and the floor, comma-separated (default: all).", valueName: "TOOL,..."))
    var only: String?

    @Option(help: ArgumentHelp("Workloads to run, comma-separated: tiny, work (default: both).", valueName: "NAME,..."))
    var workloads: String?

    @Option(help: ArgumentHelp("Seconds one traced run may take before it is killed and recorded as a timeout.", valueName: "SECONDS"))
    var timeout: Double = 120

    @Option(help: ArgumentHelp("The nstrace binary (default: the one beside nstrace-bench, built first if need be).", valueName: "PATH"))
    var nstrace: String?

    @Flag(help: "Skip the micro-benchmarks.")
    var noMicro = false

    func validate() throws {
        if let calls, calls < 1 { throw ValidationError("--calls must be at least 1") }
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if !(timeout > 0) { throw ValidationError("--timeout must be positive") }
        _ = try threadCounts()
        _ = try selectedWorkloads()
        if let only {
            let known = Set(ContenderID.allCases.map(\.rawValue))
            for name in only.split(separator: ",") where !known.contains(String(name)) {
                throw ValidationError("unknown contender \(name); known: \(ContenderID.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
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
        let binary = try nstrace ?? location.nstraceBinary(log: log)
        let programs = try Programs.build(sources: location.cSources, log: log)
        defer { programs.remove() }

        let plan = SuitePlan(
            workloads: try selectedWorkloads(),
            threadCounts: try threadCounts(),
            callsPerThread: calls ?? 500,
            rounds: rounds ?? (quick ? 3 : 7),
            timeout: timeout,
            contenders: Contender.all(nstrace: binary, programs: programs)
                .filter { c in
                    // Every figure is read against these two, so they always run.
                    c.id == .untraced || c.id == .floor
                        || (only.map { $0.split(separator: ",").contains(Substring(c.id.rawValue)) } ?? true)
                }
        )
        let suite = OverheadSuite(plan: plan, programs: programs, log: log)
        let results = try suite.run()
        let report = Report(plan: plan, results: results, environment: .current(workIterations: programs.workIterations))

        print(report.text())
        if let json { try report.json().write(toFile: json, atomically: true, encoding: .utf8) }
        if let plot { try OverheadPlot(report: report).svg().write(toFile: plot, atomically: true, encoding: .utf8) }

        var micro: [MicroBenchmarks.Result] = []
        if !noMicro {
            print("")
            print("Micro-benchmarks (in process, google/swift-benchmark; median time per operation)")
            if _isDebugAssertConfiguration() { print("(a debug build: these figures are not the product's; use -c release)") }
            log.note("micro-benchmarks")
            micro = try MicroBenchmarks.run(programs: programs, settings: MicroBenchmarks.settings(quick: quick))
        }
        if let markdown {
            try (report.markdown() + Report.markdown(micro: micro)).write(toFile: markdown, atomically: true, encoding: .utf8)
        }
    }
}

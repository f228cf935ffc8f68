import ArgumentParser
import Foundation

/// `nstrace-bench syscalls`: what a traced syscall costs under `nstrace -S` beside `strace -f`, and
/// untraced. Benchmarks/C/syscalls.c makes N getpid and N one-byte reads and times each loop itself;
/// each tool writes its trace to /dev/null. Medians of the rounds, in nanoseconds per syscall.
struct SyscallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syscalls",
        abstract: "Nanoseconds per syscall under nstrace -S, strace -f and untraced."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("Syscalls of each kind per run (default 100000).", valueName: "N"))
    var syscalls = 100_000

    struct Row: Codable {
        let tool: String
        let command: String
        let getpidNs: Double
        let readNs: Double
        let rounds: [[Double]]
    }

    /// The 1-minute load average, as /proc/loadavg gives it.
    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").first.map(String.init) ?? "?"
    }

    func run() throws {
        let log = Progress()
        let location = try Location.find()
        let nstrace = try options.nstrace ?? location.nstraceBinary(log: log)
        guard let gcc = Command.which("gcc") else { throw BenchError("gcc is needed") }
        let scratch = NSTemporaryDirectory() + "nstrace-bench-syscalls-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let program = scratch + "/syscalls"
        guard try Command.run([gcc, "-O2", "-o", program, location.cSources + "/syscalls.c"], quiet: true) == 0 else {
            throw BenchError("gcc failed for syscalls.c")
        }
        let n = "\(syscalls)"
        var contenders: [(String, [String])] = [
            ("untraced", [program, n]),
            ("nstrace -S", [nstrace, "-S", "-o", "/dev/null", "--", program, n]),
            ("nstrace --syscalls=getpid", [nstrace, "--syscalls=getpid", "-o", "/dev/null", "--", program, n]),
            // Syscalls alone default to the jump strategy (no ring); with the inline strategy's ring and
            // its drain in the loop each stop costs more (see Benchmarks/README.md).
            ("nstrace -S --strategy inline", [nstrace, "-S", "--strategy", "inline", "-o", "/dev/null", "--", program, n]),
        ]
        if let strace = Command.which("strace") {
            contenders += [
                ("strace -f", [strace, "-f", "-o", "/dev/null", program, n]),
                ("strace -f -e trace=getpid", [strace, "-f", "-e", "trace=getpid", "-o", "/dev/null", program, n]),
                ("strace -f --seccomp-bpf -e trace=getpid", [strace, "-f", "--seccomp-bpf", "-e", "trace=getpid", "-o", "/dev/null", program, n]),
            ]
        } else {
            log.note("strace: skipped: not installed")
        }
        let rounds = options.rounds ?? (options.quick ? 3 : 7)
        let loadBefore = Self.loadAverage()
        var samples: [String: [[Double]]] = [:]
        for round in 1...rounds {
            // Alternating order, so that a slow patch of the shared machine does not land on one tool.
            let order = round % 2 == 0 ? contenders.reversed() : contenders
            for (tool, argv) in order {
                let outcome = try Command.run(argv, timeout: options.timeout ?? 300, scratch: scratch, name: "run")
                guard outcome.exitCode == 0, !outcome.timedOut else {
                    throw BenchError("\(tool) failed (exit \(outcome.exitCode)): \(outcome.stderr.prefix(500))")
                }
                let values = outcome.stdout.split(separator: "\n").compactMap { line -> Double? in
                    line.split(separator: " ").last.flatMap { Double($0) }
                }
                guard values.count == 2 else { throw BenchError("\(tool): unexpected output \(outcome.stdout)") }
                samples[tool, default: []].append(values)
                log.note("round \(round) \(tool): getpid \(values[0]) ns, read \(values[1]) ns")
            }
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        let rows = contenders.map { tool, argv in
            let s = samples[tool] ?? []
            return Row(tool: tool, command: argv.map { $0.hasPrefix("/") ? URL(fileURLWithPath: $0).lastPathComponent : $0 }.joined(separator: " "),
                       getpidNs: median(s.map { $0[0] }), readNs: median(s.map { $0[1] }), rounds: s)
        }
        let untraced = rows.first { $0.tool == "untraced" }
        var markdown = "# Syscall cost: nstrace -S beside strace -f\n\n"
        markdown += "\(syscalls) getpid and \(syscalls) one-byte reads from /dev/zero (Benchmarks/C/syscalls.c), each loop timed by the program; "
        markdown += "traces to /dev/null; median of \(rounds) rounds; \(ProcessInfo.processInfo.activeProcessorCount) CPUs; "
        markdown += "load average \(loadBefore) before, \(Self.loadAverage()) after (other processes share the machine: "
        markdown += "each stop waits for the tracer and then the tracee to be scheduled).\n\n"
        markdown += "| tool | getpid ns/call | read ns/call | getpid overhead ns | read overhead ns |\n|---|---:|---:|---:|---:|\n"
        for row in rows {
            let og = untraced.map { String(format: "%.0f", row.getpidNs - $0.getpidNs) } ?? "-"
            let or = untraced.map { String(format: "%.0f", row.readNs - $0.readNs) } ?? "-"
            markdown += "| `\(row.command)` | \(String(format: "%.0f", row.getpidNs)) | \(String(format: "%.0f", row.readNs)) | \(og) | \(or) |\n"
        }
        print(markdown)
        if let path = options.markdown { try markdown.write(toFile: path, atomically: true, encoding: .utf8) }
        if let path = options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            try encoder.encode(rows).write(to: URL(fileURLWithPath: path))
        }
    }
}

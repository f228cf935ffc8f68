import ArgumentParser
import Foundation
import Glibc
import NonStop
import Rendering
import Symbols

/// `nstrace-bench render`: how many events per second nstrace turns into output on one core, from
/// inline records already in memory to bytes in a file — the consumer side alone, with no tracee to
/// share the machine with. Calls of a 5-argument function (int, C string, pointer, size_t, double;
/// returning double) are written into a ring the way pads write them (`RecordReplay`), read by the
/// engine into event batches (decoded, matched on shadow stacks), then rendered by each renderer the
/// CLI uses into a file, round by round on one thread, batches recycled as in nstrace. Rates are by
/// the thread's CPU time (steal and other processes not counted), and by wall time beside them (which
/// includes writing the records).
struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Events per second on one core, from records in memory to bytes in a file, for each renderer."
    )

    @OptionGroup var options: CommonOptions

    // Not --calls: the parent command has that option, and would take it.
    @Option(help: ArgumentHelp("Traced calls per run (each is a call and a return event; default 1000000).", valueName: "N"))
    var tracedCalls = 1_000_000

    @Option(help: ArgumentHelp("Only these renderers, comma-separated: summary, json, text, chrome (default: all).", valueName: "NAME,..."))
    var renderers: String?

    @Option(help: ArgumentHelp("Threads the records come from (default 4).", valueName: "N"))
    var threads = 4

    @Option(help: ArgumentHelp("Render through a call filter: min-duration (1 µs: calls held until they return), max-depth (1), exclude (a name no call has); default none.", valueName: "NAME"))
    var callFilter: String?

    func validate() throws {
        if tracedCalls < 1 { throw ValidationError("--traced-calls must be at least 1") }
        if let renderers, let unknown = renderers.split(separator: ",").first(where: { !["summary", "json", "text", "chrome"].contains($0) }) {
            throw ValidationError("unknown renderer \(unknown); known: summary, json, text, chrome")
        }
        if !(1...16).contains(threads) { throw ValidationError("--threads must be between 1 and 16") }
        if let callFilter, !["min-duration", "max-depth", "exclude"].contains(callFilter) {
            throw ValidationError("unknown call filter \(callFilter); known: min-duration, max-depth, exclude")
        }
    }

    struct Row: Codable {
        let renderer: String
        let events: Int
        /// Millions of events per second of CPU time: records to events, events to bytes, both.
        let decodeRate: Double
        let renderRate: Double
        let totalRate: Double
        /// The same, by wall-clock time.
        let totalWallRate: Double
        let bytesPerEvent: Double
        let goal: Double
    }

    func run() throws {
        let calls = tracedCalls
        let log = Progress()
        let programs = try Programs.build(sources: try Location.find().cSources, log: log)
        defer { programs.remove() }
        let library = try ProcessImage(file: programs.signatureLibrary)
        guard let handle = library.functions(matching: try NamePattern("^nsb_handle$")).first else {
            throw BenchError("nsb_handle not found in \(programs.signatureLibrary)")
        }
        let function = TracedFunction(name: handle.name, module: "libsignature.so", address: handle.address,
                                      signature: library.signature(of: handle), returnsSeenAtExits: true)
        let scratch = NSTemporaryDirectory() + "nstrace-bench-render-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let rounds = options.rounds ?? (options.quick ? 1 : 3)

        let all: [(key: String, name: String, goal: Double, values: Bool, make: (Output) throws -> Renderer)] = [
            ("summary", "summary (-c)", 5, false, { SummaryRenderer(output: $0) }),
            ("json", "JSON Lines (--json)", 1, true, { JSONLinesRenderer(output: $0) }),
            ("text", "text (-t -T)", 1, true, { TextRenderer(output: $0, options: .init(timestamps: true, durations: true, colour: false)) }),
            ("chrome", "Chrome trace", 1, true, { try ChromeTraceRenderer(output: $0) }),
        ]
        let chosen = renderers.map { $0.split(separator: ",").map(String.init) }
        let kinds = all.filter { chosen?.contains($0.key) ?? true }
        var rows: [Row] = []
        for kind in kinds {
            var samples: [Row] = []
            for round in 1...rounds {
                log.note("\(kind.name): round \(round) of \(rounds), \(calls) calls from \(threads) threads")
                let queue = EventQueue(capacity: Int.max)
                let replay = try RecordReplay(function: function, decodesValues: kind.values, events: queue)
                let path = "\(scratch)/out-\(round)"
                let output = try Output(path: path)
                var filters = CallFilter.Options()
                switch callFilter {
                case "min-duration": filters.minDuration = 1000
                case "max-depth": filters.maxDepth = 1
                case "exclude": filters.exclude = try NamePattern("^no_such_function$")
                default: break
                }
                let pipeline = RenderPipeline(renderers: [try kind.make(output)], threads: [], maxCalls: nil, status: nil, filters: filters)
                // Each round of records is read, then rendered, on this one thread, the batches recycled
                // as nstrace's renderer thread does: the two are timed apart.
                var events = 0
                var renderTime: UInt64 = 0
                let wallStart = monotonic()
                let decodeTime = replay.run(calls: calls, threads: threads) {
                    let start = RecordReplay.threadTime()
                    while let batches = queue.take() {
                        for batch in batches {
                            events += batch.events.count
                            pipeline.render(batch)
                        }
                        pipeline.flush()
                        queue.recycle(batches)
                    }
                    renderTime &+= RecordReplay.threadTime() &- start
                }
                let finishStart = RecordReplay.threadTime()
                pipeline.finish()
                output.close()
                renderTime &+= RecordReplay.threadTime() &- finishStart
                let wall = monotonic() - wallStart
                let decodeCPU = Double(decodeTime) / 1e9, renderCPU = Double(renderTime) / 1e9
                let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                try? FileManager.default.removeItem(atPath: path)
                guard events >= 2 * calls else { throw BenchError("\(kind.name): \(events) events for \(calls) calls") }
                let millions = Double(events) / 1e6
                samples.append(Row(renderer: kind.name, events: events, decodeRate: millions / decodeCPU,
                                   renderRate: millions / renderCPU, totalRate: millions / (decodeCPU + renderCPU),
                                   totalWallRate: millions / wall,
                                   bytesPerEvent: Double(bytes) / Double(events), goal: kind.goal))
            }
            // The median round by total rate.
            rows.append(samples.sorted { $0.totalRate < $1.totalRate }[samples.count / 2])
        }

        let columns: [Column<Row>] = [
            Column("renderer", right: false) { $0.renderer },
            Column("events") { String($0.events) },
            Column("records→events M/s") { Table.show($0.decodeRate, "%.2f") },
            Column("events→bytes M/s") { Table.show($0.renderRate, "%.2f") },
            Column("total M/s (CPU)") { Table.show($0.totalRate, "%.2f") },
            Column("total M/s (wall)") { Table.show($0.totalWallRate, "%.2f") },
            Column("bytes/event") { Table.show($0.bytesPerEvent, "%.0f") },
            Column("goal M/s") { Table.show($0.goal, "%.0f") },
            Column("met") { $0.totalRate >= $0.goal ? "yes" : "NO" },
        ]
        print(Table.text(rows, columns))
        if let json = options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(rows).write(to: URL(fileURLWithPath: json))
        }
        if let markdown = options.markdown {
            let text = """
                # Events per second on one core, records to file

                `swift run -c release nstrace-bench render --traced-calls \(calls) --threads \(threads)`: \(calls) calls of
                `nsb_handle(int, const char *, struct order *, size_t, double) -> double` from \(threads) threads,
                written into a ring in memory as the pads write them, read by the engine into event batches, then
                rendered into a file; median of \(rounds) rounds. Rates are millions of events (calls + returns) per
                second of the thread's CPU time, and of wall time. The summary reads no values (as `nstrace -c`).

                """ + "\n" + Table.markdown(rows, columns)
            try text.write(toFile: markdown, atomically: true, encoding: .utf8)
        }
    }

    private func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

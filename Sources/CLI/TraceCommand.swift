import ArgumentParser
import Foundation
import NonStop
import Rendering
import Symbols

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Trace calls and returns of the functions REGEX matches.",
        usage: """
            nstrace [OPTIONS] REGEX -- PROGRAM [ARGS...]
            nstrace [OPTIONS] -p PID [-p PID...] REGEX
            nstrace --syscalls[=NAMES] [OPTIONS] (-p PID | -- PROGRAM [ARGS...])
            nstrace list [--json] [--strategy S] [--no-demangle] (BINARY | -p PID) REGEX
            """,
        discussion: """
            REGEX is searched in every function name of the program and its libraries:
            demangled (shop::check, shop::check(shop::Order const&)), as a symbol
            (_ZN4shop5checkERKNS_5OrderE) and its aliases. Breakpoints are never lifted:
            threads keep running through them and no call is missed. The trace goes to
            stderr (or -o FILE); the program's own output is left alone.

            Examples:
              nstrace -T 'handle_' -- ./server --port 8080   with durations
              nstrace -p 1234 '^(read|write)$'               attach to a running process
              nstrace -c -p 1234 query                       summary and latency histograms
              nstrace --json -o trace.jsonl -f demo_ -- ./demo/demo
              nstrace --chrome-trace trace.json -p 1234 .    open it in ui.perfetto.dev
              nstrace --follow-calls 3 -p 1234 '^handle_request$'  and what it calls
              nstrace --min-duration 1ms --exclude '^log_' -p 1234 handle_   slow calls only
              nstrace --folded out.folded -p 1234 .          flamegraph.pl out.folded > out.svg
              nstrace -S -T 'handle_' -- ./server            calls and every syscall
              nstrace --syscalls='openat|read' -p 1234       those syscalls alone
              nstrace list ./server 'handle_'                what a pattern would trace
            """
    )

    @Option(name: .customShort("p"), help: ArgumentHelp("Attach to a running process (repeatable).", valueName: "PID"))
    var pid: [Int32] = []

    @Flag(name: [.customShort("f"), .customLong("follow-forks")], help: "Follow fork and vfork children.")
    var followForks = false

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Write the trace to FILE instead of stderr.", valueName: "FILE"))
    var output: String?

    @Flag(name: [.customShort("c"), .customLong("summary")], help: "Print a summary at exit instead of each event: calls, time, percentiles, histograms.")
    var summary = false

    @Flag(name: [.customShort("T"), .customLong("durations")], help: "Show the time spent in each call.")
    var durations = false

    @Flag(name: [.customShort("t"), .customLong("timestamp")], help: "Prefix each line with the time of day (microseconds).")
    var timestamps = false

    @Option(name: [.customShort("s"), .customLong("stack")], help: ArgumentHelp("Show N callers with each call.", valueName: "N"))
    var stack = 0

    @Flag(help: "JSON Lines: one object per event.")
    var json = false

    @Option(help: ArgumentHelp("Also write a Chrome/Perfetto trace to FILE.", valueName: "FILE"))
    var chromeTrace: String?

    // inline by default: no stop per call (tens of nanoseconds, not tens of microseconds, Benchmarks/
    // README.md); sites no window fits keep an int3 with jump, which costs 1.6 to 2.6 times less than
    // step, and none of them misses a call.
    @Option(help: ArgumentHelp("How calls are seen: inline (a jump to a pad that records in the process, no stop), jump (one stop at an int3 in a pad or at the site, the code run from a trampoline) or step (int3, single-step a copy).", valueName: "inline|jump|step"))
    var strategy: String?

    @Flag(help: "With --strategy inline, make the program wait for nstrace when its ring is full instead of counting lost events.")
    var lossless = false

    @Option(help: ArgumentHelp("With --strategy inline, the ring's size in MiB (default 16): what the program can record ahead of nstrace.", valueName: "MIB"))
    var ringSize = 16

    @Option(help: ArgumentHelp("Print at most N bytes of each string.", valueName: "N"))
    var maxString = 64

    @Flag(help: "Follow pointer arguments and results to a struct, union or scalar one level and show what they point to (an unreadable pointer shows as such).")
    var deref = false

    @Option(help: ArgumentHelp("Detach after N calls.", valueName: "N"))
    var maxCalls: Int?

    @Option(help: ArgumentHelp("Detach after SECONDS.", valueName: "SECONDS"))
    var duration: Double?

    @Option(help: ArgumentHelp("Show only the events of thread TID (repeatable).", valueName: "TID"))
    var tid: [Int32] = []

    @Flag(help: "Show C++, Rust and Swift names as the symbols they are (_ZN4shop5checkERKNS_5OrderE), not demangled.")
    var noDemangle = false

    @Option(help: ArgumentHelp("Show only calls that last at least T (500ns, 10us, 1.5ms, 2s; a bare number is nanoseconds). A call is shown once it returns.", valueName: "T"))
    var minDuration: String?

    @Option(help: ArgumentHelp("Show N levels of nested traced calls: 1 is the outermost calls alone (depth 0).", valueName: "N"))
    var maxDepth: Int?

    @Option(help: ArgumentHelp("Also trace what the functions REGEX matches call, to N calls deep, inside their calls only (as dlv trace --follow-calls).", valueName: "N"))
    var followCalls: Int?

    @Option(help: ArgumentHelp("Hide the functions REGEX matches and every call under them (they are traced, to see where they end).", valueName: "REGEX"))
    var exclude: String?

    @Option(help: ArgumentHelp("Show only calls made from MODULE: its file name (libc.so.6, the program's name) or the end of its path.", valueName: "MODULE"))
    var caller: String?

    @Option(help: ArgumentHelp("Also write folded stacks to FILE (one `a;b;c weight` line per stack), for flamegraph.pl, inferno or speedscope.", valueName: "FILE"))
    var folded: String?

    @Option(help: ArgumentHelp("What a folded stack weighs: time (self time in nanoseconds, the default) or calls.", valueName: "time|calls"))
    var foldedWeight: String = FoldedRenderer.Weight.time.rawValue

    @Flag(name: .customShort("S"), help: "Also report every syscall, as strace does (--syscalls=NAMES for some).")
    var allSyscalls = false

    // A bare `--syscalls` is read as -S (see NSTrace.main): ArgumentParser has no option whose value
    // may be left out.
    @Option(name: .customLong("syscalls"), help: ArgumentHelp("Report the syscalls whose whole name NAMES matches (a regexp; commas separate alternatives, as strace's -e trace=). With it, REGEX may be left out.", valueName: "NAMES"))
    var syscallNames: String?

    @Flag(help: "Log every engine decision on stderr.")
    var debug = false

    @Argument(help: "Functions to trace: a regular expression searched in each name (optional with -S).")
    var regex: String?

    @Argument(parsing: .postTerminator, help: "The program to launch and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if regex == nil, !tracesSyscalls { throw ValidationError("give a REGEX of functions to trace (or --syscalls)") }
        if pid.isEmpty && command.isEmpty { throw ValidationError("give a program after -- or a process with -p PID") }
        if !pid.isEmpty && !command.isEmpty { throw ValidationError("-p PID and a program after -- cannot be combined") }
        if let strategy, Strategy(rawValue: strategy) == nil { throw ValidationError("--strategy must be inline, jump or step") }
        if stack > 0, strategy == Strategy.inline.rawValue {
            throw ValidationError("--stack needs a stop at each call to walk the stack: use --strategy jump or step")
        }
        if !(1...4096).contains(ringSize) { throw ValidationError("--ring-size must be between 1 and 4096 MiB") }
        if lossless, chosenStrategy != .inline {
            throw ValidationError("--lossless applies to --strategy inline (the others stop every call and lose nothing)")
        }
        if maxString < 0 { throw ValidationError("--max-string must not be negative") }
        if stack < 0 || stack > 256 { throw ValidationError("--stack must be between 0 and 256") }
        if let maxCalls, maxCalls < 1 { throw ValidationError("--max-calls must be at least 1") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a positive number of seconds") }
        if summary && json { throw ValidationError("--summary and --json cannot be combined (the summary is text)") }
        if let chromeTrace, chromeTrace == output { throw ValidationError("--chrome-trace and -o must name different files") }
        if let minDuration, DurationText.nanoseconds(minDuration) == nil {
            throw ValidationError("--min-duration must be a duration such as 500ns, 10us, 1ms or 2s")
        }
        if let maxDepth, maxDepth < 1 { throw ValidationError("--max-depth must be at least 1") }
        if let followCalls, !(1...64).contains(followCalls) { throw ValidationError("--follow-calls must be between 1 and 64") }
        if followCalls != nil, regex == nil { throw ValidationError("--follow-calls needs a REGEX of functions whose calls to follow") }
        if let exclude {
            do { _ = try NamePattern(exclude) } catch { throw ValidationError("--exclude: \(error)") }
        }
        if let caller, caller.isEmpty || caller.hasSuffix("/") { throw ValidationError("--caller needs a module's file name or path") }
        if FoldedRenderer.Weight(rawValue: foldedWeight) == nil { throw ValidationError("--folded-weight must be time or calls") }
        if let folded, folded == output || folded == chromeTrace {
            throw ValidationError("--folded must name a file of its own (not the -o or --chrome-trace one)")
        }
        if Set(pid).count != pid.count { throw ValidationError("the same -p PID is given twice") }
        if pid.contains(where: { $0 <= 0 }) { throw ValidationError("-p takes a process id greater than 0") }
    }

    /// The strategy asked for; by default inline — or jump with `-s`, which needs a stop to walk the
    /// stack.
    var chosenStrategy: Strategy {
        if let strategy, let chosen = Strategy(rawValue: strategy) { return chosen }
        // Syscalls alone: no function is traced, so no ring is needed; the inline strategy's ring (made
        // for its link-map pad) and its drain would only slow each syscall-stop (Benchmarks/README.md).
        if regex == nil { return .jump }
        return stack > 0 ? .jump : .inline
    }

    var tracesSyscalls: Bool { allSyscalls || syscallNames != nil }

    /// The syscalls asked for; nil without -S.
    func syscallSelection() throws -> SyscallSelection? {
        guard tracesSyscalls else { return nil }
        let selection = try SyscallSelection(pattern: syscallNames)
        if selection.isEmpty { throw ValidationError("no syscall is named by '\(syscallNames ?? "")'") }
        return selection
    }

    func run() throws {
        StopRequest.installHandlers()
        let syscalls = try syscallSelection()
        // Syscalls alone: a pattern that names no function (no breakpoint, no ring).
        let pattern = try NamePattern(regex ?? "(?!)")
        if regex != nil { for p in pid { try Preflight.checkAttach(pid: p, pattern: pattern) } }
        if let program = command.first { _ = try Preflight.checkLaunch(program) }
        DebugLog.enabled = debug

        let out = try Output(path: output)
        var renderers: [Renderer] = []
        if summary {
            renderers.append(SummaryRenderer(output: out))
        } else if json {
            renderers.append(JSONLinesRenderer(output: out))
        } else {
            renderers.append(TextRenderer(output: out, options: .init(timestamps: timestamps, durations: durations,
                                                                      colour: Style.wanted(for: out))))
        }
        if let chromeTrace { renderers.append(try ChromeTraceRenderer(output: try Output(path: chromeTrace))) }
        if let folded {
            renderers.append(FoldedRenderer(output: try Output(path: folded), weight: FoldedRenderer.Weight(rawValue: foldedWeight) ?? .time))
        }
        let engineStatus = EngineStatus()
        let status = output != nil && isatty(STDERR_FILENO) != 0 && !debug ? StatusLine(engine: engineStatus) : nil
        let filters = CallFilter.Options(minDuration: minDuration.flatMap(DurationText.nanoseconds), maxDepth: maxDepth.map { Int32(clamping: $0) },
                                         exclude: try exclude.map { try NamePattern($0) }, callerFiltered: caller != nil,
                                         followCalls: followCalls.map { Int32($0) })
        let pipeline = RenderPipeline(renderers: renderers, threads: Set(tid), maxCalls: maxCalls, status: status, filters: filters)

        // An excluded function is traced even when REGEX does not name it: where its calls end is where
        // hiding what is under them ends.
        let traced = try exclude.map { try NamePattern("(?:\(pattern.source))|(?:\($0))") } ?? pattern
        var configuration = EngineConfiguration(pattern: traced, strategy: chosenStrategy, followForks: followForks,
                                                maxStringLength: maxString, stackDepth: stack, lossless: lossless)
        configuration.decodesValues = !summary || chromeTrace != nil
        configuration.ringMegabytes = ringSize
        configuration.demangles = !noDemangle
        configuration.callerModule = caller
        configuration.syscalls = syscalls
        configuration.tracesFunctions = regex != nil
        configuration.derefPointers = deref
        configuration.followCalls = followCalls
        let session = TraceSession(configuration: configuration, renderer: pipeline, status: engineStatus)
        let outcome = try session.run(attach: pid, launch: command, duration: duration)
        out.close()
        if let failure = outcome.failure {
            throw RuntimeFailure(description: "internal error, tracees detached: \(failure)")
        }
        if let status = outcome.launchedExit {
            switch status {
            case .exited(let code): throw ExitCode(code)
            case .killed(let signal, _): throw ExitCode(128 + signal)
            }
        }
    }
}

/// `--min-duration`'s values: a number and a unit, as uftrace's `-t` takes them.
enum DurationText {
    static func nanoseconds(_ text: String) -> UInt64? {
        let units: [(suffix: String, ns: Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var number = Substring(trimmed), scale = 1.0
        if let unit = units.first(where: { trimmed.hasSuffix($0.suffix) }) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.ns
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let value = Double(number) else { return nil }
        let ns = (value * scale).rounded()
        return ns >= 0 && ns < 1.8e19 ? UInt64(ns) : nil
    }
}

struct RuntimeFailure: Error, CustomStringConvertible {
    let description: String
}

/// Checks the targets before anything is touched, so bad input is one line and nothing is attached.
enum Preflight {
    static func checkAttach(pid: Int32, pattern: NamePattern) throws {
        guard pid != getpid() else { throw StartError.tracingItself }
        let image = try ProcessImage(pid: pid)
        guard !image.functions(matching: pattern).isEmpty else { throw NoFunctionMatches(pattern: pattern.source) }
    }

    /// The program must exist and be executable; an ELF file or a script the kernel can run.
    static func checkLaunch(_ program: String) throws -> String {
        let path = try Engine.resolve(program)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw StartError.programNotExecutable(program) }
        defer { try? handle.close() }
        let magic = handle.readData(ofLength: 4)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw SymbolError.notAnELFFile(path)
        }
        guard magic == Data([0x7f, 0x45, 0x4c, 0x46]) || magic.prefix(2) == Data("#!".utf8) else {
            throw SymbolError.notAnELFFile(path)
        }
        return path
    }
}

/// The engine on its own thread (ptrace wants every request from one thread), the renderers on
/// another, the bounded queue between them.
final class TraceSession: @unchecked Sendable {
    struct Outcome {
        var failure: String?
        var launchedExit: ExitStatus?
    }

    private let configuration: EngineConfiguration
    private let renderer: RenderPipeline
    private let status: EngineStatus
    private let queue = EventQueue()
    // Written by the engine thread before it signals `engineDone`, read after.
    private var startError: Error?
    private var outcome = Outcome()

    init(configuration: EngineConfiguration, renderer: RenderPipeline, status: EngineStatus) {
        self.configuration = configuration
        self.renderer = renderer
        self.status = status
    }

    func run(attach pids: [Int32], launch command: [String], duration: Double?) throws -> Outcome {
        StopRequest.install(duration: duration)
        let rendered = DispatchSemaphore(value: 0)
        // A test hook: a renderer made slow on purpose (milliseconds per batch), so that tests can see
        // events counted lost when the output falls behind.
        let delay = ProcessInfo.processInfo.environment["NSTRACE_TEST_RENDER_DELAY_MS"].flatMap { UInt32($0) }.map { min($0, 10_000) }
        let renderThread = Thread { [self] in
            while let batches = queue.popAll() {
                if let delay { usleep(delay * 1000) }
                batches.forEach(renderer.render)
                queue.recycle(batches)
                // Whoever reads the trace as it grows sees each batch whole and at once.
                renderer.flush()
            }
            renderer.finish()
            rendered.signal()
        }
        renderThread.start()

        let engineDone = DispatchSemaphore(value: 0)
        let engineThread = Thread { [self] in
            defer { queue.close(); engineDone.signal() }
            do {
                let engine = try Engine(configuration: configuration, events: queue, status: status)
                do {
                    for pid in pids { try engine.attach(pid) }
                    if !command.isEmpty { _ = try engine.launch(command) }
                } catch {
                    startError = error
                    engine.run()  // detaches from whatever was attached before the failure
                    return
                }
                engine.run()
                outcome = Outcome(failure: engine.failure, launchedExit: engine.launchedExit)
            } catch {
                startError = error
            }
        }
        engineThread.stackSize = 8 << 20
        engineThread.start()
        engineDone.wait()
        rendered.wait()
        if let startError { throw startError }
        return outcome
    }
}

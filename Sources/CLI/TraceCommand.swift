import ArgumentParser
import Foundation
import NonStop
import Symbols

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Trace calls and returns of the functions REGEX matches.",
        discussion: """
            Examples:
              nstrace 'handle_' -- ./server --port 8080
              nstrace -p 1234 '^(read|write)$'
              nstrace --json -o trace.jsonl -f 'demo_' -- ./demo/demo
            """
    )

    @Option(name: .short, help: "Attach to a running process (repeatable).")
    var pid: [Int32] = []

    @Flag(name: .short, help: "Follow fork and vfork children.")
    var followForks = false

    @Option(help: "How threads get past a breakpoint: step (single-step a relocated copy) or jump (trampoline).")
    var strategy: String = "jump"

    @Flag(help: "JSON Lines: one object per event.")
    var json = false

    @Option(name: .short, help: "Write the trace to FILE instead of stderr.")
    var output: String?

    @Option(help: "Print at most N bytes of each string.")
    var maxString = 64

    @Flag(help: "Log every engine decision on stderr.")
    var debug = false

    @Argument(help: "Functions to trace: a regular expression searched in each name.")
    var regex: String

    @Argument(parsing: .postTerminator, help: "The program to launch and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if pid.isEmpty && command.isEmpty { throw ValidationError("give a program after -- or a process with -p PID") }
        if !pid.isEmpty && !command.isEmpty { throw ValidationError("-p PID and a program after -- cannot be combined") }
        if Strategy(rawValue: strategy) == nil { throw ValidationError("--strategy must be step or jump") }
        if maxString < 0 { throw ValidationError("--max-string must not be negative") }
    }

    func run() throws {
        let pattern = try NamePattern(regex)
        for p in pid { try Preflight.checkAttach(pid: p, pattern: pattern) }
        DebugLog.enabled = debug
        let out = try Output(path: output)
        let renderer: Renderer = json ? JSONLinesRenderer(output: out) : TextRenderer(output: out)
        let configuration = EngineConfiguration(pattern: pattern, strategy: Strategy(rawValue: strategy) ?? .jump,
                                                followForks: followForks, maxStringLength: maxString)
        let session = TraceSession(configuration: configuration, renderer: renderer)
        let outcome = try session.run(attach: pid, launch: command)
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

struct RuntimeFailure: Error, CustomStringConvertible {
    let description: String
}

/// Checks a -p target before anything is attached, so bad input is one line and nothing is touched.
enum Preflight {
    static func checkAttach(pid: Int32, pattern: NamePattern) throws {
        guard pid != getpid() else { throw StartError.tracingItself }
        let image = try ProcessImage(pid: pid)
        guard !image.functions(matching: pattern).isEmpty else { throw NoFunctionMatches(pattern: pattern.source) }
    }
}

/// The engine on its own thread (ptrace wants every request from one thread), the renderer on another,
/// the bounded queue between them.
final class TraceSession: @unchecked Sendable {
    struct Outcome {
        var failure: String?
        var launchedExit: ExitStatus?
    }

    private let configuration: EngineConfiguration
    private let renderer: Renderer
    private let queue = EventQueue()
    // Written by the engine thread before it signals `engineDone`, read after.
    private var startError: Error?
    private var outcome = Outcome()

    init(configuration: EngineConfiguration, renderer: Renderer) {
        self.configuration = configuration
        self.renderer = renderer
    }

    func run(attach pids: [Int32], launch command: [String]) throws -> Outcome {
        StopRequest.install(duration: nil)
        let rendered = DispatchSemaphore(value: 0)
        let renderThread = Thread { [self] in
            while let batch = queue.popAll() {
                batch.forEach(renderer.render)
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
                let engine = try Engine(configuration: configuration, events: queue)
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

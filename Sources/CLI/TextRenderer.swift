import Foundation
import NonStop

/// One line per event: `[time] [tid] <indent>→ fn(name=value, …)` and `← fn = value  <duration>`,
/// indented by call depth per thread so interleaved threads stay readable.
final class TextRenderer: Renderer {
    struct Options {
        var timestamps = false
        var durations = false
        var colour = false
    }

    private let output: Output
    private let options: Options
    private let style: Style

    init(output: Output, options: Options) {
        self.output = output
        self.options = options
        style = Style(enabled: options.colour)
    }

    func render(_ event: TraceEvent) {
        var prefix = options.timestamps ? clock(event.timestamp) + " " : ""
        prefix += style.dim("[\(event.tid)]") + " "
        if let goroutine = event.goroutine { prefix += style.dim("[g \(goroutine)]") + " " }
        switch event.kind {
        case .call(let function, let depth, let arguments, let stack):
            let names = function.signature?.parameters ?? []
            let args = zip(names, arguments).map { "\($0.name)=\(ValueFormatter.text($1))" }
            output.write("\(prefix)\(indent(depth))\(style.call("→")) \(style.name(function.name))(\(args.joined(separator: ", ")))")
            for frame in stack {
                let place = frame.function.map { "\($0)+0x\(String(frame.offset, radix: 16))" } ?? hex(frame.address)
                output.write("\(prefix)\(indent(depth))    \(style.dim("at \(place) (\(frame.module ?? "?"))"))")
            }
        case .ret(let function, let depth, let value, let duration):
            let shown = value.map { " = \(ValueFormatter.text($0))" } ?? ""
            output.write("\(prefix)\(indent(depth))\(style.ret("←")) \(style.name(function.name))\(shown)\(durationText(duration))")
        case .unwound(let function, let depth, let duration):
            output.write("\(prefix)\(indent(depth))\(style.ret("↯")) \(style.name(function.name)) (unwound)\(durationText(duration))")
        case .threadStart: output.write("\(prefix)+++ thread \(event.tid) started +++")
        case .threadExit(let status): output.write("\(prefix)+++ thread \(event.tid) exited with \(status) +++")
        case .signal(let signal): output.write("\(prefix)--- \(signalName(signal)) ---")
        case .fork(let child): output.write("\(prefix)+++ forked \(child) +++")
        case .exec(let path): output.write("\(prefix)+++ exec \(path) +++")
        case .exit(let status): output.write("\(prefix)+++ \(event.pid) \(status) +++")
        case .attach: output.write("\(prefix)+++ attached to \(event.pid) +++")
        case .detach: output.write("\(prefix)+++ detached from \(event.pid) +++")
        case .lost(let lost):
            output.write("\(prefix)!!! \(lost.count) events lost (\(lost.calls) calls, \(lost.returns) returns): \(lost.cause) !!!")
        case .notice(let message): output.write("nstrace: \(message)")
        }
    }

    func flush() { output.flush() }

    func finish() { output.flush() }

    private func indent(_ depth: Int) -> String { String(repeating: "  ", count: min(depth, 40)) }

    private func durationText(_ ns: UInt64) -> String {
        options.durations ? "  " + style.dim("<\(String(format: "%.6f", Double(ns) / 1e9))>") : ""
    }

    private func clock(_ ns: UInt64) -> String {
        var seconds = time_t(ns / 1_000_000_000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "%02d:%02d:%02d.%06llu", parts.tm_hour, parts.tm_min, parts.tm_sec, (ns % 1_000_000_000) / 1000)
    }
}

/// ANSI colour, only on a terminal and never with NO_COLOR set.
struct Style {
    let enabled: Bool

    static func wanted(for output: Output) -> Bool {
        output.isTerminal && getenv("NO_COLOR") == nil && (getenv("TERM").map { String(cString: $0) } ?? "dumb") != "dumb"
    }

    private func paint(_ code: String, _ text: String) -> String { enabled ? "\u{1b}[\(code)m\(text)\u{1b}[0m" : text }
    func name(_ text: String) -> String { paint("1", text) }
    func call(_ text: String) -> String { paint("32", text) }
    func ret(_ text: String) -> String { paint("36", text) }
    func dim(_ text: String) -> String { paint("2", text) }
}

import Foundation
import NonStop
import Relocator

/// One line per event: `[time] [tid] <indent>→ fn(name=value, …)` and `← fn = value  <duration>`,
/// indented by call depth per thread so interleaved threads stay readable.
public final class TextRenderer: Renderer {
    public struct Options {
        public var timestamps = false
        public var durations = false
        public var colour = false

        public init(timestamps: Bool = false, durations: Bool = false, colour: Bool = false) {
            self.timestamps = timestamps
            self.durations = durations
            self.colour = colour
        }
    }

    private let output: Output
    private let options: Options
    private let style: Style
    /// Per function number: its name as shown, then its parameters' names followed by `=`.
    private var functions: [FunctionText] = []
    /// The time of day of the last second shown, `HH:MM:SS.`, and that second.
    private var clockSecond: UInt64 = .max
    private var clockText: [UInt8] = []

    public init(output: Output, options: Options) {
        self.output = output
        self.options = options
        style = Style(enabled: options.colour)
    }

    public func render(_ event: Event, _ batch: BatchContext) {
        if event.kind == .notice {
            output.append("nstrace: " as StaticString)
            if case .notice(let message) = batch.detail(of: event) { output.append(message) }
            return output.newline()
        }
        prefix(event)
        switch event.kind {
        case .call:
            let text = learn(event, batch)
            indent(event.depth)
            style.paint(output, "32") { output.append("→" as StaticString) }
            output.byte(0x20)
            name(text)
            output.byte(UInt8(ascii: "("))
            if let text {
                var values = batch.values(of: event)
                for i in 0..<text.parameters {
                    guard let value = values.next() else { break }
                    if i > 0 { output.append(", " as StaticString) }
                    text.write(text.firstParameter &+ i, to: output)
                    output.text(value)
                }
            }
            output.byte(UInt8(ascii: ")"))
            output.newline()
            if case .stack(let frames) = batch.detail(of: event) {
                for frame in frames { stackLine(frame, event) }
            }
            return
        case .ret:
            let text = learn(event, batch)
            indent(event.depth)
            style.paint(output, "36") { output.append("←" as StaticString) }
            output.byte(0x20)
            name(text)
            if event.hasValue {
                var values = batch.values(of: event)
                if let value = values.next() {
                    output.append(" = " as StaticString)
                    output.text(value)
                }
            }
            duration(event.duration)
        case .unwound:
            let text = learn(event, batch)
            indent(event.depth)
            style.paint(output, "36") { output.append("↯" as StaticString) }
            output.byte(0x20)
            name(text)
            output.append(" (unwound)" as StaticString)
            duration(event.duration)
        case .threadStart:
            output.append("+++ thread " as StaticString)
            output.decimal(event.tid)
            output.append(" started +++" as StaticString)
        case .threadExit:
            output.append("+++ thread " as StaticString)
            output.decimal(event.tid)
            output.append(" exited with " as StaticString)
            output.decimal(event.number)
            output.append(" +++" as StaticString)
        case .signal:
            output.append("--- \(signalName(event.number)) ---")
        case .fork:
            output.append("+++ forked " as StaticString)
            output.decimal(event.number)
            output.append(" +++" as StaticString)
        case .exec:
            if case .path(let path) = batch.detail(of: event) { output.append("+++ exec \(path) +++") }
        case .exit:
            if case .exit(let status) = batch.detail(of: event) { output.append("+++ \(event.pid) \(status) +++") }
        case .attach: output.append("+++ attached to \(event.pid) +++")
        case .detach: output.append("+++ detached from \(event.pid) +++")
        case .lost:
            if case .lost(let lost) = batch.detail(of: event) {
                output.append("!!! \(lost.count) events lost (\(lost.calls) calls, \(lost.returns) returns): \(lost.cause) !!!")
            }
        case .notice:
            break
        case .syscall:
            if case .syscall(let call) = batch.detail(of: event) { output.syscallText(call) }
            duration(event.duration)
        }
        output.newline()
    }

    /// The event's function's text, made the first time it is seen; nil for none.
    private func learn(_ event: Event, _ batch: BatchContext) -> FunctionText? {
        let index = batch.functions.index(of: event, in: &functions) { function in
            let parameters = (function.signature?.parameters ?? []).map { "\($0.name)=" }
            return FunctionText([function.name] + parameters, parameters: parameters.count)
        }
        return index.map { functions[$0] }
    }

    private func name(_ text: FunctionText?) {
        guard let text else { return output.byte(UInt8(ascii: "?")) }
        style.paint(output, "1") { text.write(0, to: output) }
    }

    /// `[time] [tid] [g N] `: what every line of an event starts with.
    private func prefix(_ event: Event) {
        if options.timestamps {
            clock(event.timestamp)
            output.byte(0x20)
        }
        style.dim(output) {
            output.byte(UInt8(ascii: "["))
            output.decimal(event.tid)
            output.byte(UInt8(ascii: "]"))
        }
        output.byte(0x20)
        if let goroutine = event.goroutineID {
            style.dim(output) {
                output.append("[g " as StaticString)
                output.decimal(goroutine)
                output.byte(UInt8(ascii: "]"))
            }
            output.byte(0x20)
        }
    }

    private func stackLine(_ frame: StackFrame, _ event: Event) {
        prefix(event)
        indent(event.depth)
        output.append("    " as StaticString)
        let place = frame.function.map { "\($0)+0x\(String(frame.offset, radix: 16))" } ?? hex(frame.address)
        style.dim(output) { output.append("at \(place) (\(frame.module ?? "?"))") }
        output.newline()
    }

    public func flush() { output.flush() }

    public func finish() { output.flush() }

    private func indent(_ depth: Int32) {
        for _ in 0..<min(max(depth, 0), 40) { output.append("  " as StaticString) }
    }

    private func duration(_ ns: UInt64) {
        guard options.durations else { return }
        output.append("  " as StaticString)
        style.dim(output) {
            output.byte(UInt8(ascii: "<"))
            output.fixed(Double(ns) / 1e9, decimals: 6)
            output.byte(UInt8(ascii: ">"))
        }
    }

    /// HH:MM:SS.uuuuuu in local time; the calendar work done once per second.
    private func clock(_ ns: UInt64) {
        let second = ns / 1_000_000_000
        if second != clockSecond {
            var seconds = time_t(clamping: second)
            var parts = tm()
            localtime_r(&seconds, &parts)
            clockText = Array(String(format: "%02d:%02d:%02d.", parts.tm_hour, parts.tm_min, parts.tm_sec).utf8)
            clockSecond = second
        }
        output.append(clockText)
        let micros = (ns % 1_000_000_000) / 1000
        var divisor: UInt64 = 100_000
        while divisor > 0 {
            output.byte(0x30 &+ UInt8(micros / divisor % 10))
            divisor /= 10
        }
    }
}

/// ANSI colour, only on a terminal and never with NO_COLOR set.
public struct Style {
    let enabled: Bool

    public static func wanted(for output: Output) -> Bool {
        output.isTerminal && getenv("NO_COLOR") == nil && (getenv("TERM").map { String(cString: $0) } ?? "dumb") != "dumb"
    }

    /// What `body` writes, in the colour `code` when colour is on.
    func paint(_ output: Output, _ code: StaticString, _ body: () -> Void) {
        guard enabled else { return body() }
        output.append("\u{1b}[" as StaticString)
        output.append(code)
        output.byte(UInt8(ascii: "m"))
        body()
        output.append("\u{1b}[0m" as StaticString)
    }

    func dim(_ output: Output, _ body: () -> Void) { paint(output, "2", body) }
}

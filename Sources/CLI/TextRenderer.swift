import Foundation
import NonStop

/// One line per event: time, thread, indentation by call depth, `→ fn(args)` and `← fn = value <dur>`.
final class TextRenderer: Renderer {
    private let output: Output

    init(output: Output) {
        self.output = output
    }

    func render(_ event: TraceEvent) {
        let prefix = "\(clock(event.timestamp)) [\(event.tid)]"
        switch event.kind {
        case .call(let function, let depth, let arguments):
            let names = function.signature?.parameters ?? []
            let args = zip(names, arguments).map { "\($0.name)=\(ValueFormatter.text($1))" }
            output.write("\(prefix) \(indent(depth))→ \(function.name)(\(args.joined(separator: ", ")))")
        case .ret(let function, let depth, let value, let duration):
            let shown = value.map { " = \(ValueFormatter.text($0))" } ?? ""
            output.write("\(prefix) \(indent(depth))← \(function.name)\(shown)  <\(seconds(duration))>")
        case .unwound(let function, let depth, let duration):
            output.write("\(prefix) \(indent(depth))↯ \(function.name) unwound  <\(seconds(duration))>")
        case .threadStart: output.write("\(prefix) +++ thread started +++")
        case .threadExit(let status): output.write("\(prefix) +++ thread exited with \(status) +++")
        case .signal(let signal): output.write("\(prefix) --- \(signalName(signal)) ---")
        case .fork(let child): output.write("\(prefix) +++ forked \(child) +++")
        case .exec(let path): output.write("\(prefix) +++ exec \(path) +++")
        case .exit(let status): output.write("\(prefix) +++ \(status) +++")
        case .attach: output.write("\(prefix) +++ attached to \(event.pid) +++")
        case .detach: output.write("\(prefix) +++ detached from \(event.pid) +++")
        case .lost(let count): output.write("\(prefix) !!! \(count) events lost !!!")
        case .notice(let message): output.write("nstrace: \(message)")
        }
    }

    func flush() { output.flush() }

    func finish() { output.flush() }

    private func indent(_ depth: Int) -> String { String(repeating: "  ", count: min(depth, 40)) }

    private func clock(_ ns: UInt64) -> String {
        var seconds = time_t(ns / 1_000_000_000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "%02d:%02d:%02d.%06llu", parts.tm_hour, parts.tm_min, parts.tm_sec, (ns % 1_000_000_000) / 1000)
    }

    private func seconds(_ ns: UInt64) -> String { String(format: "%.6f", Double(ns) / 1e9) }
}

import Foundation
import NonStop

/// One JSON object per event and line. Every object has `event`, `ts_ns`, `pid` and `tid`.
final class JSONLinesRenderer: Renderer {
    private let output: Output

    init(output: Output) {
        self.output = output
    }

    func render(_ event: TraceEvent) {
        var object: [String: Any] = ["ts_ns": event.timestamp, "pid": event.pid, "tid": event.tid]
        switch event.kind {
        case .call(let function, let depth, let arguments):
            object["event"] = "call"
            describe(function, into: &object)
            object["address"] = hex(function.address)
            object["depth"] = depth
            let params = function.signature?.parameters ?? []
            object["args"] = zip(params, arguments).map { p, v in
                ["name": p.name, "type": p.type.name, "value": ValueFormatter.json(v)] as [String: Any]
            }
        case .ret(let function, let depth, let value, let duration):
            object["event"] = "return"
            describe(function, into: &object)
            object["depth"] = depth
            object["retval"] = value.map(ValueFormatter.json) ?? NSNull()
            object["duration_ns"] = duration
        case .unwound(let function, let depth, let duration):
            object["event"] = "unwound"
            describe(function, into: &object)
            object["depth"] = depth
            object["duration_ns"] = duration
        case .threadStart: object["event"] = "thread_start"
        case .threadExit(let status):
            object["event"] = "thread_exit"
            object["status"] = status
        case .signal(let signal):
            object["event"] = "signal"
            object["signal"] = signalName(signal)
        case .fork(let child):
            object["event"] = "fork"
            object["child"] = child
        case .exec(let path):
            object["event"] = "exec"
            object["path"] = path
        case .exit(let status):
            object["event"] = "exit"
            switch status {
            case .exited(let code): object["status"] = code
            case .killed(let signal, _):
                object["status"] = 128 + signal
                object["signal"] = signalName(signal)
            }
        case .attach: object["event"] = "attach"
        case .detach: object["event"] = "detach"
        case .lost(let count):
            object["event"] = "lost"
            object["count"] = count
        case .notice(let message):
            object["event"] = "notice"
            object["message"] = message
        }
        output.write(JSONLine.encode(object))
    }

    private func describe(_ function: TracedFunction, into object: inout [String: Any]) {
        object["function"] = function.name
        object["module"] = function.module
    }

    func flush() { output.flush() }

    func finish() { output.flush() }
}

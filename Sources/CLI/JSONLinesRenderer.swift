import NonStop

/// One JSON object per event and line. Every object has `event`, `ts_ns`, `pid` and `tid`.
final class JSONLinesRenderer: Renderer {
    private let output: Output

    init(output: Output) {
        self.output = output
    }

    func render(_ event: TraceEvent) {
        output.write(JSONLinesRenderer.encode(event))
    }

    static func encode(_ event: TraceEvent) -> String {
        var o = JSONWriter()
        o.field("event", name(of: event.kind))
        o.field("ts_ns", event.timestamp)
        o.field("pid", event.pid)
        o.field("tid", event.tid)
        if let goroutine = event.goroutine { o.field("goid", goroutine) }
        switch event.kind {
        case .call(let function, let depth, let arguments, let stack):
            o.field("function", function.name)
            o.field("module", function.module)
            o.field("address", hex(function.address))
            o.field("depth", depth)
            let params = function.signature?.parameters ?? []
            o.field("args", json: JSONWriter.array(zip(params, arguments).map { p, v in
                var a = JSONWriter()
                a.field("name", p.name)
                a.field("type", p.type.name)
                a.field("value", json: ValueFormatter.json(v))
                return a.finished
            }))
            if !stack.isEmpty {
                o.field("stack", json: JSONWriter.array(stack.map { frame in
                    var f = JSONWriter()
                    f.field("address", hex(frame.address))
                    if let name = frame.function { f.field("function", name) }
                    if frame.function != nil { f.field("offset", frame.offset) }
                    if let module = frame.module { f.field("module", module) }
                    return f.finished
                }))
            }
        case .ret(let function, let depth, let value, let duration):
            o.field("function", function.name)
            o.field("module", function.module)
            o.field("depth", depth)
            if let value { o.field("retval", json: ValueFormatter.json(value)) } else { o.fieldNull("retval") }
            o.field("duration_ns", duration)
        case .unwound(let function, let depth, let duration):
            o.field("function", function.name)
            o.field("module", function.module)
            o.field("depth", depth)
            o.field("duration_ns", duration)
        case .threadStart, .attach, .detach:
            break
        case .threadExit(let status):
            o.field("status", status)
        case .signal(let signal):
            o.field("signal", signalName(signal))
        case .fork(let child):
            o.field("child", child)
        case .exec(let path):
            o.field("path", path)
        case .exit(let status):
            switch status {
            case .exited(let code): o.field("status", code)
            case .killed(let signal, _):
                o.field("status", 128 + signal)
                o.field("signal", signalName(signal))
            }
        case .lost(let lost):
            o.field("count", lost.count)
            o.field("calls", lost.calls)
            o.field("returns", lost.returns)
            o.field("cause", lost.cause)
        case .notice(let message):
            o.field("message", message)
        }
        return o.finished
    }

    static func name(of kind: TraceEvent.Kind) -> String {
        switch kind {
        case .call: return "call"
        case .ret: return "return"
        case .unwound: return "unwound"
        case .threadStart: return "thread_start"
        case .threadExit: return "thread_exit"
        case .signal: return "signal"
        case .fork: return "fork"
        case .exec: return "exec"
        case .exit: return "exit"
        case .attach: return "attach"
        case .detach: return "detach"
        case .lost: return "lost"
        case .notice: return "notice"
        }
    }

    func flush() { output.flush() }

    func finish() { output.flush() }
}

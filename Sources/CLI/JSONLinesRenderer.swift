import NonStop

/// One JSON object per event and line. Every object has `event`, `ts_ns`, `pid` and `tid`.
final class JSONLinesRenderer: Renderer {
    private let output: Output
    /// Per function number, the fields a call shows before its arguments — `"function":…,"module":…,
    /// "address":…` — and each parameter's `{"name":…,"type":…,"value":`; a return's first two fields.
    private var callFields: [[UInt8]] = []
    private var returnFields: [[UInt8]] = []
    private var parameters: [[[UInt8]]] = []

    init(output: Output) {
        self.output = output
    }

    func render(_ event: Event, _ batch: BatchContext) {
        let o = output
        o.append("{\"event\":\"" as StaticString)
        o.append(event.kind.name)
        o.append("\",\"ts_ns\":" as StaticString)
        o.decimal(event.timestamp)
        o.append(",\"pid\":" as StaticString)
        o.decimal(event.pid)
        o.append(",\"tid\":" as StaticString)
        o.decimal(event.tid)
        if let goroutine = event.goroutineID {
            o.append(",\"goid\":" as StaticString)
            o.decimal(goroutine)
        }
        switch event.kind {
        case .call:
            let id = learn(event, batch)
            if id >= 0 { o.append(callFields[id]) }
            o.append(",\"depth\":" as StaticString)
            o.decimal(event.depth)
            o.append(",\"args\":[" as StaticString)
            var values = batch.values(of: event)
            for (i, parameter) in (id >= 0 ? parameters[id] : []).enumerated() {
                guard let value = values.next() else { break }
                if i > 0 { o.byte(UInt8(ascii: ",")) }
                o.append(parameter)
                o.json(value)
                o.byte(UInt8(ascii: "}"))
            }
            o.byte(UInt8(ascii: "]"))
            if case .stack(let frames) = batch.detail(of: event), !frames.isEmpty { stack(frames) }
        case .ret:
            let id = learn(event, batch)
            if id >= 0 { o.append(returnFields[id]) }
            o.append(",\"depth\":" as StaticString)
            o.decimal(event.depth)
            o.append(",\"retval\":" as StaticString)
            var values = batch.values(of: event)
            if event.hasValue, let value = values.next() { o.json(value) } else { o.append("null" as StaticString) }
            o.append(",\"duration_ns\":" as StaticString)
            o.decimal(event.duration)
        case .unwound:
            let id = learn(event, batch)
            if id >= 0 { o.append(returnFields[id]) }
            o.append(",\"depth\":" as StaticString)
            o.decimal(event.depth)
            o.append(",\"duration_ns\":" as StaticString)
            o.decimal(event.duration)
        case .threadStart, .attach, .detach:
            break
        case .threadExit:
            o.append(",\"status\":" as StaticString)
            o.decimal(event.number)
        case .signal:
            o.append(",\"signal\":" as StaticString)
            o.jsonString(signalName(event.number))
        case .fork:
            o.append(",\"child\":" as StaticString)
            o.decimal(event.number)
        case .exec:
            o.append(",\"path\":" as StaticString)
            if case .path(let path) = batch.detail(of: event) { o.jsonString(path) } else { o.append("null" as StaticString) }
        case .exit:
            switch batch.detail(of: event) {
            case .exit(.exited(let code)):
                o.append(",\"status\":" as StaticString)
                o.decimal(code)
            case .exit(.killed(let signal, _)):
                o.append(",\"status\":" as StaticString)
                o.decimal(128 &+ signal)
                o.append(",\"signal\":" as StaticString)
                o.jsonString(signalName(signal))
            default:
                break
            }
        case .lost:
            if case .lost(let lost) = batch.detail(of: event) {
                o.append(",\"count\":" as StaticString)
                o.decimal(lost.count)
                o.append(",\"calls\":" as StaticString)
                o.decimal(lost.calls)
                o.append(",\"returns\":" as StaticString)
                o.decimal(lost.returns)
                o.append(",\"cause\":" as StaticString)
                o.jsonString(lost.cause)
            }
        case .notice:
            o.append(",\"message\":" as StaticString)
            if case .notice(let message) = batch.detail(of: event) { o.jsonString(message) } else { o.append("null" as StaticString) }
        }
        o.append("}\n" as StaticString)
    }

    private func stack(_ frames: [StackFrame]) {
        let o = output
        o.append(",\"stack\":[" as StaticString)
        for (i, frame) in frames.enumerated() {
            if i > 0 { o.byte(UInt8(ascii: ",")) }
            o.append("{\"address\":" as StaticString)
            o.jsonHex(frame.address)
            if let name = frame.function {
                o.append(",\"function\":" as StaticString)
                o.jsonString(name)
                o.append(",\"offset\":" as StaticString)
                o.decimal(frame.offset)
            }
            if let module = frame.module {
                o.append(",\"module\":" as StaticString)
                o.jsonString(module)
            }
            o.byte(UInt8(ascii: "}"))
        }
        o.byte(UInt8(ascii: "]"))
    }

    /// The event's function number, its fields encoded the first time; -1 for none.
    private func learn(_ event: Event, _ batch: BatchContext) -> Int {
        let id = Int(event.function)
        guard id >= 0 else { return -1 }
        while callFields.count <= id, let function = batch.functions[Int32(callFields.count)] {
            var common = JSONWriter()
            common.field("function", function.name)
            common.field("module", function.module)
            var call = common
            call.field("address", hex(function.address))
            callFields.append(Array(call.members.utf8))
            returnFields.append(Array(common.members.utf8))
            parameters.append((function.signature?.parameters ?? []).map { parameter in
                var p = JSONWriter()
                p.field("name", parameter.name)
                p.field("type", parameter.type.name)
                return Array((p.text + ",\"value\":").utf8)
            })
        }
        return id < callFields.count ? id : -1
    }

    func flush() { output.flush() }

    func finish() { output.flush() }
}

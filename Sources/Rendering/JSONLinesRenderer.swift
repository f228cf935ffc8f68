import NonStop
import Relocator

/// One JSON object per event and line. Every object has `event`, `ts_ns`, `pid` and `tid`.
public final class JSONLinesRenderer: Renderer {
    private let output: Output
    /// Per function number, the fields a call shows before its arguments — `"function":…,` (then
    /// `"symbol":…,` for a demangled name) `"module":…,"address":…` — and each parameter's
    /// `{"name":…,"type":…,"value":`; a return's fields before `depth`.
    private var functions: [FunctionText] = []

    public init(output: Output) {
        self.output = output
    }

    public func render(_ event: Event, _ batch: BatchContext) {
        let o = output
        o.append(JSONLinesRenderer.opening(event.kind))
        o.timestamp(event.timestamp)
        // Written each time: a ptrace strategy's events alternate between threads, and text kept per run
        // of one thread's (a String made per change) cost more than the digits.
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
            let text = learn(event, batch)
            text?.write(0, to: o)
            o.append(",\"depth\":" as StaticString)
            o.decimal(event.depth)
            o.append(",\"args\":[" as StaticString)
            if let text {
                var values = batch.values(of: event)
                for i in 0..<text.parameters {
                    guard let value = values.next() else { break }
                    if i > 0 { o.byte(UInt8(ascii: ",")) }
                    text.write(text.firstParameter &+ i, to: o)
                    o.json(value)
                    o.byte(UInt8(ascii: "}"))
                }
            }
            o.byte(UInt8(ascii: "]"))
            if case .stack(let frames) = batch.detail(of: event), !frames.isEmpty { stack(frames) }
        case .ret:
            learn(event, batch)?.write(1, to: o)
            o.append(",\"depth\":" as StaticString)
            o.decimal(event.depth)
            o.append(",\"retval\":" as StaticString)
            var values = batch.values(of: event)
            if event.hasValue, let value = values.next() { o.json(value) } else { o.append("null" as StaticString) }
            o.append(",\"duration_ns\":" as StaticString)
            o.decimal(event.duration)
        case .unwound:
            learn(event, batch)?.write(1, to: o)
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
        case .syscall:
            if case .syscall(let call) = batch.detail(of: event) { o.syscallJSON(call) }
            o.append(",\"duration_ns\":" as StaticString)
            o.decimal(event.duration)
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

    /// The event's function's text, encoded the first time it is seen; nil for none.
    private func learn(_ event: Event, _ batch: BatchContext) -> FunctionText? {
        let index = batch.functions.index(of: event, in: &functions) { function in
            var common = JSONWriter()
            common.field("function", function.name)
            // Only where a demangled name stands in `function`: a C function's events stay as they were.
            if function.symbol != function.name { common.field("symbol", function.symbol) }
            common.field("module", function.module)
            var call = common
            call.field("address", hex(function.address))
            let parameters = (function.signature?.parameters ?? []).map { parameter in
                var p = JSONWriter()
                p.field("name", parameter.name)
                p.field("type", parameter.type.name)
                return p.text + ",\"value\":"
            }
            return FunctionText([call.members, common.members] + parameters, parameters: parameters.count)
        }
        return index.map { functions[$0] }
    }

    public func flush() { output.flush() }

    public func finish() { output.flush() }

    /// `{"event":"…","ts_ns":` for each kind of event.
    private static func opening(_ kind: Event.Kind) -> StaticString {
        switch kind {
        case .call: return #"{"event":"call","ts_ns":"#
        case .ret: return #"{"event":"return","ts_ns":"#
        case .unwound: return #"{"event":"unwound","ts_ns":"#
        case .threadStart: return #"{"event":"thread_start","ts_ns":"#
        case .threadExit: return #"{"event":"thread_exit","ts_ns":"#
        case .signal: return #"{"event":"signal","ts_ns":"#
        case .fork: return #"{"event":"fork","ts_ns":"#
        case .exec: return #"{"event":"exec","ts_ns":"#
        case .exit: return #"{"event":"exit","ts_ns":"#
        case .attach: return #"{"event":"attach","ts_ns":"#
        case .detach: return #"{"event":"detach","ts_ns":"#
        case .lost: return #"{"event":"lost","ts_ns":"#
        case .notice: return #"{"event":"notice","ts_ns":"#
        case .syscall: return #"{"event":"syscall","ts_ns":"#
        }
    }
}

import Foundation
import NonStop

/// `--chrome-trace FILE`: the Trace Event Format that Perfetto and chrome://tracing open. Each call is
/// one complete ("X") event on its thread's track, written when it returns (or unwinds); calls still
/// open at the end get an "X" up to the last timestamp, marked incomplete. Streamed, so memory stays
/// flat however long the trace.
final class ChromeTraceRenderer: Renderer {
    private let output: Output
    private var first = true
    private var open: [Int32: [(name: String, module: String, start: UInt64, args: String)]] = [:]
    private var namedThreads = Set<Int32>()
    private var lastTimestamp: UInt64 = 0
    private var pids: [Int32: Int32] = [:]

    init(output: Output) {
        self.output = output
        output.write("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")
    }

    func render(_ event: TraceEvent) {
        lastTimestamp = max(lastTimestamp, event.timestamp)
        pids[event.tid] = event.pid
        switch event.kind {
        case .call(let function, _, let arguments, _):
            nameThread(event.pid, event.tid)
            var args = JSONWriter()
            for (param, value) in zip(function.signature?.parameters ?? [], arguments) {
                args.field(param.name, json: ValueFormatter.json(value))
            }
            open[event.tid, default: []].append((function.name, function.module, event.timestamp, args.finished))
        case .ret(_, _, let value, _):
            close(event.tid, at: event.timestamp, extra: value.map { ("retval", ValueFormatter.json($0)) })
        case .unwound:
            close(event.tid, at: event.timestamp, extra: ("unwound", "true"))
        case .signal(let signal):
            instant(event, "\(signalName(signal))")
        case .fork, .exec, .exit, .attach, .detach:
            instant(event, JSONLinesRenderer.name(of: event.kind))
        case .lost(let lost):
            instant(event, "\(lost.count) events lost")
        default:
            break
        }
    }

    private func close(_ tid: Int32, at end: UInt64, extra: (String, String)?) {
        guard let call = open[tid]?.popLast() else { return }
        var args = call.args
        if let (key, value) = extra {
            args = args == "{}" ? "{\"\(key)\":\(value)}" : String(args.dropLast()) + ",\"\(key)\":\(value)}"
        }
        emit(name: call.name, category: call.module, phase: "X", tid: tid, start: call.start,
             duration: end >= call.start ? end - call.start : 0, args: args)
    }

    private func instant(_ event: TraceEvent, _ name: String) {
        var o = JSONWriter()
        o.field("name", name)
        o.field("ph", "i")
        o.field("s", "t")
        o.field("ts", json: micros(event.timestamp))
        o.field("pid", event.pid)
        o.field("tid", event.tid)
        write(o.finished)
    }

    private func nameThread(_ pid: Int32, _ tid: Int32) {
        guard namedThreads.insert(tid).inserted else { return }
        var o = JSONWriter()
        o.field("name", "thread_name")
        o.field("ph", "M")
        o.field("pid", pid)
        o.field("tid", tid)
        o.field("args", json: "{\"name\":\(JSONWriter.string("thread \(tid)"))}")
        write(o.finished)
    }

    private func emit(name: String, category: String, phase: String, tid: Int32, start: UInt64, duration: UInt64, args: String) {
        var o = JSONWriter()
        o.field("name", name)
        o.field("cat", category)
        o.field("ph", phase)
        o.field("ts", json: micros(start))
        o.field("dur", json: micros(duration))
        o.field("pid", pids[tid] ?? tid)
        o.field("tid", tid)
        o.field("args", json: args)
        write(o.finished)
    }

    /// Microseconds with nanosecond precision, as the format wants.
    private func micros(_ ns: UInt64) -> String { "\(ns / 1000).\(String(format: "%03llu", ns % 1000))" }

    private func write(_ json: String) {
        output.write(first ? json : "," + json)
        first = false
    }

    func flush() { output.flush() }

    func finish() {
        for tid in open.keys.sorted() {
            while let call = open[tid]?.last {
                let args = call.args == "{}" ? "{\"incomplete\":true}" : String(call.args.dropLast()) + ",\"incomplete\":true}"
                open[tid]?.removeLast()
                emit(name: call.name, category: call.module, phase: "X", tid: tid, start: call.start,
                     duration: lastTimestamp >= call.start ? lastTimestamp - call.start : 0, args: args)
            }
        }
        output.write("]}")
        output.close()
    }
}

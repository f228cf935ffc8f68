import Foundation
import NonStop

/// `--chrome-trace FILE`: the Trace Event Format that Perfetto and chrome://tracing open. Each call is
/// one complete ("X") event on its thread's track, written when it returns (or unwinds); calls still
/// open at the end get an "X" up to the last timestamp, marked incomplete. Streamed, so memory stays
/// flat however long the trace.
public final class ChromeTraceRenderer: Renderer {
    /// A thread's open calls — a goroutine's in Go, whose calls can return on another thread than the
    /// one they began on; their arguments, already JSON, kept one after the other in `arguments`.
    private struct Track {
        var pid: Int32
        var calls: [(function: Int32, start: UInt64, arguments: Int, tid: Int32)] = []
        var arguments: [UInt8] = []
    }

    private let output: Output
    private var first = true
    private var tracks: [CallKey: Track] = [:]
    private var namedThreads = Set<Int32>()
    private var lastTimestamp: UInt64 = 0
    /// Per function number: its name and module (`"…","cat":"…"`), then each parameter's `"name":`.
    private var functions: [FunctionText] = []
    /// Scratch output for one call's arguments.
    private let scratch: Output

    public init(output: Output) throws {
        self.output = output
        scratch = try Output(path: nil, memoryOnly: true)
        output.write("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")
    }

    public func render(_ event: Event, _ batch: BatchContext) {
        lastTimestamp = max(lastTimestamp, event.timestamp)
        switch event.kind {
        case .call:
            let index = learn(event, batch)
            let key = CallKey(event)
            var track = tracks.removeValue(forKey: key) ?? Track(pid: event.pid)
            track.pid = event.pid
            if namedThreads.insert(event.tid).inserted { nameThread(event.pid, event.tid) }
            let start = track.arguments.count
            if let index {
                let text = functions[index]
                var values = batch.values(of: event)
                for i in 0..<text.parameters {
                    guard let value = values.next() else { break }
                    if i > 0 { scratch.byte(UInt8(ascii: ",")) }
                    text.write(text.firstParameter &+ i, to: scratch)
                    scratch.json(value)
                }
            }
            scratch.take { track.arguments.append(contentsOf: $0) }
            track.calls.append((Int32(clamping: index ?? -1), event.timestamp, start, event.tid))
            tracks[key] = track
        case .ret:
            var values = batch.values(of: event)
            if event.hasValue, let value = values.next() {
                scratch.append("\"retval\":" as StaticString)
                scratch.json(value)
            }
            close(CallKey(event), pid: event.pid, at: event.timestamp)
        case .unwound:
            scratch.append("\"unwound\":true" as StaticString)
            close(CallKey(event), pid: event.pid, at: event.timestamp)
        case .signal:
            instant(event, signalName(event.number))
        case .fork, .exec, .exit, .attach, .detach:
            instant(event, event.kind.name)
        case .lost:
            if case .lost(let lost) = batch.detail(of: event) { instant(event, "\(lost.count) events lost") }
        case .syscall:
            if case .syscall(let call) = batch.detail(of: event) { syscallSpan(event, call) }
        default:
            tracks[CallKey(event)]?.pid = event.pid
        }
    }

    /// The innermost open call of the thread ends: one "X" event, its arguments followed by what the
    /// scratch output holds (the return value).
    private func close(_ key: CallKey, pid: Int32, at end: UInt64) {
        guard var track = tracks.removeValue(forKey: key), let call = track.calls.popLast() else {
            scratch.take { _ in }
            return
        }
        track.pid = pid
        openEvent()
        let index = Int(call.function)
        if index >= 0 && index < functions.count { functions[index].write(0, to: output) } else { output.append("\"?\",\"cat\":\"?\"" as StaticString) }
        output.append(",\"ph\":\"X\",\"ts\":" as StaticString)
        micros(call.start)
        output.append(",\"dur\":" as StaticString)
        micros(end >= call.start ? end - call.start : 0)
        threadFields(pid: track.pid, tid: call.tid)
        output.append(",\"args\":{" as StaticString)
        let arguments = track.arguments.count > call.arguments
        if arguments {
            track.arguments[call.arguments...].withUnsafeBytes { output.append($0) }
            track.arguments.removeSubrange(call.arguments...)
        }
        scratch.take { extra in
            if !extra.isEmpty {
                if arguments { output.byte(UInt8(ascii: ",")) }
                output.append(extra)
            }
        }
        output.append("}}\n" as StaticString)
        tracks[key] = track
    }

    /// `{"name":` (after a comma but for the first event).
    private func openEvent() {
        output.append(first ? "{\"name\":" as StaticString : ",{\"name\":" as StaticString)
        first = false
    }

    private func threadFields(pid: Int32, tid: Int32) {
        output.append(",\"pid\":" as StaticString)
        output.decimal(pid)
        output.append(",\"tid\":" as StaticString)
        output.decimal(tid)
    }

    private func instant(_ event: Event, _ name: String) {
        openEvent()
        output.jsonString(name)
        output.append(",\"ph\":\"i\",\"s\":\"t\",\"ts\":" as StaticString)
        micros(event.timestamp)
        threadFields(pid: event.pid, tid: event.tid)
        output.append("}\n" as StaticString)
        tracks[CallKey(event)]?.pid = event.pid
    }

    /// A syscall: a complete event of its own (category `syscall`) on its thread's track, nested by
    /// time inside the call that made it.
    private func syscallSpan(_ event: Event, _ call: SyscallEvent) {
        if namedThreads.insert(event.tid).inserted { nameThread(event.pid, event.tid) }
        openEvent()
        output.jsonString(call.name)
        output.append(",\"cat\":\"syscall\",\"ph\":\"X\",\"ts\":" as StaticString)
        micros(event.timestamp)
        output.append(",\"dur\":" as StaticString)
        micros(event.duration)
        threadFields(pid: event.pid, tid: event.tid)
        output.append(",\"args\":{\"retval\":" as StaticString)
        output.decimal(call.result)
        if call.errno != 0 {
            output.append(",\"errno\":" as StaticString)
            output.jsonString(errnoName(call.errno))
        }
        output.append("}}\n" as StaticString)
        lastTimestamp = max(lastTimestamp, event.timestamp &+ event.duration)
        tracks[CallKey(event)]?.pid = event.pid
    }

    private func nameThread(_ pid: Int32, _ tid: Int32) {
        var o = JSONWriter()
        o.field("name", "thread_name")
        o.field("ph", "M")
        o.field("pid", pid)
        o.field("tid", tid)
        o.field("args", json: "{\"name\":\(JSONWriter.string("thread \(tid)"))}")
        write(o.finished)
    }

    /// Where the event's function's text is in `functions`, made the first time; nil for none.
    private func learn(_ event: Event, _ batch: BatchContext) -> Int? {
        batch.functions.index(of: event, in: &functions) { function in
            let parameters = (function.signature?.parameters ?? []).map { JSONWriter.string($0.name) + ":" }
            return FunctionText([JSONWriter.string(function.name) + ",\"cat\":" + JSONWriter.string(function.module)] + parameters,
                                parameters: parameters.count)
        }
    }

    /// Microseconds with nanosecond precision, as the format wants.
    private func micros(_ ns: UInt64) {
        output.decimal(ns / 1000)
        output.byte(UInt8(ascii: "."))
        let fraction = ns % 1000
        output.byte(0x30 &+ UInt8(fraction / 100))
        output.byte(0x30 &+ UInt8(fraction / 10 % 10))
        output.byte(0x30 &+ UInt8(fraction % 10))
    }

    private func write(_ json: String) {
        output.write(first ? json : "," + json)
        first = false
    }

    public func flush() { output.flush() }

    public func finish() {
        for key in tracks.keys.sorted() {
            while let track = tracks[key], !track.calls.isEmpty {
                scratch.append("\"incomplete\":true" as StaticString)
                close(key, pid: track.pid, at: lastTimestamp)
            }
        }
        output.write("]}")
        output.close()
    }
}

/// Whose calls nest: a goroutine's in a Go program (it may move between threads mid-call), else a
/// thread's.
struct CallKey: Hashable, Comparable {
    let tid: Int32
    let goroutine: Int64

    init(_ event: Event) {
        if let goroutine = event.goroutineID {
            self.goroutine = goroutine
            tid = 0
        } else {
            goroutine = Event.noGoroutine
            tid = event.tid
        }
    }

    static func < (a: CallKey, b: CallKey) -> Bool { (a.goroutine, a.tid) < (b.goroutine, b.tid) }
}

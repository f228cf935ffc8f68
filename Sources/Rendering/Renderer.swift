import CShim
import Foundation
import NonStop

/// Turns events into output. Runs on its own thread, fed batch by batch from the engine's queue.
public protocol Renderer: AnyObject {
    func render(_ event: Event, _ batch: BatchContext)
    /// Called after each batch of events taken from the queue.
    func flush()
    /// Called once after the last event.
    func finish()
}

/// What an event refers to beyond itself: its batch (values, details) and the functions by number.
public struct BatchContext {
    let batch: EventBatch
    /// The batch's value bytes, valid while the batch is rendered.
    let values: UnsafeRawBufferPointer
    let functions: FunctionTable
    /// The detail of a call held by `CallFilter` (its batch is gone when it is shown).
    var heldDetail: EventDetail? = nil

    func values(of event: Event) -> EncodedValues { EventBatch.values(of: event, in: values) }

    func function(of event: Event) -> TracedFunction? { functions[event.function] }

    func detail(of event: Event) -> EventDetail? { heldDetail ?? batch.detail(of: event) }
}

/// Every function events have named, by number (`Event.function`), in the order the engine numbered them.
final class FunctionTable {
    private(set) var functions: [TracedFunction] = []

    func add(_ new: [TracedFunction]) { functions += new }

    subscript(id: Int32) -> TracedFunction? {
        let i = Int(id)
        return i >= 0 && i < functions.count ? functions[i] : nil
    }

    /// Where `event`'s function is in a renderer's own per-function `cache` (indexed like this table),
    /// whose entries `make` makes for every function numbered since it last grew; nil for an event of
    /// no function.
    func index<T>(of event: Event, in cache: inout [T], _ make: (TracedFunction) -> T) -> Int? {
        let id = Int(event.function)
        guard id >= 0 else { return nil }
        while cache.count <= id, let function = self[Int32(cache.count)] { cache.append(make(function)) }
        return id < cache.count ? id : nil
    }
}

/// Pieces of text a renderer writes for one function (its name, its parameters' names, …), encoded
/// once, kept in one block: writing piece `i` takes no reference count per piece.
final class FunctionText {
    private let bytes: [UInt8]
    private let ends: [Int]
    /// How many of the pieces are its parameters' (the last ones).
    let parameters: Int
    /// Where its parameters' pieces start.
    var firstParameter: Int { ends.count - parameters }

    init(_ pieces: [String], parameters: Int) {
        var bytes: [UInt8] = [], ends: [Int] = []
        for piece in pieces {
            bytes += piece.utf8
            ends.append(bytes.count)
        }
        self.bytes = bytes
        self.ends = ends
        self.parameters = parameters
    }

    func write(_ piece: Int, to output: Output) {
        guard piece >= 0, piece < ends.count else { return }
        let start = piece == 0 ? 0 : ends[piece &- 1]
        bytes.withUnsafeBytes { output.append(UnsafeRawBufferPointer(rebasing: $0[start..<ends[piece]])) }
    }
}

/// Buffered output to stderr or a file, built byte by byte (no string per event) and written in large
/// pieces; a failed write asks the engine to stop (and detach).
public final class Output {
    private let handle: UnsafeMutablePointer<FILE>
    private let owned: Bool
    /// Bytes are kept (the buffer grows) until taken, never written.
    private let memoryOnly: Bool
    private(set) var failed = false
    private var capacity = 1 << 16
    private var buffer: UnsafeMutablePointer<UInt8>
    private var count = 0

    /// `memoryOnly`: a scratch output whose bytes are taken with `take`.
    public init(path: String?, memoryOnly: Bool = false) throws {
        self.memoryOnly = memoryOnly
        if let path {
            guard let file = fopen(path, "w") else {
                throw OutputError(description: "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            handle = file
            owned = true
        } else {
            handle = stderr
            owned = false
        }
        buffer = .allocate(capacity: capacity)
    }

    deinit { buffer.deallocate() }

    var isTerminal: Bool { isatty(fileno(handle)) != 0 }

    /// A whole line.
    func write(_ line: String) {
        append(line)
        newline()
    }

    @inline(__always)
    func byte(_ b: UInt8) {
        if count == capacity { drain() }
        buffer[count] = b
        count &+= 1
    }

    func newline() { byte(0x0a) }

    func append(_ text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        // Most pieces are a few bytes: a loop costs less than a call to memmove.
        if bytes.count <= 16, capacity &- count >= 16 {
            for (i, b) in bytes.enumerated() { buffer[count &+ i] = b }
            count &+= bytes.count
            return
        }
        appendLarge(bytes)
    }

    private func appendLarge(_ bytes: UnsafeRawBufferPointer) {
        if capacity - count < bytes.count {
            drain(making: bytes.count)
            if bytes.count > capacity {
                put(bytes)
                return
            }
        }
        if let base = bytes.baseAddress { (buffer + count).initialize(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
        count &+= bytes.count
    }

    func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    func decimal(_ value: Int64) {
        if value < 0 {
            byte(UInt8(ascii: "-"))
            decimal(value.magnitude)
        } else {
            decimal(UInt64(value))
        }
    }

    func decimal(_ value: UInt64) {
        if value < 10 { return byte(0x30 &+ UInt8(truncatingIfNeeded: value)) }
        if capacity &- count < 20 { drain() }
        let length = Output.digitCount(value)
        digits(value, length, at: count)
        count &+= length
    }

    /// A timestamp in nanoseconds: its seconds' digits (the same for thousands of events in a row) are
    /// kept from the last one, the nine digits of nanoseconds written two at a time.
    func timestamp(_ ns: UInt64) {
        let seconds = ns / 1_000_000_000
        if seconds != lastSeconds {
            lastSeconds = seconds
            lastSecondsText = Array(String(seconds).utf8)
        }
        if seconds > 0 {
            append(lastSecondsText)
            if capacity &- count < 9 { drain() }
            digits(ns % 1_000_000_000, 9, at: count)
            count &+= 9
        } else {
            decimal(ns)
        }
    }

    private var lastSeconds: UInt64 = .max
    private var lastSecondsText: [UInt8] = []

    /// The `length` last decimal digits of `value` at `offset`, two at a time.
    @inline(__always)
    private func digits(_ value: UInt64, _ length: Int, at offset: Int) {
        var v = value, i = offset &+ length
        while i &- offset >= 2 {
            let pair = v % 100
            v /= 100
            i &-= 2
            buffer[i] = 0x30 &+ UInt8(truncatingIfNeeded: pair / 10)
            buffer[i &+ 1] = 0x30 &+ UInt8(truncatingIfNeeded: pair % 10)
        }
        if i > offset { buffer[offset] = 0x30 &+ UInt8(truncatingIfNeeded: v % 10) }
    }

    private static func digitCount(_ value: UInt64) -> Int {
        var n = 1, bound: UInt64 = 10
        while n < 20, value >= bound {
            n &+= 1
            bound = bound &* 10
        }
        return n
    }

    func decimal(_ value: Int32) { decimal(Int64(value)) }
    func decimal(_ value: Int) { decimal(Int64(value)) }

    /// `0x` and lowercase hex digits, no leading zeros.
    func hex(_ value: UInt64) {
        append("0x" as StaticString)
        let digits = max(1, (64 - value.leadingZeroBitCount + 3) / 4)
        for i in stride(from: digits - 1, through: 0, by: -1) { byte(Output.hexDigit(UInt8(truncatingIfNeeded: value >> UInt64(4 * i)) & 0xf)) }
    }

    /// `value` with `decimals` digits after the point, as printf's `%.Nf`.
    func fixed(_ value: Double, decimals: Int32) {
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            let n = Int(nst_format_fixed(p, raw.count, value, decimals))
            append(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(raw)[0..<n]))
        }
    }

    static func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble }

    /// The bytes kept so far (a memory-only output), then none.
    func take(_ body: (UnsafeRawBufferPointer) -> Void) {
        body(UnsafeRawBufferPointer(start: buffer, count: count))
        count = 0
    }

    /// Writes what is buffered to the file (not flushed past stdio); a memory-only output grows to
    /// make room for `needed` more bytes instead.
    private func drain(making needed: Int = 1) {
        if memoryOnly {
            guard capacity - count < needed else { return }
            var grown = capacity * 2
            while grown - count < needed { grown *= 2 }
            let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
            larger.initialize(from: buffer, count: count)
            buffer.deallocate()
            buffer = larger
            capacity = grown
            return
        }
        guard count > 0 else { return }
        put(UnsafeRawBufferPointer(start: buffer, count: count))
        count = 0
    }

    private func put(_ bytes: UnsafeRawBufferPointer) {
        guard !failed, let base = bytes.baseAddress, bytes.count > 0 else { return }
        if fwrite(base, 1, bytes.count, handle) != bytes.count {
            failed = true
            StopRequest.request()
        }
    }

    public func flush() {
        guard !memoryOnly, !closed else { return }
        drain()
        fflush(handle)
    }

    private var closed = false

    /// Flushes and closes the file (once, whoever asks).
    public func close() {
        guard !closed else { return }
        flush()
        closed = true
        if owned { fclose(handle) }
    }
}

public struct OutputError: Error, CustomStringConvertible {
    public let description: String
}

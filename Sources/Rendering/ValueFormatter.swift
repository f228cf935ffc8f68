import NonStop

/// How values read, written straight into the output: in text, C strings quoted and escaped as strace
/// does, pointers in hex, chars quoted, structs as `{x: 1, y: 2.5}` (unions with every member), arrays
/// as `[1, 2, 3]` (`, …` when longer than shown), a followed pointer as `0x… -> value`; in JSON,
/// numbers as numbers, strings as strings, pointers as hex strings, a struct as an object of its
/// fields, an array as an array, a followed pointer as `{"address": …, "value": …}`.
extension Output {
    func text(_ value: ValueView) {
        switch value {
        case .signed(let v): decimal(v)
        case .unsigned(let v): decimal(v)
        case .bool(let b): append(b ? "true" : "false" as StaticString)
        case .char(let c):
            byte(UInt8(ascii: "'"))
            withUnsafeBytes(of: c) { escaped($0, quote: UInt8(ascii: "'")) }
            byte(UInt8(ascii: "'"))
        case .float(let d): double(d)
        case .pointer(let p): if p == 0 { append("NULL" as StaticString) } else { hex(p) }
        case .string(let bytes, let truncated, _), .goString(let bytes, let truncated, _):
            byte(UInt8(ascii: "\""))
            escaped(bytes, quote: UInt8(ascii: "\""))
            byte(UInt8(ascii: "\""))
            if truncated { append("..." as StaticString) }
        case .badString(let address): hex(address)
        case .goSlice(let address, let length, let capacity, let elements):
            // As Go's %v prints it, with the length and capacity a tracer's reader wants too.
            if address == 0 && length == 0 { return append("nil" as StaticString) }
            byte(UInt8(ascii: "["))
            var shown: UInt64 = 0
            for element in elements {
                if shown > 0 { byte(0x20) }
                text(element)
                shown &+= 1
            }
            if shown < length { append(shown == 0 ? "…" : " …" as StaticString) }
            append("] len=" as StaticString)
            decimal(length)
            append(" cap=" as StaticString)
            decimal(capacity)
        case .goInterface(let type, let data):
            if type == 0 && data == 0 { return append("nil" as StaticString) }
            byte(UInt8(ascii: "("))
            hex(type)
            append(", " as StaticString)
            hex(data)
            byte(UInt8(ascii: ")"))
        case .aggregate(let bytes):
            byte(UInt8(ascii: "{"))
            hexBytes(bytes)
            byte(UInt8(ascii: "}"))
        case .tuple(let values):
            byte(UInt8(ascii: "("))
            var first = true
            for v in values {
                if !first { append(", " as StaticString) }
                first = false
                text(v)
            }
            byte(UInt8(ascii: ")"))
        case .unavailable: byte(UInt8(ascii: "?"))
        case .int128(let low, let high, let signed): append(Output.int128(low: low, high: high, signed: signed))
        case .longDouble(let bits): longDouble(bits.value)
        case .structure(let pairs):
            byte(UInt8(ascii: "{"))
            var iterator = pairs, first = true
            while let name = iterator.next(), let value = iterator.next() {
                if !first { append(", " as StaticString) }
                first = false
                if case .string(let text, _, _) = name { escaped(text, quote: 0) }
                append(": " as StaticString)
                text(value)
            }
            byte(UInt8(ascii: "}"))
        case .array(let elements, let count):
            byte(UInt8(ascii: "["))
            var shown: UInt64 = 0
            for element in elements {
                if shown > 0 { append(", " as StaticString) }
                text(element)
                shown &+= 1
            }
            if shown < count { append(shown == 0 ? "…" : ", …" as StaticString) }
            byte(UInt8(ascii: "]"))
        case .pointee(let address, let value):
            hex(address)
            append(" -> " as StaticString)
            var iterator = value
            text(iterator.next() ?? .unavailable)
        case .unreadablePointer(let address):
            hex(address)
            append(" -> <unreadable>" as StaticString)
        }
    }

    /// An `__int128` in decimal.
    static func int128(low: UInt64, high: UInt64, signed: Bool) -> String {
        let bits = UInt128(high) << 64 | UInt128(low)
        return signed ? Int128(truncatingIfNeeded: bits).description : bits.description
    }

    /// A `long double` as a double is written (`4.0` for a whole number), else the shortest decimal that
    /// reads back as the same 80 bits (Swift's Float80 description: exact, with no rounding to double).
    func longDouble(_ value: Float80) {
        if value == value.rounded(), value.magnitude < 1e15 { return double(Double(value)) }
        append(value.description)
    }

    /// A whole number with one decimal (`4.0`), anything else as Swift prints it (`0.25`, `1e+20`).
    func double(_ d: Double) {
        if d == d.rounded(), abs(d) < 1e15 { return fixed(d, decimals: 1) }
        shortest(d)
    }

    /// A double as Swift's `description` writes it (the shortest digits that read back as it), without
    /// making a string for the common case: below 2^40 with at most three decimals, where the decimal
    /// m / 10^k that reads back as `d` is the shortest (doubles there are closer than 10^-3 apart, so no
    /// other k-decimal number reads back as `d`). Checked against `description` on 2.7 M values.
    func shortest(_ d: Double) {
        if d.isFinite, d.magnitude < 1_099_511_627_776 {
            var scale: Double = 1, divisor: UInt64 = 1
            for k in 0...3 {
                let m = (d.magnitude * scale).rounded()
                if m / scale == d.magnitude {
                    if d.sign == .minus { byte(UInt8(ascii: "-")) }
                    let digits = UInt64(m)
                    decimal(digits / divisor)
                    byte(UInt8(ascii: "."))
                    if k == 0 { return byte(0x30) }
                    var rest = digits % divisor
                    for _ in 0..<k {
                        divisor /= 10
                        byte(0x30 &+ UInt8(rest / divisor))
                        rest %= divisor
                    }
                    return
                }
                scale *= 10
                divisor *= 10
            }
        }
        append(d.description)
    }

    /// strace's escaping: \n, \t, \r, \\, the quote, and \ooo for the rest of the non-printable bytes.
    func escaped(_ bytes: UnsafeRawBufferPointer, quote: UInt8) {
        for b in bytes {
            switch b {
            case 0x0a: append("\\n" as StaticString)
            case 0x09: append("\\t" as StaticString)
            case 0x0d: append("\\r" as StaticString)
            case 0x5c: append("\\\\" as StaticString)
            case 0x20..<0x7f:
                if b == quote { byte(0x5c) }
                byte(b)
            default:
                byte(0x5c)
                if b >= 0o100 { byte(0x30 &+ b >> 6) }
                if b >= 0o10 { byte(0x30 &+ (b >> 3) & 7) }
                byte(0x30 &+ b & 7)
            }
        }
    }

    func hexBytes(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes {
            byte(Output.hexDigit(b >> 4))
            byte(Output.hexDigit(b & 0xf))
        }
    }

    func json(_ value: ValueView) {
        switch value {
        case .signed(let v): decimal(v)
        case .unsigned(let v): decimal(v)
        case .bool(let b): append(b ? "true" : "false" as StaticString)
        case .char(let c): withUnsafeBytes(of: c) { jsonString($0) }
        case .float(let d):
            if d.isFinite { shortest(d) } else { jsonString(d.description) }
        case .pointer(let p): jsonHex(p)
        case .string(let bytes, let truncated, _), .goString(let bytes, let truncated, _):
            jsonString(bytes, suffix: truncated ? "..." : "")
        case .badString(let address): jsonHex(address)
        case .goSlice(let address, let length, let capacity, let elements):
            append("{\"address\":" as StaticString)
            jsonHex(address)
            append(",\"len\":" as StaticString)
            decimal(length)
            append(",\"cap\":" as StaticString)
            decimal(capacity)
            append(",\"elements\":" as StaticString)
            jsonArray(elements)
            byte(UInt8(ascii: "}"))
        case .goInterface(let type, let data):
            if type == 0 && data == 0 { return append("null" as StaticString) }
            append("{\"type\":" as StaticString)
            jsonHex(type)
            append(",\"data\":" as StaticString)
            jsonHex(data)
            byte(UInt8(ascii: "}"))
        case .aggregate(let bytes):
            byte(UInt8(ascii: "\""))
            hexBytes(bytes)
            byte(UInt8(ascii: "\""))
        case .tuple(let values): jsonArray(values)
        case .unavailable: append("null" as StaticString)
        case .int128(let low, let high, let signed): append(Output.int128(low: low, high: high, signed: signed))
        case .longDouble(let bits):
            let value = bits.value
            // Past a double's range, as a string: common JSON readers (Foundation's among them) refuse
            // or round such a number.
            let near = Double(value)
            if near.isFinite, near != 0 || value == 0 { longDouble(value) } else { jsonString(value.description) }
        case .structure(let pairs):
            byte(UInt8(ascii: "{"))
            var iterator = pairs, first = true
            while let name = iterator.next(), let value = iterator.next() {
                if !first { byte(UInt8(ascii: ",")) }
                first = false
                if case .string(let text, _, _) = name { jsonString(text) } else { append("\"\"" as StaticString) }
                byte(UInt8(ascii: ":"))
                json(value)
            }
            byte(UInt8(ascii: "}"))
        case .array(let elements, _): jsonArray(elements)
        case .pointee(let address, let value):
            append("{\"address\":" as StaticString)
            jsonHex(address)
            append(",\"value\":" as StaticString)
            var iterator = value
            json(iterator.next() ?? .unavailable)
            byte(UInt8(ascii: "}"))
        case .unreadablePointer(let address):
            append("{\"address\":" as StaticString)
            jsonHex(address)
            append(",\"unreadable\":true}" as StaticString)
        }
    }

    private func jsonArray(_ values: EncodedValues) {
        byte(UInt8(ascii: "["))
        var first = true
        for v in values {
            if !first { byte(UInt8(ascii: ",")) }
            first = false
            json(v)
        }
        byte(UInt8(ascii: "]"))
    }

    func jsonHex(_ value: UInt64) {
        byte(UInt8(ascii: "\""))
        hex(value)
        byte(UInt8(ascii: "\""))
    }

    func jsonString(_ text: String) {
        var text = text
        text.withUTF8 { jsonString(UnsafeRawBufferPointer($0)) }
    }

    /// Bytes from a tracee as a JSON string: valid UTF-8 as it is, anything else with U+FFFD for each
    /// invalid sequence (as Swift decodes it).
    func jsonString(_ bytes: UnsafeRawBufferPointer, suffix: StaticString = "") {
        byte(UInt8(ascii: "\""))
        if bytes.allSatisfy({ $0 < 0x80 }) {
            jsonEscaped(bytes)
        } else {
            var decoded = String(decoding: bytes, as: UTF8.self)
            decoded.withUTF8 { jsonEscaped(UnsafeRawBufferPointer($0)) }
        }
        append(suffix)
        byte(UInt8(ascii: "\""))
    }

    /// UTF-8 with JSON's escapes: the quote, the backslash, and control characters.
    private func jsonEscaped(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""): append("\\\"" as StaticString)
            case 0x5c: append("\\\\" as StaticString)
            case 0x0a: append("\\n" as StaticString)
            case 0x0d: append("\\r" as StaticString)
            case 0x09: append("\\t" as StaticString)
            case 0..<0x20:
                append("\\u00" as StaticString)
                byte(Output.hexDigit(b >> 4))
                byte(Output.hexDigit(b & 0xf))
            default: byte(b)
            }
        }
    }
}

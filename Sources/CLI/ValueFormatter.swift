import NonStop
import Symbols

/// How a value reads in text output: C strings quoted and escaped, pointers in hex, chars quoted.
enum ValueFormatter {
    static func text(_ value: ArgumentValue, type: ValueType? = nil) -> String {
        switch value {
        case .signed(let v): return String(v)
        case .unsigned(let v): return String(v)
        case .bool(let b): return b ? "true" : "false"
        case .char(let c): return "'\(escape([c], quote: "'"))'"
        case .float(let d): return formatDouble(d)
        case .pointer(let p): return p == 0 ? "NULL" : hex(p)
        case .string(let bytes, let truncated, _): return "\"\(escape(bytes, quote: "\""))\"" + (truncated ? "..." : "")
        case .badString(let address): return hex(address)
        case .goString(let bytes, let truncated, _): return "\"\(escape(bytes, quote: "\""))\"" + (truncated ? "..." : "")
        case .goSlice(let address, let length, let capacity, let elements):
            // As Go's %v prints it, with the length and capacity a tracer's reader wants too.
            if address == 0 && length == 0 { return "nil" }
            let shown = elements.map { text($0) }.joined(separator: " ")
            let more = UInt64(elements.count) < length ? (elements.isEmpty ? "…" : " …") : ""
            return "[\(shown)\(more)] len=\(length) cap=\(capacity)"
        case .goInterface(let type, let data):
            return type == 0 && data == 0 ? "nil" : "(\(hex(type)), \(hex(data)))"
        case .aggregate(let bytes): return "{" + bytes.map { hex2($0) }.joined() + "}"
        case .tuple(let values): return "(" + values.map { text($0) }.joined(separator: ", ") + ")"
        case .unavailable: return "?"
        }
    }

    static func formatDouble(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    /// strace's escaping: \n, \t, \", \\ and \ooo for the rest of the non-printable bytes.
    static func escape(_ bytes: [UInt8], quote: Character) -> String {
        var out = ""
        for b in bytes {
            switch b {
            case 0x0a: out += "\\n"
            case 0x09: out += "\\t"
            case 0x0d: out += "\\r"
            case 0x5c: out += "\\\\"
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                if Character(UnicodeScalar(b)) == quote { out += "\\" }
                out.append(Character(UnicodeScalar(b)))
            case 0x20..<0x7f: out.append(Character(UnicodeScalar(b)))
            default: out += "\\" + String(b, radix: 8)
            }
        }
        return out
    }

    /// The same value as JSON text: numbers as numbers, strings as strings, pointers as hex strings.
    static func json(_ value: ArgumentValue) -> String {
        switch value {
        case .signed(let v): return String(v)
        case .unsigned(let v): return String(v)
        case .bool(let b): return b ? "true" : "false"
        case .char(let c): return JSONWriter.string(String(decoding: [c], as: UTF8.self))
        case .float(let d): return d.isFinite ? "\(d)" : JSONWriter.string("\(d)")
        case .pointer(let p): return JSONWriter.string(hex(p))
        case .string(let bytes, let truncated, _), .goString(let bytes, let truncated, _):
            return JSONWriter.string(String(decoding: bytes, as: UTF8.self) + (truncated ? "..." : ""))
        case .badString(let address): return JSONWriter.string(hex(address))
        case .goSlice(let address, let length, let capacity, let elements):
            var o = JSONWriter()
            o.field("address", hex(address))
            o.field("len", length)
            o.field("cap", capacity)
            o.field("elements", json: JSONWriter.array(elements.map(json)))
            return o.finished
        case .goInterface(let type, let data):
            if type == 0 && data == 0 { return "null" }
            var o = JSONWriter()
            o.field("type", hex(type))
            o.field("data", hex(data))
            return o.finished
        case .aggregate(let bytes): return JSONWriter.string(bytes.map { hex2($0) }.joined())
        case .tuple(let values): return JSONWriter.array(values.map(json))
        case .unavailable: return "null"
        }
    }
}

func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
}

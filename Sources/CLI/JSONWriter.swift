/// Writes one JSON object by appending to a string: several times faster than JSONSerialization on
/// the hot path of a busy trace, and fields keep the order they are written in.
struct JSONWriter {
    private(set) var text = "{"
    private var empty = true

    private mutating func key(_ name: String) {
        if !empty { text += "," }
        empty = false
        text += "\""
        text += name
        text += "\":"
    }

    mutating func field(_ name: String, _ value: String) {
        key(name)
        JSONWriter.appendString(value, to: &text)
    }

    mutating func field<I: BinaryInteger>(_ name: String, _ value: I) {
        key(name)
        text += String(value)
    }

    mutating func field(_ name: String, _ value: Double) {
        key(name)
        text += value.isFinite ? "\(value)" : "null"
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    /// A value already encoded as JSON.
    mutating func field(_ name: String, json: String) {
        key(name)
        text += json
    }

    mutating func fieldNull(_ name: String) {
        key(name)
        text += "null"
    }

    var finished: String { text + "}" }

    /// The fields written so far, each after a comma: to follow other fields of an object.
    var members: String { empty ? "" : "," + text.dropFirst() }

    static func array(_ elements: [String]) -> String { "[" + elements.joined(separator: ",") + "]" }

    static func string(_ value: String) -> String {
        var out = ""
        appendString(value, to: &out)
        return out
    }

    static func appendString(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

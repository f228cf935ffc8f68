/// Writes one JSON object by appending to a string: several times faster than JSONSerialization on
/// the hot path of a busy trace, and fields keep the order they are written in.
public struct JSONWriter {
    public private(set) var text = "{"
    private var empty = true

    public init() {}

    private mutating func key(_ name: String) {
        if !empty { text += "," }
        empty = false
        text += "\""
        text += name
        text += "\":"
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        JSONWriter.appendString(value, to: &text)
    }

    public mutating func field<I: BinaryInteger>(_ name: String, _ value: I) {
        key(name)
        text += String(value)
    }

    public mutating func field(_ name: String, _ value: Double) {
        key(name)
        text += value.isFinite ? "\(value)" : "null"
    }

    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    /// A value already encoded as JSON.
    public mutating func field(_ name: String, json: String) {
        key(name)
        text += json
    }

    public mutating func fieldNull(_ name: String) {
        key(name)
        text += "null"
    }

    public var finished: String { text + "}" }

    /// The fields written so far, each after a comma: to follow other fields of an object.
    public var members: String { empty ? "" : "," + text.dropFirst() }

    public static func array(_ elements: [String]) -> String { "[" + elements.joined(separator: ",") + "]" }

    public static func string(_ value: String) -> String {
        var out = ""
        appendString(value, to: &out)
        return out
    }

    public static func appendString(_ value: String, to out: inout String) {
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

import Foundation
import Rendering

/// One column of a results table: its title, how a row shows in it, and whether it is right-aligned.
struct Column<Row> {
    let title: String
    let value: (Row) -> String
    let right: Bool

    init(_ title: String, right: Bool = true, _ value: @escaping (Row) -> String) {
        self.title = title
        self.value = value
        self.right = right
    }
}

/// The tables every report prints: aligned text for the terminal, Markdown for the results files.
enum Table {
    /// "–" for a value that is not there, else the value in `format`.
    static func show(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "–" }
    static func show(_ value: Int?) -> String { value.map(String.init) ?? "–" }

    /// Columns padded to their widest cell; a blank line before each row that starts a new group.
    static func text<Row>(_ rows: [Row], _ columns: [Column<Row>], startsGroup: (Row, Row) -> Bool = { _, _ in false }) -> String {
        let cells = rows.map { r in columns.map { $0.value(r) } }
        let widths = columns.indices.map { i in max(columns[i].title.count, cells.map { $0[i].count }.max() ?? 0) }
        func line(_ values: [String]) -> String {
            values.indices.map { i in
                let pad = String(repeating: " ", count: max(0, widths[i] - values[i].count))
                return columns[i].right ? pad + values[i] : values[i] + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = line(columns.map(\.title)) + "\n"
        for (i, values) in cells.enumerated() {
            if i > 0, startsGroup(rows[i - 1], rows[i]) { out += "\n" }
            out += line(values) + "\n"
        }
        return out
    }

    static func markdown<Row>(_ rows: [Row], _ columns: [Column<Row>]) -> String {
        var out = "| " + columns.map(\.title).joined(separator: " | ") + " |\n"
        out += "|" + columns.map { $0.right ? "---:|" : "---|" }.joined() + "\n"
        for r in rows {
            out += "| " + columns.map { $0.value(r).replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
        }
        return out
    }
}

extension Environment {
    /// What a Markdown results file starts with: when, where, with which peers, and the command.
    var markdownPreamble: String {
        var out = "Measured \(date) on \(cpus) × \(cpu), Linux \(kernel) (load average at the end: \(loadAverage))."
        if !peers.isEmpty { out += " Peers: \(peers.joined(separator: ", "))." }
        return out + "\n\n```\n\(command)\n```\n"
    }
}

extension JSONWriter {
    /// Optional values, `null` when absent; doubles with a fixed number of decimals.
    mutating func field(_ name: String, _ value: String?) {
        if let value { field(name, value) } else { fieldNull(name) }
    }

    mutating func field(_ name: String, _ value: Int?) {
        if let value { field(name, value) } else { fieldNull(name) }
    }

    mutating func field(_ name: String, _ value: Bool?) {
        if let value { field(name, value) } else { fieldNull(name) }
    }

    mutating func field(_ name: String, _ value: Double?, digits: Int) {
        if let value, value.isFinite { field(name, json: String(format: "%.\(digits)f", value)) } else { fieldNull(name) }
    }
}

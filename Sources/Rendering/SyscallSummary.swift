import Foundation
import NonStop

/// `-c` with `-S`: syscalls counted as `strace -c -w` counts them — calls, errors, and the wall time
/// from entry to exit — in a table of their own under the functions', sorted by time.
struct SyscallSummary {
    private struct Row {
        var calls = 0
        var errors = 0
        var nanoseconds: UInt64 = 0
    }

    /// By syscall number.
    private var rows: [Int: (name: String, row: Row)] = [:]

    var isEmpty: Bool { rows.isEmpty }

    mutating func add(_ call: SyscallEvent, duration: UInt64) {
        var entry = rows[call.number] ?? (call.name, Row())
        entry.row.calls += 1
        if call.errno != 0 { entry.row.errors += 1 }
        entry.row.nanoseconds &+= duration
        rows[call.number] = entry
    }

    /// strace's columns: % time, seconds, usecs/call, calls, errors, syscall; a total line under them.
    func lines() -> [String] {
        guard !rows.isEmpty else { return [] }
        let sorted = rows.values.sorted { ($0.row.nanoseconds, $1.name) > ($1.row.nanoseconds, $0.name) }
        let total = sorted.reduce(Row()) { Row(calls: $0.calls + $1.row.calls, errors: $0.errors + $1.row.errors,
                                              nanoseconds: $0.nanoseconds &+ $1.row.nanoseconds) }
        func line(_ percent: String, _ row: Row, _ name: String) -> String {
            let seconds = String(format: "%.6f", Double(row.nanoseconds) / 1e9)
            let perCall = String(row.calls > 0 ? row.nanoseconds / UInt64(row.calls) / 1000 : 0)
            let errors = row.errors > 0 ? String(row.errors) : ""
            return percent.leftPadded(to: 6) + seconds.leftPadded(to: 12) + perCall.leftPadded(to: 12)
                + String(row.calls).leftPadded(to: 10) + errors.leftPadded(to: 10) + " " + name
        }
        let rule = "------ ----------- ----------- --------- --------- ----------------"
        var out = ["% time     seconds  usecs/call     calls    errors syscall", rule]
        for (name, row) in sorted {
            let share = total.nanoseconds > 0 ? Double(row.nanoseconds) * 100 / Double(total.nanoseconds) : 0
            out.append(line(String(format: "%.2f", share), row, name))
        }
        out.append(rule)
        out.append(line("100.00", total, "total"))
        return out
    }
}

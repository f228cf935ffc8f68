import Glibc
@testable import Relocator

/// One disagreement between a window and its pad.
struct WindowMismatch: CustomStringConvertible {
    let window: WindowCase
    let run: WindowRun
    let original: Outcome
    let differences: [String]

    var description: String {
        var lines = ["\(window)", "  from \(run.variant), probes: \(run.probes), \(run.ring); the original \(original)"]
        lines += differences.prefix(12).map { "  \($0)" }
        if differences.count > 12 { lines.append("  … \(differences.count - 12) more") }
        return lines.joined(separator: "\n")
    }
}

/// What the window oracle checked and found.
struct WindowTally {
    /// Functions in the modules, those planned (all, or the sample), the windows the planner made for
    /// them, and the sites it left as int3s, by reason.
    var functions: [String: Int] = [:]
    var planned: [String: Int] = [:]
    var windows: [String: Int] = [:]
    var fallbacks: [String: Int] = [:]
    /// Windows run (all of them, or the sample), by origin, and by shape.
    var checked: [String: Int] = [:]
    var shapes: [String: Int] = [:]
    /// Windows with at least one run compared.
    var compared = 0
    /// (window, starting state, probes) triples: each is one original run and one pad run.
    var runs = 0
    /// Runs whose probes found their bucket full (the slow path).
    var fullBucketRuns = 0
    /// How the original left the window: fell through, branched out, returned, called, jumped, faulted.
    var exits: [String: Int] = [:]
    var entryRecords = 0
    var returnRecords = 0
    var memoryCaptures = 0
    /// Bytes the pad left different where it may (below a probe's red zone, below a call's return
    /// address), and runs where it did.
    var excusedBytes = 0
    /// Stops per pad run: steps through the patch, then one run on to the exit.
    var padStops = 0
    /// Runs not compared, and windows not run, by reason, with a few of the windows.
    var skipped: [String: Int] = [:]
    var skippedExamples: [String: [String]] = [:]
    private(set) var mismatchCount = 0
    private(set) var mismatches: [WindowMismatch] = []

    static let keptMismatches = 20

    mutating func count(_ corpus: WindowCorpus) {
        for (origin, n) in corpus.functions { functions[origin.description, default: 0] += n }
        for (origin, n) in corpus.planned { planned[origin.description, default: 0] += n }
        for c in corpus.cases { windows[c.origin.description, default: 0] += 1 }
        for (reason, n) in corpus.fallbacks { fallbacks[reason, default: 0] += n }
    }

    mutating func skip(_ reason: String, _ c: WindowCase) {
        skipped[reason, default: 0] += 1
        if skippedExamples[reason, default: []].count < 3 { skippedExamples[reason, default: []].append(c.description) }
    }

    mutating func mismatch(_ m: WindowMismatch) {
        mismatchCount += 1
        if mismatches.count < Self.keptMismatches { mismatches.append(m) }
    }

    var summary: String {
        func list(_ d: [String: Int]) -> [String] { d.sorted { $0.key < $1.key }.map { "    \($0.key): \($0.value)" } }
        var lines = ["Window oracle: \(windows.values.reduce(0, +)) windows planned in \(planned.values.reduce(0, +)) of "
                     + "\(functions.values.reduce(0, +)) functions, \(checked.values.reduce(0, +)) run, \(compared) compared in "
                     + "\(runs) runs (original and pad), \(mismatchCount) mismatches"]
        lines.append("  functions planned, of those in the modules:")
        lines += planned.sorted { $0.key < $1.key }.map { "    \($0.key): \($0.value) of \(functions[$0.key, default: 0])" }
        lines.append("  windows planned:")
        lines += list(windows)
        lines.append("  windows run:")
        lines += list(checked)
        lines.append("  windows run, by shape:")
        lines += list(shapes)
        lines.append("  how the original left the window:")
        lines += list(exits)
        lines.append("  records checked: \(entryRecords) entries, \(returnRecords) returns, \(memoryCaptures) memory captures; "
                     + "\(fullBucketRuns) runs with the bucket full (records counted lost)")
        lines.append("  bytes the pad left different where it may: \(excusedBytes)")
        lines.append("  stops per pad run: \(runs == 0 ? 0 : padStops / runs) on average")
        lines.append("  sites the planner left as int3s, by reason:")
        lines += fallbacks.sorted { $0.value > $1.value }.prefix(12).map { "    \($0.value) × \($0.key)" }
        lines.append("  skipped:" + (skipped.isEmpty ? " none" : ""))
        for (reason, count) in skipped.sorted(by: { $0.value > $1.value }) {
            lines.append("    \(count) × \(reason), e.g.")
            lines += skippedExamples[reason, default: []].map { "      \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}

@testable import Relocator
import Glibc

/// One disagreement between an instruction and a relocated form of it.
struct Mismatch: CustomStringConvertible {
    let entry: CorpusEntry
    let plan: RelocationPlan
    let variant: StateVariant
    let original: Outcome
    let differences: [String]

    var description: String {
        var lines = ["\(entry)", "  plan: \(plan) code [\(hexBytes(plan.code))]"
                     + (plan.scratch.map { " scratch \($0.register)=0x\(String($0.value, radix: 16))" } ?? ""),
                     "  from \(variant); the original \(original)"]
        lines += differences.prefix(12).map { "  \($0)" }
        if differences.count > 12 { lines.append("  … \(differences.count - 12) more") }
        return lines.joined(separator: "\n")
    }
}

/// What the oracle checked and found.
struct OracleTally {
    /// Corpus instructions by origin ("libc.so.6 entry", …).
    var corpus: [String: Int] = [:]
    /// Instructions with at least one plan that runs.
    var instructionsChecked = 0
    /// (instruction, starting state) pairs: each is one original run.
    var states = 0
    /// Relocated runs, by plan kind.
    var runs: [RelocationPlan.Kind: Int] = [:]
    /// Steps finished by the slot's way back (`RelocationPlan.slotWayBack`), by plan kind; and those of
    /// them whose way back clears the trap flag a stepped pushf pushed.
    var waysBack: [RelocationPlan.Kind: Int] = [:]
    var waysBackClearingTrapFlag = 0
    /// Instructions for which the Relocator offered each kind.
    var plansOffered: [RelocationPlan.Kind: Int] = [:]
    var refusals: [String: Int] = [:]
    /// Original runs that faulted (the relocated forms then had to fault alike), by signal.
    var originalFaults: [Int32: Int] = [:]
    /// Emulations that threw where the original faulted: the engine must deliver SIGSEGV there.
    var emulationFaults = 0
    /// Plan kinds offered for each hand-written instruction, to hold each rule to what it promises.
    var handWritten: [(entry: CorpusEntry, kinds: [RelocationPlan.Kind])] = []
    /// RIP-relative instructions, neither emulated nor refused, that the Relocator gave no re-targeted
    /// plan although a near page was there.
    var missingRetarget: [String] = []
    var noNearPage: [String] = []
    /// Plans stepPlan or trampolinePlan make that allPlans does not offer: the oracle would not run them.
    var unchecked: [String] = []
    private(set) var mismatchCount = 0
    private(set) var mismatches: [Mismatch] = []

    static let keptMismatches = 20

    mutating func record(_ entry: CorpusEntry, plans: [RelocationPlan]) {
        corpus["\(entry.module) \(entry.origin)", default: 0] += 1
        if plans.contains(where: { $0.kind != .refuse }) { instructionsChecked += 1 }
        for kind in Set(plans.map(\.kind)) { plansOffered[kind, default: 0] += 1 }
        for plan in plans { if let refusal = plan.refusal { refusals[refusal.reason, default: 0] += 1 } }
        if entry.handWrittenGroup != nil { handWritten.append((entry, plans.map(\.kind))) }
        let kinds = Set(plans.map(\.kind))
        if entry.instruction.isRIPRelative, kinds.isDisjoint(with: [.refuse, .emulate, .retarget]) {
            missingRetarget.append(entry.description)
        }
    }

    mutating func mismatch(_ m: Mismatch) {
        mismatchCount += 1
        if mismatches.count < Self.keptMismatches { mismatches.append(m) }
    }

    var corpusSize: Int { corpus.values.reduce(0, +) }

    var summary: String {
        var lines = ["Relocator execution oracle: \(corpusSize) instructions in the corpus, \(instructionsChecked) checked "
                     + "from \(states) starting states, \(runs.values.reduce(0, +)) relocated runs, \(mismatchCount) mismatches"]
        lines.append("  corpus:")
        lines += corpus.sorted { $0.key < $1.key }.map { "    \($0.key): \($0.value)" }
        lines.append("  plan kinds exercised: \(runs.count) of \(RelocationPlan.Kind.allCases.count - 1) runnable")
        for kind in RelocationPlan.Kind.allCases {
            lines.append("    \(kind.rawValue): offered for \(plansOffered[kind] ?? 0) instructions"
                         + (kind == .refuse ? "" : ", \(runs[kind] ?? 0) runs"))
        }
        lines.append("  refusals by reason:")
        lines += refusals.sorted { $0.value > $1.value }.map { "    \($0.value) × \($0.key)" }
        lines.append("  original runs that faulted (every relocated form faulted alike): "
                     + (originalFaults.isEmpty ? "none" : originalFaults.sorted { $0.key < $1.key }
                         .map { "\(String(cString: strsignal($0.key))) \($0.value)" }.joined(separator: ", ")))
        lines.append("  emulations that threw where the original faulted: \(emulationFaults)")
        lines.append("  steps finished by the slot's way back: "
                     + waysBack.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
                     + "; \(waysBackClearingTrapFlag) clearing a pushed trap flag")
        return lines.joined(separator: "\n")
    }
}

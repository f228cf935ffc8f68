import Foundation
import Symbols

/// One run of a window: the state it starts from, the probes its pad is built with, the ring it finds.
struct WindowRun {
    let variant: StateVariant
    let probes: ProbeSet
    var ring: ChildRing.State = .empty
}

/// Which functions' windows the suite runs, and from which states. With NSTRACE_WINDOW_ORACLE=full in
/// the environment, every function of libc and of the fixtures: about 8,900 windows, 70 s on this VM,
/// most of it planning all of libc. Without it, every fixture and hand-written function and one libc
/// function in `share`, chosen by a hash of its name (the same functions on every run and under any
/// address layout): about 2,900 windows, 20 s. The plans are InlineSites' own, the engine's.
enum WindowSample {
    static let environmentVariable = "NSTRACE_WINDOW_ORACLE"

    static var isFull: Bool { ProcessInfo.processInfo.environment[environmentVariable] == "full" }

    /// One libc function in this many is planned and run in the suite's (not full) run.
    static let share: UInt64 = 4

    static func plans(_ function: Function, _ origin: WindowCase.Origin) -> Bool {
        isFull || origin != .libc || fnv1a(function.name) % share == 0
    }

    /// FNV-1a: Swift's own hash is seeded per process.
    static func fnv1a(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// The runs of a window. A corpus window runs once from the standard state, and again with the
    /// flags inverted when a branch in it depends on them; the probe set turns with the window's index,
    /// so that every kind of capture is checked across the corpus, and one window in eight finds its
    /// bucket full. A hand-written window with a conditional branch runs from every combination of the
    /// condition flags (and for loop and jrcxz every interesting counter too); any other from both flag
    /// states with each probe set; one run in four finds its bucket full.
    static func runs(for c: WindowCase, index: Int) -> [WindowRun] {
        let sets = ProbeSet.all
        let inverted = StateVariant(eflags: 0xe46, rcx: nil)
        var runs: [WindowRun]
        if c.origin != .handWritten {
            runs = [WindowRun(variant: .standard, probes: sets[index % sets.count])]
            if c.branchesConditionally { runs.append(WindowRun(variant: inverted, probes: sets[(index + 1) % sets.count])) }
            if index % 8 == 5 { runs[0].ring = .full(lossless: index % 16 == 5) }
            return runs
        }
        if c.branchesConditionally {
            var variants = StateVariant.allConditions
            if c.countsInRCX {
                variants += StateVariant.allConditions.flatMap { flags in
                    StateVariant.counters.map { StateVariant(eflags: flags.eflags, rcx: $0) }
                }
            }
            runs = variants.enumerated().map { WindowRun(variant: $1, probes: sets[$0 % sets.count]) }
        } else {
            runs = [StateVariant.standard, inverted].flatMap { variant in sets.map { WindowRun(variant: variant, probes: $0) } }
                + [WindowRun(variant: .standard, probes: sets[0]), WindowRun(variant: .standard, probes: sets[1])]
        }
        for i in runs.indices where i % 4 == 3 { runs[i].ring = .full(lossless: i % 8 == 7) }
        return runs
    }
}

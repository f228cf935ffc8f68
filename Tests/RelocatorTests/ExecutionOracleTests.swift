import Glibc
import OracleSupport
@testable import Relocator
import Testing

/// The Relocator tested by execution: every instruction of the corpus runs at its own address in a
/// real child process and in every relocated form the Relocator plans for it, from the same registers
/// and memory; registers, flags, vector state and touched memory must come out the same.
@Suite struct ExecutionOracleTests {
    @Test func everyRelocatedFormOfLibcFixtureAndHandWrittenInstructionsMatchesTheOriginal() throws {
        // Tracer and child on one CPU: a single-step round trip is several times cheaper than across
        // CPUs, and CPUID and RDPID answer the same in both runs.
        let cpu = oracle_current_cpu()
        var savedAffinity = [UInt8](repeating: 0, count: Int(ORACLE_AFFINITY_SIZE))
        try #require(oracle_pin_calling_thread(cpu, &savedAffinity) == 0, "pin the test thread to CPU \(cpu)")
        defer { oracle_restore_affinity(savedAffinity) }

        let child = try OracleChild(cpu: cpu)
        defer { child.tracee.kill() }
        child.expectPagesWhereTheyBelong()
        let tracee = child.tracee, layout = child.layout

        let extendedLayout = ExtendedStateLayout()
        let states = StartingStates(layout: layout, base: try tracee.registers(),
                                    extended: extendedLayout.filled(try tracee.extendedState()))
        let corpus = try OracleCorpus(modules: child.modules, image: child.image, tracee: tracee, decoder: try Decoder())

        // The oracle's own footing: the vector state it sets is the state the child gets, and (after)
        // every run's writes to the data and stack buffers fell inside the memory it compared and
        // restored.
        try tracee.setExtendedState(states.extended)
        #expect(extendedLayout.differences(states.extended, try tracee.extendedState()).isEmpty)
        let buffers = [layout.data, layout.stack]
        let before = try buffers.map { try #require(tracee.read($0.lowerBound, count: Int($0.count))) }

        let oracle = try Oracle(tracee: tracee, layout: layout, states: states, extendedLayout: extendedLayout)
        for entry in corpus.entries {
            try oracle.check(entry, variants: Self.variants(for: entry))
        }
        let tally = oracle.tally
        print(tally.summary)
        print(corpus.summary)

        for (range, bytes) in zip(buffers, before) {
            let after = try #require(tracee.read(range.lowerBound, count: Int(range.count)))
            let dirty = stride(from: 0, to: bytes.count, by: 4096).filter {
                !sameBytes(bytes[$0..<$0 + 4096], after[$0..<$0 + 4096])
            }.map { "0x" + String(range.lowerBound + UInt64($0), radix: 16) }
            #expect(dirty.isEmpty, "pages written outside the memory the oracle compared: \(dirty.prefix(8))")
        }
        Self.expectNotVacuous(tally, corpus, child)
        Self.expectHandWrittenRules(tally)
        #expect(tally.mismatchCount == 0, """
            \(tally.mismatchCount) mismatches; the first \(tally.mismatches.count):
            \(tally.mismatches.map(\.description).joined(separator: "\n"))
            """)
    }

    /// A large corpus from every source, every kind of plan run, every RIP-relative instruction
    /// re-targeted, and nothing lost from the hand-written cases.
    static func expectNotVacuous(_ tally: OracleTally, _ corpus: OracleCorpus, _ child: OracleChild) {
        #expect(tally.corpusSize > 10_000)
        #expect(tally.corpus["libc.so.6 entry", default: 0] > 2_000)
        #expect(tally.corpus["libc.so.6 return site", default: 0] > 5_000)
        #expect(tally.corpus["\(child.fixture.name) return site", default: 0] > 0)
        for library in child.fixtureLibraries { #expect(tally.corpus["\(library.name) entry", default: 0] > 0) }
        for kind in RelocationPlan.Kind.allCases where kind != .refuse {
            #expect(tally.runs[kind, default: 0] > 0, "no \(kind.rawValue) plan was run")
        }
        // The way back a detach writes into an abandoned step's slot, run for every kind of step plan.
        for kind in [RelocationPlan.Kind.copy, .retarget, .scratchRegister] {
            #expect(tally.waysBack[kind, default: 0] > 0, "no \(kind.rawValue) step was finished by its slot's way back")
        }
        #expect(tally.waysBackClearingTrapFlag > 0, "no way back cleared a stepped pushf's trap flag")
        #expect(tally.noNearPage.isEmpty, "instructions with no near page: \(tally.noNearPage.prefix(5))")
        #expect(tally.unchecked.isEmpty, "engine plans the oracle did not run: \(tally.unchecked.prefix(5))")
        #expect(tally.missingRetarget.isEmpty,
                "RIP-relative, near page in reach, no retarget plan: \(tally.missingRetarget.prefix(5))")
        #expect(corpus.brokenCases.isEmpty, "\(corpus.brokenCases)")
        // The Decoder gives nothing for these, so the Relocator never plans them and the engine refuses
        // such a site (a Capstone that decodes one lands it in brokenCases above).
        #expect(corpus.undecodableCases.count == 3, "\(corpus.undecodableCases)")
    }

    // MARK: What each hand-written group promises

    /// Each group of relocator_cases.c states which plans its instructions get; every group is there.
    static func expectHandWrittenRules(_ tally: OracleTally) {
        let byGroup = Dictionary(grouping: tally.handWritten, by: { $0.entry.handWrittenGroup ?? "" })
        #expect(Set(byGroup.keys) == ["riprel", "flow", "plain", "syscall", "refuse"])
        for (group, cases) in byGroup {
            for (entry, kinds) in cases {
                let offered = Set(kinds)
                switch group {
                case "riprel":
                    #expect(offered == [.retarget, .scratchRegister, .trampoline], "\(entry): \(kinds)")
                case "flow":
                    #expect(offered.contains(.emulate) && !offered.contains(.refuse), "\(entry): \(kinds)")
                case "plain":
                    #expect(offered == [.copy, .trampoline], "\(entry): \(kinds)")
                case "syscall":
                    #expect(offered == [.refuse, .trampoline], "\(entry): \(kinds)")
                case "refuse":
                    #expect(offered == [.refuse], "\(entry): \(kinds)")
                default:
                    Issue.record("hand-written case in no known group: \(entry)")
                }
            }
        }
    }

    // MARK: Starting states

    /// One state for the corpus; for the hand-written cases, two (flags and the direction flag
    /// inverted); for hand-written control flow, all 32 combinations of the condition flags, and for
    /// loop/jrcxz/jecxz each of those with every interesting counter too, plus registers holding
    /// non-canonical addresses (a branch there faults). An instruction with an address-size prefix
    /// runs each of those again with garbage in the registers' upper halves.
    static func variants(for entry: CorpusEntry) -> [StateVariant] {
        guard let group = entry.handWrittenGroup else { return [.standard] }
        var variants = [StateVariant.standard, StateVariant(eflags: 0xe46, rcx: nil)]
        if group == "flow" {
            let mnemonic = entry.instruction.mnemonic
            let counts = mnemonic.hasPrefix("loop") || mnemonic.hasSuffix("cxz")
            variants = StateVariant.allConditions.flatMap { flags in
                [flags] + (counts ? StateVariant.counters.map { StateVariant(eflags: flags.eflags, rcx: $0) } : [])
            }
            variants.append(StateVariant(eflags: StateVariant.standard.eflags, rcx: nil, upperBits: 0xdead_0000_0000_0000))
        }
        guard Oracle.legacyPrefixes(entry.instruction).contains(0x67) else { return variants }
        return variants + variants.map { var v = $0; v.upperBits = 0x5a5a_0000_0000; return v }
    }
}

import Foundation
import Glibc
import OracleSupport
@testable import Relocator
import Testing

/// The inline strategy's windows tested by execution: every window the engine's planner makes for
/// libc's functions and the C fixtures' (built with and without CET), and hand-written windows for
/// each relocation rule, run at their own addresses and through their pads (with real probes writing
/// into a real ring) from the same states in a real child; state, memory and records must agree.
///
/// The suite runs the windows of one libc function in four, chosen by name (WindowSample); set
/// NSTRACE_WINDOW_ORACLE=full to run every one of them.
@Suite struct WindowOracleTests {
    @Test func everyWindowOfLibcTheFixturesAndTheHandWrittenRulesRunsInItsPadAsInPlace() throws {
        // Tracer and child on one CPU: a stop costs several times less than across CPUs, and CPUID
        // answers the same in both runs.
        let cpu = oracle_current_cpu()
        var savedAffinity = [UInt8](repeating: 0, count: Int(ORACLE_AFFINITY_SIZE))
        try #require(oracle_pin_calling_thread(cpu, &savedAffinity) == 0, "pin the test thread to CPU \(cpu)")
        defer { oracle_restore_affinity(savedAffinity) }
        let full = WindowSample.isFull
        let decoder = try Decoder()

        var tally = WindowTally()
        var ruleViolations: [String] = []
        for kind in [WindowOracleChild.Kind.plain, .cet] {
            let child = try WindowOracleChild(kind, cpu: cpu, deadline: full ? 3600 : 600)
            defer { child.tracee.kill() }
            let corpus = WindowCorpus(modules: child.modules, image: child.image, decoder: decoder,
                                      memory: { child.tracee.read($0, count: $1) }, choosing: WindowSample.plans)
            tally.count(corpus)
            if kind == .plain {
                ruleViolations += WindowRules.violations(corpus.plans.filter { $0.function.name.hasPrefix("window_") }
                    .map { ($0.function, $0.plan) })
            }
            tally = try Self.run(corpus, in: child, decoder: decoder, tally: tally)
        }
        print(tally.summary)

        #expect(ruleViolations.isEmpty, "hand-written windows the planner does not make:\n\(ruleViolations.joined(separator: "\n"))")
        Self.expectNotVacuous(tally, full: full)
        #expect(tally.mismatchCount == 0, """
            \(tally.mismatchCount) mismatches; the first \(tally.mismatches.count):
            \(tally.mismatches.map(\.description).joined(separator: "\n"))
            """)
    }

    /// Enough windows of every origin and shape compared, every kind of exit seen, records checked;
    /// nothing skipped for a reason that would hide a fault of the pads. (The sample has about 2,900
    /// windows, 2,400 of libc's, and 4,400 runs; the full corpus about 8,500, 7,800 and 12,000.)
    static func expectNotVacuous(_ tally: WindowTally, full: Bool) {
        #expect(tally.windows["libc.so.6", default: 0] > (full ? 6_000 : 1_500))
        #expect(tally.checked["libc.so.6", default: 0] == tally.windows["libc.so.6", default: 0])
        #expect(tally.checked["fixtures", default: 0] > 150)
        #expect(tally.checked["fixtures -fcf-protection=full", default: 0] > 150)
        #expect(tally.checked["hand-written", default: 0] >= WindowRules.byFunction.count)
        #expect(tally.compared > (full ? 7_000 : 2_000))
        #expect(tally.runs > (full ? 9_000 : 3_000))
        #expect(tally.fullBucketRuns > (full ? 1_000 : 300))
        for shape in ["records an entry", "records a return", "records an entry and a return", "entry SP above the window's",
                      "reached by a short jump", "patched into padding", "ends in a call", "ends in a jump",
                      "branches conditionally", "loop or jrcxz", "RIP-relative", "several instructions"] {
            #expect(tally.shapes[shape, default: 0] > 0, "no window that \(shape)")
        }
        for exit in ["fell through to the window's end", "returned", "called", "jumped", "branched out",
                     "branched back to the window's start", "faulted with Segmentation fault",
                     "faulted with Floating point exception"] {
            #expect(tally.exits[exit, default: 0] > 0, "no original that \(exit)")
        }
        #expect(tally.entryRecords > 500 && tally.returnRecords > 500 && tally.memoryCaptures > 300)
        let hiding = tally.skipped.keys.filter { $0.hasPrefix("InlinePad.build") || $0.contains("patch") || $0.contains("differ") }
        #expect(hiding.isEmpty, "windows skipped for reasons of the pads' own: \(hiding)")
    }

    /// Runs every window of the corpus in the child, and checks that every byte the runs wrote the
    /// oracle put back: the memory it compared was all they touched.
    static func run(_ corpus: WindowCorpus, in child: WindowOracleChild, decoder: Decoder, tally: WindowTally) throws -> WindowTally {
        let tracee = child.tracee
        let base = try tracee.registers()
        // The pads read the thread's id from its TCB at the offset this process's glibc keeps it at.
        let tcbTidOffset = try #require(Int32(exactly: oracle_tcb_tid_offset()), "the tid in this thread's TCB")
        let tid = try #require(tracee.read(base.fs_base &+ UInt64(tcbTidOffset), count: 4), "the child's TCB")
        try #require(tid == withUnsafeBytes(of: tracee.pid.littleEndian) { Array($0) }, "the child's tid in its TCB")

        let extendedLayout = ExtendedStateLayout()
        let states = StartingStates(layout: child.layout, base: base, extended: extendedLayout.filled(try tracee.extendedState()))
        let before = try writableMemory(tracee, excluding: child.ring.range)
        let oracle = try WindowOracle(tracee: tracee, layout: child.layout, states: states, extendedLayout: extendedLayout,
                                      ring: child.ring, tcbTidOffset: tcbTidOffset, decoder: decoder)
        oracle.tally = tally
        for (index, c) in corpus.cases.enumerated() { try oracle.check(c, runs: WindowSample.runs(for: c, index: index)) }
        let after = try writableMemory(tracee, excluding: child.ring.range)
        var dirty: [String] = []
        for (start, bytes) in before {
            guard let now = after[start], now.count == bytes.count else {
                dirty.append("the mapping at 0x\(String(start, radix: 16)) changed")
                continue
            }
            for page in stride(from: 0, to: bytes.count, by: 4096) where !sameBytes(bytes[page..<page + 4096], now[page..<page + 4096]) {
                dirty.append("0x" + String(start + UInt64(page), radix: 16))
            }
        }
        #expect(dirty.isEmpty, "\(child.kind) child: pages written outside the memory the oracle compared: \(dirty.prefix(8))")
        return oracle.tally
    }

    /// Every writable page of the child but the ring's, by mapping.
    static func writableMemory(_ tracee: OracleTracee, excluding ring: Range<UInt64>) throws -> [UInt64: [UInt8]] {
        var out: [UInt64: [UInt8]] = [:]
        for m in try tracee.mappings() where m.writable && m.readable && !ring.overlaps(m.start..<m.end) {
            out[m.start] = try tracee.read(m.start, count: Int(m.end - m.start)).orThrow("read \(m.path) at 0x\(String(m.start, radix: 16))", tracee)
        }
        return out
    }
}

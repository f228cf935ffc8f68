import CCapstone
import Foundation
import Glibc
@testable import Relocator

/// The execution oracle for inline windows. Each window runs twice in the child from the same
/// registers, flags, vector state and memory: (a) its original instructions at their own addresses,
/// single-stepped until control leaves the window (past its end, or wherever its branch, `ret`, `jmp`
/// or call sends it); (b) its pad, built by `InlinePad.build` at the module's near page with real
/// probes recording into a real ring in the child, entered through the window's own patch (the `jmp`
/// the engine writes at its start, or its short jump to the padding), then let run to a hardware
/// breakpoint where the original went. Registers, flags, vector state and the memory the window
/// touched must come out the same (a fault: the same signal at the same instruction, in the same
/// state), and the ring must hold exactly the records the probes should write, with the values the
/// original had where each probe ran.
///
/// An entry window starts after the function's first instruction, which the engine leaves in place:
/// both runs start at the function's entry and step that instruction first, so the stack pointer the
/// entry probe reports is checked against the real entry's, not against the planner's arithmetic.
///
/// The memory compared is the whole stack buffer and every page each original instruction may touch;
/// the pad may leave different only (1) below each probe's stack pointer, past the 128-byte red zone
/// the probe skips, the probe's own frame (the flags, the registers it saves, and with a memory capture
/// the record, position and iovecs it pushes): memory below the red zone belongs to no one, a signal
/// handler overwrites it at any time; and (2) for a window ending in a call, the word below the
/// pushed return address, where the emulated call keeps RAX for a moment: the callee's stack, which
/// holds nothing yet. Even there a byte the original itself wrote must come out the same. The red
/// zone itself, where leaf code keeps its locals, is compared like everything else. The ring is
/// compared record by record instead, and the oracle's code pages (where the pad sits) not at all.
final class WindowOracle {
    let tracee: OracleTracee
    let layout: OracleLayout
    let states: StartingStates
    let ring: ChildRing
    let tcbTidOffset: Int32
    private let extendedLayout: ExtendedStateLayout
    private let decoder: Decoder
    private let readable: [Mapping]
    var tally = WindowTally()

    /// Steps the original may take in a window: a few instructions, a repeated string instruction's
    /// three iterations.
    static let originalStepLimit = 256
    /// Seconds a pad may run (it needs microseconds): one that runs on (a loop, or a wrong jump into
    /// the program) is stopped and reported.
    static let padDeadline: TimeInterval = 5

    init(tracee: OracleTracee, layout: OracleLayout, states: StartingStates, extendedLayout: ExtendedStateLayout,
         ring: ChildRing, tcbTidOffset: Int32, decoder: Decoder) throws {
        self.tracee = tracee
        self.layout = layout
        self.states = states
        self.extendedLayout = extendedLayout
        self.ring = ring
        self.tcbTidOffset = tcbTidOffset
        self.decoder = decoder
        readable = try tracee.mappings().filter(\.readable)
    }

    /// Runs one window from each starting state, with each set of probes and ring state given.
    func check(_ c: WindowCase, runs: [WindowRun]) throws {
        tally.checked[c.origin.description, default: 0] += 1
        for shape in c.shapes { tally.shapes[shape, default: 0] += 1 }
        guard let near = layout.nearPage(for: c.window.start) else { return skip("no near page for its module", c) }
        let code = c.window.instructions.flatMap(\.bytes)
        guard let inMemory = tracee.read(c.window.start, count: code.count), sameBytes(inMemory, code) else {
            return skip("its bytes in the child differ from the module file's", c)
        }
        var comparedAny = false
        for run in runs {
            do {
                if try self.run(c, run, near: near) { comparedAny = true }
            } catch {
                throw RunFailure(window: c, run: run, error: error)
            }
        }
        if comparedAny { tally.compared += 1 }
    }

    /// An error (the child gone, a ptrace request refused) in the middle of a window's run: which one.
    struct RunFailure: Error, CustomStringConvertible {
        let window: WindowCase
        let run: WindowRun
        let error: any Error

        var description: String { "\(error), running \(window) from \(run.variant), probes: \(run.probes), \(run.ring)" }
    }

    private func skip(_ reason: String, _ c: WindowCase) {
        tally.skip(reason, c)
    }

    // MARK: One run of each

    /// What the original run saw.
    private struct OriginalRun {
        var result: RunResult
        /// Where control went when it left the window; nil when it faulted inside.
        var exit: UInt64?
        /// The state where each probe runs, when the original got there.
        var entryPoint: ProbePoint?
        var returnPoint: ProbePoint?
        /// How it left, for the tally.
        var how: String
    }

    private enum OriginalOutcome {
        case ran(OriginalRun)
        /// Not comparable from this state, and why.
        case skipped(String)
        /// Something the planner promises did not hold.
        case violation(String)
    }

    /// One original run and one pad run from the same state; false when the pair could not be compared.
    private func run(_ c: WindowCase, _ run: WindowRun, near: UInt64) throws -> Bool {
        let window = c.window
        let (variant, probes) = (run.variant, run.probes)
        let entryProbe = window.recordsEntry ? probes.entry : nil
        let returnProbe = window.probesBeforeLast ? probes.exit : nil
        let environment = probes.environment(ring: ring, tcbTidOffset: tcbTidOffset)
        let pad: InlinePad
        switch InlinePad.build(window: window, entryProbe: entryProbe, returnProbe: returnProbe,
                               environment: environment, at: near) {
        case .success(let built): pad = built
        case .failure(let refusal):
            skip("InlinePad.build refused it: \(WindowCorpus.generic(refusal.reason))", c)
            return false
        }
        guard pad.code.count + 16 <= Int(TouchedMemory.page) else {
            skip("its pad is larger than the near page", c)
            return false
        }
        guard let patches = pad.patches(for: window) else {
            skip("its patch cannot reach the pad", c)
            return false
        }

        // Registers into the data buffer, RSP mid-stack; an entry window from the function's entry.
        let prelude = window.recordsEntry ? try firstInstruction(of: c) : nil
        var start = states.state(for: window.instructions[0], atFunctionEntry: prelude != nil, variant: variant)
        start.registers.rip = prelude?.address ?? window.start
        if variant.rcx == nil, window.instructions.contains(where: Oracle.isRepeatedString) { start.registers.rcx = 3 }
        try tracee.setRegisters(start.registers)
        start.registers = try tracee.registers()

        var memory = WindowMemory(readable: readable,
                                  excluding: layout.codePages.map { $0..<$0 + TouchedMemory.page } + [ring.range])
        try memory.add(layout.stack, tracee)
        let original: OriginalRun
        switch try runOriginal(c, start, prelude: prelude, entryProbe: entryProbe, returnProbe: returnProbe, memory: &memory) {
        case .ran(let run):
            original = run
        case .skipped(let reason):
            skip(reason, c)
            return false
        case .violation(let what):
            tally.runs += 1
            tally.mismatch(WindowMismatch(window: c, run: run, original: .completed, differences: [what]))
            return true
        }
        let touched = memory.touched()
        try touched.restore(after: original.result.memory, tracee)

        guard let padLayout = PadLayout(pad, window: window, entryProbe: entryProbe, returnProbe: returnProbe,
                                        environment: environment)
        else {
            record(c, run, original, ["the pad's bytes are not what InlinePad.build's writers give in its order"])
            return true
        }
        var (relocated, stops) = try runPad(c, pad, padLayout, patches, start, prelude: prelude, original: original,
                                            ring: run.ring, memory: touched)
        try touched.restore(after: relocated.memory, tracee)
        tally.runs += 1
        if run.ring != .empty { tally.fullBucketRuns += 1 }
        tally.padStops += stops
        tally.exits[original.how, default: 0] += 1

        var dead: [Range<UInt64>] = []
        if let entryProbe, let point = original.entryPoint { dead.append(Self.probeFrame(entryProbe, probes, at: point.registers.rsp)) }
        if let returnProbe, let point = original.returnPoint { dead.append(Self.probeFrame(returnProbe, probes, at: point.registers.rsp)) }
        if c.endsInCall, original.exit != nil {
            let rsp = original.result.registers.rsp
            dead.append(rsp &- 8..<rsp)
        }
        let (memoryAfter, excused) = touched.excusing(dead, relocated: relocated.memory, original: original.result.memory)
        relocated.memory = memoryAfter
        tally.excusedBytes += excused

        let ignoring = window.instructions.reduce(into: [GPR: String]()) { all, insn in
            all.merge(Oracle.unreproducibleRegisters(insn)) { a, _ in a }
        }
        var differences = RunComparison(extendedLayout: extendedLayout, memory: touched, ignoring: ignoring)
            .differences(original: original.result, relocated: relocated)
        var expected: [(probe: Probe, point: ProbePoint)] = []
        if let entryProbe, let point = original.entryPoint { expected.append((entryProbe, point)) }
        if let returnProbe, let point = original.returnPoint { expected.append((returnProbe, point)) }
        differences += WindowRecords.differences(try ring.contents(tracee), expected: expected, tid: tracee.pid,
                                                 bucket: ring.bucket(of: tracee.pid), state: run.ring)
        tally.entryRecords += original.entryPoint != nil && entryProbe != nil ? 1 : 0
        tally.returnRecords += original.returnPoint != nil && returnProbe != nil ? 1 : 0
        tally.memoryCaptures += expected.reduce(0) { n, e in
            n + e.probe.captures.filter { if case .memory = $0 { return true }; return false }.count
        }
        if !differences.isEmpty { record(c, run, original, differences) }
        return true
    }

    private func record(_ c: WindowCase, _ run: WindowRun, _ original: OriginalRun, _ differences: [String]) {
        tally.mismatch(WindowMismatch(window: c, run: run, original: original.result.outcome, differences: differences))
    }

    /// The function's first instruction, which an entry window follows.
    private func firstInstruction(of c: WindowCase) throws -> Instruction {
        let bytes = try tracee.read(c.function.address, count: 15).orThrow("read \(c.function.name)'s first instruction", tracee)
        return try decoder.decode(bytes, at: c.function.address).orThrow("decode \(c.function.name)'s first instruction", tracee)
    }

    // MARK: The original, at its own addresses

    private func runOriginal(_ c: WindowCase, _ start: MachineState, prelude: Instruction?, entryProbe: Probe?,
                             returnProbe: Probe?, memory: inout WindowMemory) throws -> OriginalOutcome {
        let window = c.window
        try load(start)
        var regs = start.registers
        if let prelude {
            try memory.add(prelude, regs, tracee)
            let stop = try tracee.singleStep()
            regs = try tracee.registers()
            guard stop == .stepped, regs.rip == window.start else {
                // Put back what the first instruction may have written before giving up.
                let touched = memory.touched()
                try touched.restore(after: try touched.current(tracee), tracee)
                if stop != .stepped { return .skipped("the function's first instruction (left in place) faulted from the oracle's state") }
                return .violation("the function's first instruction \(prelude) leads to 0x\(String(regs.rip, radix: 16)), not to the window")
            }
        }
        let entryPoint = try entryProbe.map {
            ProbePoint($0, registers: regs, extended: try tracee.extendedState(), reportedStackPointer: start.registers.rsp,
                       tracee: tracee)
        }
        var returnPoint: ProbePoint?
        var index = 0, steps = 0
        var outcome = Outcome.completed
        var exit: UInt64?
        while true {
            let insn = window.instructions[index]
            try memory.add(insn, regs, tracee)
            if index == window.instructions.count - 1, let returnProbe {
                returnPoint = ProbePoint(returnProbe, registers: regs, extended: try tracee.extendedState(),
                                         reportedStackPointer: regs.rsp, tracee: tracee)
            }
            let stop = try tracee.singleStep()
            steps += 1
            regs = try tracee.registers()
            if case .signal(let signal, let code, let address) = stop {
                outcome = .fault(signal: signal, code: code, address: address)
                break
            }
            // Natively, pushed flags carry no trap flag; single-stepped, they do (the pad runs free).
            if Oracle.pushesFlags(insn) {
                let stack = TraceeEmulationMemory(tracee: tracee)
                try stack.writeWord(try stack.readWord(at: regs.rsp) & ~0x100, at: regs.rsp)
            }
            if steps == Self.originalStepLimit {
                let touched = memory.touched()
                try touched.restore(after: try touched.current(tracee), tracee)
                return .skipped("the original did not leave the window in \(Self.originalStepLimit) steps")
            }
            if regs.rip == insn.address, Oracle.isRepeatedString(insn) { continue }
            if index + 1 < window.instructions.count, regs.rip == window.instructions[index + 1].address {
                index += 1
                continue
            }
            exit = regs.rip
            break
        }
        let touched = memory.touched()
        let result = RunResult(outcome: outcome, registers: regs, extended: try tracee.extendedState(),
                               memory: try touched.current(tracee))
        var how: String
        let last = window.instructions[index]
        if case .fault(let signal, _, _) = outcome {
            how = "faulted with \(String(cString: strsignal(signal)))"
        } else if let exit, window.instructions.dropFirst().contains(where: { $0.address == exit }) {
            try touched.restore(after: result.memory, tracee)
            return .violation("\(last) branched to 0x\(String(exit, radix: 16)), inside its own window (the planner promises nothing does)")
        } else if exit == window.end, index == window.instructions.count - 1, !window.endsInTransfer {
            how = "fell through to the window's end"
        } else if last.id == X86_INS_RET.rawValue {
            how = "returned"
        } else if InlinePlanner.isCall(last) {
            how = "called"
        } else if last.id == X86_INS_JMP.rawValue {
            how = window.tailCallTarget == nil ? "jumped" : "tail-called"
        } else {
            how = exit == window.start ? "branched back to the window's start" : "branched out"
        }
        return .ran(OriginalRun(result: result, exit: exit, entryPoint: entryPoint, returnPoint: returnPoint, how: how))
    }

    // MARK: The pad, entered through the window's patch

    private func runPad(_ c: WindowCase, _ pad: InlinePad, _ padLayout: PadLayout, _ patches: [(address: UInt64, bytes: [UInt8])],
                        _ start: MachineState, prelude: Instruction?, original: OriginalRun, ring state: ChildRing.State,
                        memory: TouchedMemory) throws -> (RunResult, stops: Int) {
        let window = c.window
        // int3s after the pad: code that runs on past its end stops at once.
        try tracee.write(pad.code + [UInt8](repeating: 0xcc, count: 16), at: pad.address)
        let saved = try patches.map { patch in
            (patch.address, try tracee.read(patch.address, count: patch.bytes.count).orThrow("read a patch site", tracee))
        }
        for patch in patches { try tracee.write(patch.bytes, at: patch.address) }
        try ring.reset(tracee, to: state, bucket: ring.bucket(of: tracee.pid))
        try load(start)
        var regs = start.registers
        var outcome = Outcome.completed
        var stops = 0
        if prelude != nil {
            let stop = try tracee.singleStep()
            regs = try tracee.registers()
            if stop != .stepped || regs.rip != window.start {
                outcome = .lost("the function's first instruction did not lead to the window this time")
            }
        }
        // Through the patch into the pad, a step at a time: the jmp at the window's start, or its short
        // jump to the slot in the padding and the slot's jmp.
        let route = (window.shortJumpSlot.map { [$0] } ?? []) + [pad.entry]
        var hops: [UInt64] = []
        while outcome == .completed, hops.count < route.count {
            let stop = try tracee.singleStep()
            stops += 1
            regs = try tracee.registers()
            hops.append(regs.rip)
            if case .signal(let signal, let code, let address) = stop { outcome = .fault(signal: signal, code: code, address: address) }
        }
        if outcome == .completed, hops != route {
            outcome = .lost("the window's patch goes to \(hops.map { "0x" + String($0, radix: 16) }), not to the pad's entry "
                            + "0x\(String(pad.entry, radix: 16))")
        }
        // Then on through the pad to where the original went (or to its fault).
        if outcome == .completed {
            let stop = try tracee.continueUntil(original.exit, deadline: Self.padDeadline)
            stops += 1
            regs = try tracee.registers()
            switch stop {
            case .reached:
                break
            case .timedOut:
                outcome = .lost("still running after \(Self.padDeadline) s, at 0x\(String(regs.rip, radix: 16))")
            case .signal(let signal, let code, var address):
                // A fault in a relocated copy is the original instruction's, as the engine reports it.
                if let i = padLayout.instruction(at: regs.rip) {
                    if padLayout.copies[i].contains(address) { address = window.instructions[i].address }
                    regs.rip = window.instructions[i].address
                }
                outcome = .fault(signal: signal, code: code, address: address)
            }
        }
        for (address, bytes) in saved { try tracee.write(bytes, at: address) }
        let result = RunResult(outcome: outcome, registers: regs, extended: try tracee.extendedState(),
                               memory: try memory.current(tracee))
        return (result, stops)
    }

    // MARK: Pieces

    private func load(_ state: MachineState) throws {
        try tracee.setRegisters(state.registers)
        try tracee.setExtendedState(state.extended)
    }

    /// The bytes below a probe's red zone its code writes: the flags, the registers it saves (those it
    /// uses, and those a system call clobbers or takes when it makes one), and for a memory capture
    /// the record and position it pushes and the iovecs it builds (ProbeWriter).
    static func probeFrame(_ probe: Probe, _ set: ProbeSet, at rsp: UInt64) -> Range<UInt64> {
        let copies = probe.captures.contains { if case .memory = $0 { return true }; return false }
        let saved = 5 + (copies || set.asksKernelForThread ? 4 : 0)
        let bytes = UInt64(8 + 8 * saved + (copies ? 16 + 48 : 0))
        let redZone: UInt64 = 128
        return (rsp &- redZone &- bytes)..<(rsp &- redZone)
    }
}

@testable import Relocator
import Glibc

/// The execution oracle: runs an instruction at its own address in the child and every relocated form
/// the Relocator plans for it, each from the same registers and memory, the way the engine runs them,
/// and compares what each leaves behind.
final class Oracle {
    let tracee: OracleTracee
    let layout: OracleLayout
    let states: StartingStates
    let extendedLayout: ExtendedStateLayout
    private let readable: [Mapping]
    private(set) var tally = OracleTally()

    /// Steps a repeated string instruction may take (three iterations, the oracle's RCX, plus slack);
    /// anything else completes in one step, or two in a trampoline.
    private static let stepLimit = 16

    init(tracee: OracleTracee, layout: OracleLayout, states: StartingStates, extendedLayout: ExtendedStateLayout) throws {
        self.tracee = tracee
        self.layout = layout
        self.states = states
        self.extendedLayout = extendedLayout
        readable = try tracee.mappings().filter(\.readable)
    }

    /// Checks one corpus instruction from each starting variant.
    func check(_ entry: CorpusEntry, variants: [StateVariant]) throws {
        let insn = entry.instruction
        guard let near = layout.nearPage(for: insn.address) else {
            tally.record(entry, plans: [])
            tally.noNearPage.append(entry.description)
            return
        }
        let plans = Relocator.allPlans(insn, near: near, far: layout.far)
        tally.record(entry, plans: plans)
        // What the engine asks for, under either strategy, is among what the oracle runs.
        for plan in [Relocator.stepPlan(insn, slot: layout.far), Relocator.trampolinePlan(insn, at: near)]
        where !plans.contains(plan) {
            tally.unchecked.append("\(entry): \(plan)")
        }
        let runnable = plans.filter { $0.kind != .refuse }
        guard !runnable.isEmpty else { return }
        for variant in variants {
            var state = states.state(for: insn, atFunctionEntry: entry.isFunctionEntry, variant: variant)
            // As the kernel takes them: PTRACE_SETREGS keeps the flags ptrace may not set (ID, bit 21)
            // from the thread's own, so an emulation must start from what GETREGS gives back.
            try tracee.setRegisters(state.registers)
            state.registers = try tracee.registers()
            let memory = try TouchedMemory(insn, state.registers, readable: readable, excluding: layout.codePages,
                                           tracee: tracee)
            let comparison = RunComparison(extendedLayout: extendedLayout, memory: memory,
                                           ignoring: Oracle.unreproducibleRegisters(insn))
            let original = try runOriginal(insn, state, memory)
            tally.states += 1
            if case .fault(let signal, _, _) = original.outcome { tally.originalFaults[signal, default: 0] += 1 }
            var observed = original.memory
            for plan in runnable {
                try memory.restore(after: observed, tracee)
                let relocated = try run(plan, state, memory)
                observed = relocated.memory
                tally.runs[plan.kind, default: 0] += 1
                let differences = comparison.differences(original: original, relocated: relocated)
                if case .emulationFailed = relocated.outcome, differences.isEmpty { tally.emulationFaults += 1 }
                if !differences.isEmpty {
                    tally.mismatch(Mismatch(entry: entry, plan: plan, variant: variant, original: original.outcome,
                                            differences: differences))
                }
                // (Not a popf: the word it pops from the oracle's stack may carry TF — a stepped pushf
                // left it — and run natively that traps, as the original would after its own next
                // instruction; the kernel then also keeps TF for the runs after.)
                guard [.copy, .retarget, .scratchRegister].contains(plan.kind), !Oracle.popsFlags(insn) else { continue }
                // The same step finished by the slot's way back instead of the tracer's fix-up.
                try memory.restore(after: observed, tracee)
                let wayBack = try runWayBack(plan, state, memory)
                observed = wayBack.memory
                tally.waysBack[plan.kind, default: 0] += 1
                if plan.clearsTrapFlagOnStack { tally.waysBackClearingTrapFlag += 1 }
                let wayBackDifferences = comparison.differences(original: original, relocated: wayBack)
                if !wayBackDifferences.isEmpty {
                    tally.mismatch(Mismatch(entry: entry, plan: plan, variant: variant, original: original.outcome,
                                            differences: wayBackDifferences.map { "by the slot's way back: \($0)" }))
                }
            }
            try memory.restore(after: observed, tracee)
        }
    }

    // MARK: The original, at its own address

    private func runOriginal(_ insn: Instruction, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        try load(state, rip: insn.address)
        let (stop, regs) = try step(insn, at: insn.address)
        let outcome = Self.outcome(stop)
        // Natively the flags pushed carry no trap flag; under the oracle's single-step they do.
        if outcome == .completed, Oracle.pushesFlags(insn) { try clearTrapFlag(at: regs.rsp) }
        return try observe(outcome, regs, memory)
    }

    // MARK: Each plan, run as the engine runs it

    private func run(_ plan: RelocationPlan, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        switch plan.kind {
        case .emulate: return try emulate(plan, state, memory)
        case .trampoline: return try runTrampoline(plan, state, memory)
        case .copy, .retarget, .scratchRegister: return try stepInSlot(plan, state, memory)
        case .refuse: preconditionFailure("refusals are never run")
        }
    }

    /// copy / retarget / scratch-register: one step at `runAt`, then the engine's fix-up: RIP to
    /// `resumeAt` if the instruction completed (back to the original on a fault), the scratch
    /// register restored, TF cleared in pushed flags.
    private func stepInSlot(_ plan: RelocationPlan, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        let insn = plan.instruction
        var start = state
        if let scratch = plan.scratch { start.registers[gpr: scratch.register] = scratch.value }
        try place(plan)
        try load(start, rip: plan.runAt)
        var (stop, regs) = try step(insn, at: plan.runAt)
        let outcome = Self.outcome(stop, relocatedFrom: plan)
        if outcome == .completed, regs.rip == plan.runAt &+ UInt64(insn.length) { regs.rip = plan.resumeAt }
        if outcome.isFault, regs.rip == plan.runAt { regs.rip = insn.address }
        if let scratch = plan.scratch { regs[gpr: scratch.register] = state.registers[gpr: scratch.register] }
        if outcome == .completed, plan.clearsTrapFlagOnStack { try clearTrapFlag(at: regs.rsp) }
        return try observe(outcome, regs, memory)
    }

    /// copy / retarget / scratch-register as a thread let go inside its slot by a detach finishes it:
    /// the relocated instruction stepped (a stepped pushf pushes TF, as for such a thread), then the
    /// slot's way back (`slotWayBack`) run natively instead of the tracer's fix-up, up to a hardware
    /// breakpoint on `resumeAt`. A fault of the relocated instruction is the engine's to handle as
    /// ever, as in `stepInSlot`.
    private func runWayBack(_ plan: RelocationPlan, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        let insn = plan.instruction
        var start = state
        if let scratch = plan.scratch { start.registers[gpr: scratch.register] = scratch.value }
        let end = plan.runAt &+ UInt64(plan.code.count)
        let wayBack = plan.slotWayBack(at: end, savedScratch: plan.scratch.map { state.registers[gpr: $0.register] })
        try tracee.write(plan.code + wayBack + [UInt8](repeating: 0xcc, count: 16), at: plan.runAt)
        try load(start, rip: plan.runAt)
        let (stop, stepped) = try step(insn, at: plan.runAt)
        var regs = stepped
        var outcome = Self.outcome(stop, relocatedFrom: plan)
        if outcome.isFault {
            if regs.rip == plan.runAt { regs.rip = insn.address }
            if let scratch = plan.scratch { regs[gpr: scratch.register] = state.registers[gpr: scratch.register] }
            return try observe(outcome, regs, memory)
        }
        // Run on as a thread let go does: without the trap flag, which the kernel may have left set
        // from an earlier run's stepped popf (then taking it for the program's own).
        regs.eflags &= ~0x100
        try tracee.setRegisters(regs)
        switch try tracee.continueUntil(plan.resumeAt, deadline: 2) {
        case .reached:
            regs = try tracee.registers()
            if regs.rip != plan.resumeAt { outcome = .lost("the way back stopped at 0x\(String(regs.rip, radix: 16))") }
        case .signal(let signal, let code, let address):
            regs = try tracee.registers()
            outcome = .lost("the way back stopped with signal \(signal) code \(code) at 0x\(String(address, radix: 16))")
        case .timedOut:
            regs = try tracee.registers()
            outcome = .lost("the way back never reached resumeAt")
        }
        return try observe(outcome, regs, memory)
    }

    /// trampoline: entered by setting RIP, left by its jump back. The engine continues into it; the
    /// oracle single-steps (a bounded number of times) until RIP is back at `resumeAt`.
    private func runTrampoline(_ plan: RelocationPlan, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        let insn = plan.instruction
        try place(plan)
        try load(state, rip: plan.runAt)
        var stop = StepStop.stepped
        var regs = state.registers
        var steps = 0
        while steps < Self.stepLimit {
            stop = try tracee.singleStep()
            regs = try tracee.registers()
            steps += 1
            if stop != .stepped || regs.rip == plan.resumeAt { break }
        }
        var outcome = Self.outcome(stop, relocatedFrom: plan)
        if outcome == .completed, regs.rip != plan.resumeAt {
            outcome = .lost("rip 0x\(String(regs.rip, radix: 16)) after \(steps) steps, never back at resumeAt")
        }
        if outcome.isFault, regs.rip == plan.runAt { regs.rip = insn.address }
        // The engine continues into a trampoline with no trap flag to push; the oracle's steps have one.
        if outcome == .completed, Oracle.pushesFlags(insn) { try clearTrapFlag(at: regs.rsp) }
        return try observe(outcome, regs, memory)
    }

    /// emulate: the Emulation applied to the registers, with memory through /proc/PID/mem. It leaves
    /// the registers as they were when it throws, as the engine must.
    private func emulate(_ plan: RelocationPlan, _ state: MachineState, _ memory: TouchedMemory) throws -> RunResult {
        guard let emulation = plan.emulation else {
            return try observe(.emulationFailed("an emulate plan without an Emulation"), state.registers, memory)
        }
        try load(state, rip: plan.instruction.address)
        var regs = state.registers
        regs.rip = plan.instruction.address
        do {
            try emulation.apply(to: &regs, memory: TraceeEmulationMemory(tracee: tracee))
            return try observe(.completed, regs, memory)
        } catch {
            var unchanged = state.registers
            unchanged.rip = plan.instruction.address
            return try observe(.emulationFailed("\(error)"), unchanged, memory)
        }
    }

    // MARK: Pieces

    /// Writes the plan's code at its address, with int3s after it: a relocated instruction that runs
    /// on past its own bytes stops there instead of in an earlier plan's leftovers.
    private func place(_ plan: RelocationPlan) throws {
        try tracee.write(plan.code + [UInt8](repeating: 0xcc, count: 16), at: plan.runAt)
    }

    private func load(_ state: MachineState, rip: UInt64) throws {
        var regs = state.registers
        regs.rip = rip
        try tracee.setRegisters(regs)
        try tracee.setExtendedState(state.extended)
    }

    /// Steps the instruction at `start`; a repeated string instruction stays on itself after each
    /// iteration, so it is stepped until RIP moves.
    private func step(_ insn: Instruction, at start: UInt64) throws -> (StepStop, user_regs_struct) {
        var steps = 0
        while true {
            let stop = try tracee.singleStep()
            let regs = try tracee.registers()
            steps += 1
            if stop != .stepped || regs.rip != start || !Oracle.isRepeatedString(insn) || steps == Self.stepLimit {
                return (stop, regs)
            }
        }
    }

    private func observe(_ outcome: Outcome, _ regs: user_regs_struct, _ memory: TouchedMemory) throws -> RunResult {
        RunResult(outcome: outcome, registers: regs, extended: try tracee.extendedState(), memory: try memory.current(tracee))
    }

    private func clearTrapFlag(at address: UInt64) throws {
        let memory = TraceeEmulationMemory(tracee: tracee)
        try memory.writeWord(try memory.readWord(at: address) & ~0x100, at: address)
    }

    private static func outcome(_ stop: StepStop, relocatedFrom plan: RelocationPlan? = nil) -> Outcome {
        switch stop {
        case .stepped:
            return .completed
        case .signal(let signal, let code, var address):
            // SIGILL, SIGFPE and friends report the faulting instruction's address: the copy's.
            if let plan, address >= plan.runAt, address < plan.runAt &+ UInt64(plan.instruction.length) {
                address = plan.instruction.address &+ (address &- plan.runAt)
            }
            return .fault(signal: signal, code: code, address: address)
        }
    }
}

/// Emulation memory in the child, through /proc/PID/mem.
struct TraceeEmulationMemory: EmulationMemory {
    let tracee: OracleTracee

    func readWord(at address: UInt64) throws -> UInt64 {
        guard let bytes = tracee.read(address, count: 8) else {
            throw TraceeError(operation: "read a word at 0x\(String(address, radix: 16))", pid: tracee.pid, errno: EIO)
        }
        return bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    func writeWord(_ value: UInt64, at address: UInt64) throws {
        try tracee.write((0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }, at: address)
    }
}

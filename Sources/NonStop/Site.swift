import Relocator

/// A never-lifted breakpoint: the int3 nstrace wrote at `address`, the byte it replaced, the
/// instruction that byte began, and what the breakpoint is for.
final class Site {
    let address: UInt64
    let originalByte: UInt8
    let instruction: Instruction
    /// For the jump strategy: emulate or trampoline, fixed when the site is made.
    let jumpPlan: RelocationPlan?
    /// For the step strategy the plan depends on the thread's slot (a near slot re-targets a
    /// RIP-relative disp32, a far one borrows a register); computed once per slot.
    private var stepPlans: [UInt64: RelocationPlan] = [:]

    /// The traced function this is the entry of.
    var entryOf: TracedFunction?
    /// A `ret` of a traced function no inline window fits (inline strategy): the hit records its return.
    var exitOf: TracedFunction?
    /// A jump out of a traced function (a tail call; inline strategy): its return is watched at the
    /// caller's return address from here on.
    var tailExitOf: TracedFunction?
    /// A return address of a traced call: hits here close frames on the thread's shadow stack.
    var isReturnSite = false
    /// A return site that is the continuation of a setjmp-like call: a hit with no frame of its own
    /// to close is that call returning again (from a longjmp), with the value in rax.
    var continuationOf: TracedFunction?
    var internalRole: InternalRole?
    /// A call through a register or memory in a function followed with `--follow-calls` (its address):
    /// the hit reads where the call goes and follows the callee.
    var indirectCallIn: UInt64?

    enum InternalRole {
        /// AT_ENTRY after an exec: shared libraries loaded at start-up are mapped now.
        case programEntry
        /// The dynamic linker's r_brk (_dl_debug_state): called around every dlopen and dlclose.
        case dynamicLinker(rDebug: UInt64)
    }

    init(address: UInt64, originalByte: UInt8, instruction: Instruction, jumpPlan: RelocationPlan?) {
        self.address = address
        self.originalByte = originalByte
        self.instruction = instruction
        self.jumpPlan = jumpPlan
    }

    func stepPlan(slot: UInt64) -> RelocationPlan {
        if let plan = stepPlans[slot] { return plan }
        let plan = Relocator.stepPlan(instruction, slot: slot)
        stepPlans[slot] = plan
        return plan
    }
}

import Glibc
import Relocator

/// One traced thread and everything the engine knows about it.
final class TraceeThread {
    let tid: pid_t
    unowned var process: TracedProcess

    enum State {
        /// Running in the tracee; its next stop will be reported by waitpid.
        case running
        /// In a ptrace-stop the engine is holding it in (attach, detach, setup).
        case stopped
        /// Single-stepping a relocated instruction in its slot.
        case stepping(StepInFlight)
        /// In group-stop (SIGSTOP and friends), parked with PTRACE_LISTEN.
        case groupStopped
    }

    var state: State = .running
    var shadowStack = ShadowStack()
    /// Signals that arrived mid-step (or mid-injection), delivered once the thread is whole again.
    var heldSignals: [siginfo_t] = []
    /// After a fault in a relocated instruction is delivered at the original site, the handler may
    /// return there and hit the breakpoint again: that re-execution is not a new call.
    var suppressedHit: (site: UInt64, sp: UInt64)?
    /// The site whose relocated code is in this thread's step slot now.
    var slotHolds: UInt64?
    /// PTRACE_INTERRUPT sent, its stop not yet seen.
    var interruptPending = false

    init(tid: pid_t, process: TracedProcess) {
        self.tid = tid
        self.process = process
    }

    var isStepping: Bool {
        if case .stepping = state { return true }
        return false
    }
}

/// A relocated instruction being single-stepped, and what the fixup needs.
struct StepInFlight {
    let site: Site
    let plan: RelocationPlan
    let slot: UInt64
    /// The thread's own value of the borrowed register, to put back after the step.
    let savedScratch: UInt64?
    /// RSP at the breakpoint, to recognise a re-execution after a fault is handled.
    let stackPointer: UInt64
}

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

    // Each of the next five is mirrored to the crash guard: what letting the thread go would need.
    var state: State = .running {
        didSet { guardStep() }
    }
    /// Signals that arrived mid-step (or mid-injection), delivered once the thread is whole again.
    var heldSignals: [siginfo_t] = [] {
        didSet { if !(heldSignals.isEmpty && oldValue.isEmpty) { CrashGuard.heldSignals(guardSlot, heldSignals) } }
    }
    /// Signals nstrace sent again with tgkill (the kernel lets no one forge the siginfo of a signal it
    /// raised): their own siginfo, put back when the resent signal comes to be delivered.
    var resent: [siginfo_t] = []
    /// After a fault is delivered at a site, a handler that returns makes the thread hit the
    /// breakpoint again: that re-execution is not a new call.
    var reexecution: Reexecution?
    /// The site whose relocated code is in this thread's step slot now.
    var slotHolds: UInt64?
    /// PTRACE_INTERRUPT sent, its stop not yet seen.
    var interruptPending = false
    /// The stop the engine has reaped and not yet resumed from, if any. Only from a
    /// signal-delivery-stop can a resume deliver a signal; from an event stop the kernel ignores it.
    var hold: Hold = .none {
        didSet { if (hold == .none) != (oldValue == .none) { CrashGuard.held(guardSlot, hold != .none) } }
    }
    /// The site the thread trapped at, while its hit is being handled: a thread let go before the
    /// hit is done must restart there, not one byte into the instruction.
    var rewind: UInt64? {
        didSet { if rewind != oldValue { CrashGuard.rewind(guardSlot, to: rewind) } }
    }
    /// A step the kernel interrupted with a group-stop (SIGSTOP): single-stepped again once the
    /// group-stop ends, since a plain continue would run on through the slot.
    var stepAcrossGroupStop: StepInFlight? {
        didSet { guardStep() }
    }
    /// Between a vfork and the child's exec or exit the thread is blocked in the kernel and cannot
    /// stop; detach does not wait for it (the kernel lets it go when nstrace exits).
    var inVfork = false
    /// A syscall entered and not yet returned from (`-S`): reported at its exit.
    var syscall: SyscallInFlight?

    enum Hold { case none, signalDelivery, event }

    /// This thread's entry in the crash guard's table.
    private let guardSlot: Int32

    init(tid: pid_t, process: TracedProcess) {
        self.tid = tid
        self.process = process
        guardSlot = CrashGuard.thread(tid, of: process.pid)
    }

    deinit { CrashGuard.threadGone(guardSlot) }

    private func guardStep() {
        if case .stepping(let step) = state { CrashGuard.step(guardSlot, step) }
        else { CrashGuard.step(guardSlot, stepAcrossGroupStop) }
    }

    var isStepping: Bool {
        if case .stepping = state { return true }
        return false
    }
}

/// A fault delivered at a site, remembered so the handler's return is not taken for a new call.
/// sigreturn restores every register as it was at the fault; a new call through the same site after a
/// longjmp out of the handler has the same stack pointer but, in practice, never all the same
/// registers (whereas matching on the stack pointer alone swallowed such calls).
struct Reexecution {
    let site: UInt64
    let registers: user_regs_struct

    func matches(_ address: UInt64, _ regs: user_regs_struct) -> Bool {
        let a = registers, b = regs
        return address == site && a.rsp == b.rsp && a.rbp == b.rbp && a.rax == b.rax && a.rbx == b.rbx
            && a.rcx == b.rcx && a.rdx == b.rdx && a.rsi == b.rsi && a.rdi == b.rdi && a.r8 == b.r8 && a.r9 == b.r9
            && a.r10 == b.r10 && a.r11 == b.r11 && a.r12 == b.r12 && a.r13 == b.r13 && a.r14 == b.r14 && a.r15 == b.r15
    }
}

/// A relocated instruction being single-stepped, and what the fixup needs.
struct StepInFlight {
    let site: Site
    let plan: RelocationPlan
    let slot: UInt64
    /// The thread's own value of the borrowed register, to put back after the step.
    let savedScratch: UInt64?
}

import Glibc
import Relocator

/// One traced thread and everything the engine knows about it.
final class TraceeThread {
    let tid: pid_t
    unowned var process: TracedProcess

    /// Where the thread is in its life under the tracer, and so what letting it go needs: one value,
    /// never a set of flags that must agree.
    enum State {
        /// Running the program; its next stop will be reported by waitpid.
        case running
        /// Running (or in a group-stop), with a PTRACE_INTERRUPT sent whose stop has not been seen yet.
        /// `redo`: a group-stopped thread's step to redo, kept until that stop is handled.
        case interruptPending(redo: StepInFlight?)
        /// Between a vfork and the child's exec or exit: blocked in the kernel, it cannot stop, and
        /// detach does not wait for it (the kernel lets it go when nstrace exits).
        case inVfork
        /// Single-stepping a relocated instruction in its slot.
        case stepping(StepInFlight)
        /// In group-stop (SIGSTOP and friends), parked with PTRACE_LISTEN. `redo`: a step the kernel
        /// interrupted with the group-stop, single-stepped again once it ends, since a plain continue
        /// would run on through the slot.
        case groupStopped(redo: StepInFlight?)
        /// In a ptrace-stop the engine has reaped and not let go of yet.
        case held(Stop, Place)
        /// A zombie that will never stop again (a leader that called pthread_exit) or a thread on its
        /// way out: nothing waits for its stop any more.
        case exiting
    }

    /// The kind of stop a held thread is in. Only from a signal-delivery-stop can a resume deliver a
    /// signal; from an event stop (or a syscall stop) the kernel ignores it.
    enum Stop { case signalDelivery, event }

    /// What a held thread is in the middle of: how it must be let go, by the engine or by the crash guard.
    enum Place {
        /// Nothing of nstrace's: it goes on from where it stopped.
        case stop
        /// Trapped at this site, its hit being handled: a thread let go before the hit is done must
        /// restart there, not one byte into the instruction.
        case atSite(UInt64)
        /// Past its site: its registers say where it goes on (an emulation's result, a trampoline).
        case pastSite
        /// Trapped at the step's site, its registers being set for the step: until they are, it restarts
        /// at the site; once they may be, the step says how to undo them.
        case enteringStep(StepInFlight)
        /// A step in flight, stopped: its RIP at the slot's end means done (finish it), in the slot
        /// means not (undo it).
        case midStep(StepInFlight)
        /// In a group-stop (`redo` as in `State.groupStopped`): let go with PTRACE_LISTEN.
        case groupStop(redo: StepInFlight?)
        /// At its vfork event: let go, it blocks in the kernel until the child execs or exits.
        case vforked
    }

    /// Mirrored to the crash guard on every change: whether nstrace holds the thread's stop, where a
    /// hit must restart, and the step in flight (all that letting the thread go now would need).
    var state: State = .running {
        didSet { mirrorToGuard(from: oldValue) }
    }

    // The next four are queues and records beside the thread's life, not part of it: each can be
    // non-empty in any state (a signal held across a step and the stop after it, a syscall entered
    // before a group-stop, a slot's contents kept from one hit to the next).

    /// Signals that arrived mid-step (or mid-injection), delivered once the thread is whole again.
    var heldSignals: [siginfo_t] = [] {
        didSet { if !(heldSignals.isEmpty && oldValue.isEmpty) { CrashGuard.heldSignals(guardSlot, heldSignals) } }
    }
    /// Signals nstrace sent again with tgkill (the kernel lets no one forge the siginfo of a signal it
    /// raised): their own siginfo, put back when the resent signal comes to be delivered.
    var resent: [siginfo_t] = []
    /// After a fault is delivered at a site, a handler that returns makes the thread hit the
    /// breakpoint again: that re-execution is not a new call. It outlives the stop that set it.
    var reexecution: Reexecution?
    /// The site whose relocated code is in this thread's step slot now: a cache of the slot's bytes,
    /// kept from one step to the next whatever the thread does in between.
    var slotHolds: UInt64?
    /// A syscall entered and not yet returned from (`-S`): reported at its exit.
    var syscall: SyscallInFlight?

    /// This thread's entry in the crash guard's table.
    private let guardSlot: Int32

    init(tid: pid_t, process: TracedProcess) {
        self.tid = tid
        self.process = process
        guardSlot = CrashGuard.thread(tid, of: process.pid)
    }

    deinit { CrashGuard.threadGone(guardSlot) }

    // MARK: Reading the state

    /// Waited for by an all-stop or a detach: an interrupt or a step whose stop has not come yet.
    var awaitsStop: Bool {
        switch state {
        case .interruptPending, .stepping: true
        default: false
        }
    }

    /// The kind of stop nstrace holds the thread in; nil when it holds none.
    var heldStop: Stop? {
        if case .held(let stop, _) = state { return stop }
        return nil
    }

    /// Held in a stop that is not a group-stop: one a syscall can be injected from.
    var isHeldOutsideGroupStop: Bool {
        switch state {
        case .held(_, .groupStop): false
        case .held: true
        default: false
        }
    }

    /// In a group-stop, held or listening: let go with PTRACE_LISTEN, not a resume.
    var isInGroupStop: Bool {
        switch state {
        case .groupStopped, .held(_, .groupStop): true
        default: false
        }
    }

    // MARK: Transitions

    /// A stop of this thread was reaped: held now, keeping what it was in the middle of.
    func reaped(_ stop: Stop) {
        switch state {
        case .stepping(let step): state = .held(stop, .midStep(step))
        case .groupStopped(let redo): state = .held(stop, .groupStop(redo: redo))
        case .interruptPending(let redo?): state = .held(stop, .groupStop(redo: redo))
        case .held(_, let place): state = .held(stop, place)
        case .running, .interruptPending, .inVfork, .exiting: state = .held(stop, .stop)
        }
    }

    /// Held where it is, now of this kind of stop (an injected step leaves it in a trap stop).
    func holdStop(_ stop: Stop) {
        if case .held(_, let place) = state { state = .held(stop, place) } else { state = .held(stop, .stop) }
    }

    /// Held, now in the middle of `place`; a thread not held yet is held in an event stop.
    func hold(at place: Place) {
        state = .held(heldStop ?? .event, place)
    }

    /// Let go to run on (PTRACE_CONT or PTRACE_SYSCALL): a vfork parent blocks in the kernel.
    func letGo() {
        if case .held(_, .vforked) = state { state = .inVfork } else { state = .running }
    }

    // MARK: The crash guard's copy

    private struct GuardView {
        var held = false
        var rewind: UInt64?
        var step: StepInFlight?
    }

    private static func guardView(of state: State) -> GuardView {
        switch state {
        case .running, .inVfork, .exiting: GuardView()
        case .stepping(let step): GuardView(step: step)
        case .groupStopped(let redo), .interruptPending(let redo): GuardView(step: redo)
        case .held(_, let place):
            switch place {
            case .stop, .pastSite, .vforked: GuardView(held: true)
            case .atSite(let address): GuardView(held: true, rewind: address)
            case .enteringStep(let step): GuardView(held: true, rewind: step.site.address, step: step)
            case .midStep(let step): GuardView(held: true, step: step)
            case .groupStop(let redo): GuardView(held: true, step: redo)
            }
        }
    }

    /// The step first, then the hold, then the rewind: letting go clears the guard's rewind with the
    /// hold, and a rewind cleared while still held tells it the thread was moved past its site on purpose.
    private func mirrorToGuard(from oldState: State) {
        let old = Self.guardView(of: oldState), new = Self.guardView(of: state)
        if old.step != nil || new.step != nil { CrashGuard.step(guardSlot, new.step) }
        if old.held != new.held { CrashGuard.held(guardSlot, new.held) }
        if old.rewind != new.rewind { CrashGuard.rewind(guardSlot, to: new.rewind) }
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

/// A relocated instruction being single-stepped, and what the fixup needs. A class: the thread's state
/// carries it from case to case at every transition of every stop, and a reference is one word to copy
/// where the plan (instruction, code, emulation) is hundreds of bytes.
final class StepInFlight {
    let site: Site
    let plan: RelocationPlan
    let slot: UInt64
    /// The thread's own value of the borrowed register, to put back after the step.
    let savedScratch: UInt64?

    init(site: Site, plan: RelocationPlan, slot: UInt64, savedScratch: UInt64?) {
        self.site = site
        self.plan = plan
        self.slot = slot
        self.savedScratch = savedScratch
    }
}

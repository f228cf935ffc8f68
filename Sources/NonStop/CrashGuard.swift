import CShim
import Glibc
import Relocator

/// The engine's side of the crash guard (CShim's crash_guard.c): if nstrace itself faults or traps,
/// a signal handler that uses only async-signal-safe calls stops every traced thread, puts every
/// original byte back, puts each thread back on the program's own instructions and detaches, before
/// nstrace dies — so a bug in nstrace never takes the traced program with it. The handler knows what
/// to restore from tables the engine keeps current here: every patched place (registered before its
/// bytes are written, so a crash in between finds nothing to undo), every thread with what letting it
/// go now would need (held stop, rewind, step in flight, injected call, held signals), the scratch
/// regions and the rings.
enum CrashGuard {
    /// Arms the handlers; the calling thread is the one that traces (only it may use ptrace).
    static func install() { nst_guard_install(nst_gettid()) }

    /// After a clean detach nothing is left to restore.
    static func reset() { nst_guard_reset() }

    enum Kind: Int32 {
        /// An int3 in the program's code: a thread that just hit it goes back onto it.
        case int3 = 0
        /// A trap pad's int3: a thread that hit it runs on through the pad.
        case trapPad = 1
        /// A window's jump, borrowed bytes: restored after the int3s.
        case other = 2
    }

    private nonisolated(unsafe) static var nextOwner: UInt32 = 1

    /// A token naming one address space's patches, forgotten together.
    static func newOwner() -> UInt32 {
        defer { nextOwner &+= 1 }
        return nextOwner
    }

    /// Registers a place about to be patched; the index removes it once restored.
    static func patch(owner: UInt32, pid: pid_t, at address: UInt64, original: [UInt8], patched: [UInt8], kind: Kind) -> Int32 {
        guard original.count == patched.count else { return -1 }
        return original.withUnsafeBufferPointer { o in
            patched.withUnsafeBufferPointer { p in
                nst_guard_add_patch(owner, pid, address, o.baseAddress, p.baseAddress, Int32(o.count), kind.rawValue)
            }
        }
    }

    static func unpatch(_ index: Int32) { nst_guard_remove_patch(index) }

    static func forget(owner: UInt32) { nst_guard_forget_owner(owner) }

    static func region(_ region: ScratchRegion) { nst_guard_add_region(region.start, region.size) }

    /// The registers an injected system call's thread gets back (nil once they are back).
    static func injecting(_ tid: pid_t, saved: user_regs_struct?) {
        if var saved { nst_guard_set_injection(tid, &saved) } else { nst_guard_set_injection(tid, nil) }
    }

    // MARK: Threads

    static func thread(_ tid: pid_t, of pid: pid_t) -> Int32 { nst_guard_add_thread(tid, pid) }
    static func threadGone(_ index: Int32) { nst_guard_remove_thread(index) }
    static func held(_ index: Int32, _ held: Bool) { nst_guard_set_held(index, held) }
    static func rewind(_ index: Int32, to address: UInt64?) { nst_guard_set_rewind(index, address ?? 0) }

    static func step(_ index: Int32, _ step: StepInFlight?) {
        guard let step else { return nst_guard_clear_step(index) }
        nst_guard_set_step(index, step.slot, step.slot &+ UInt64(step.plan.instruction.length), step.site.address,
                           step.plan.resumeAt, Int32(step.plan.scratch?.register.rawValue ?? -1), step.savedScratch ?? 0,
                           step.plan.clearsTrapFlagOnStack)
    }

    static func heldSignals(_ index: Int32, _ signals: [siginfo_t]) {
        signals.withUnsafeBufferPointer { nst_guard_set_held_signals(index, $0.baseAddress, Int32(clamping: $0.count)) }
    }

    // MARK: The test hook

    /// `NSTRACE_TEST_CRASH=N`: the engine traps (a precondition failure) once it has handed over N
    /// events, so that tests can prove the guard. Read once; nil when unset.
    static let crashAfterEvents: Int? = getenv("NSTRACE_TEST_CRASH").flatMap { Int(String(cString: $0)) }
}

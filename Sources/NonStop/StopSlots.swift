import CShim
import Glibc
import Relocator

/// nstrace's side of the trap pads' stop slots (`StopSlotTarget`): the memfd the tracee maps, mapped
/// here too, so a thread's registers at a trap are read with plain loads instead of PTRACE_GETREGS.
/// The slot is written by the tracee and untrusted: nstrace takes its registers only when the slot's
/// owner is the stopped thread and its trap is one of nstrace's, and RIP is always that trap's.
final class StopSlots {
    let target: StopSlotTarget
    private let base: UnsafeMutableRawPointer
    private var size: Int { target.count << Int(StopSlotLayout.slotShift) }

    /// Slots in a table: enough that threads' tids rarely share one (a shared slot only costs the
    /// second thread a GETREGS). `NSTRACE_TEST_STOP_SLOTS` (a power of two) makes them share on purpose.
    static let count: Int = {
        if let text = getenv("NSTRACE_TEST_STOP_SLOTS").map({ String(cString: $0) }), let n = Int(text),
           n > 0, n <= 1 << 16, n & (n - 1) == 0 { return n }
        return 1024
    }()
    static var bytes: Int { count << Int(StopSlotLayout.slotShift) }

    init(target: StopSlotTarget, fd: Int32) throws(TraceError) {
        self.target = target
        let size = target.count << Int(StopSlotLayout.slotShift)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw TraceError("map the stop slots", tid: getpid(), errno: errno)
        }
        base = p
    }

    deinit { munmap(base, size) }

    private func slot(of tid: pid_t) -> UnsafeMutableRawPointer {
        base.advanced(by: (Int(UInt32(bitPattern: tid)) & (target.count - 1)) << Int(StopSlotLayout.slotShift))
    }

    private func word(_ slot: UnsafeMutableRawPointer, _ offset: Int32) -> UInt64 {
        slot.load(fromByteOffset: Int(offset), as: UInt64.self)
    }

    /// What the thread left in its slot before the int3 it stopped at: the int3's address, its
    /// registers (RIP just past that int3, as the kernel would give it) and the word at its stack
    /// pointer. The slot is freed. nil when the thread holds no slot, or a spoiled one.
    func take(_ tid: pid_t) -> (trap: UInt64, regs: user_regs_struct, stackWord: UInt64)? {
        let s = slot(of: tid)
        guard word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)) else { return nil }
        defer { free(s) }
        guard word(s, StopSlotLayout.spoiledOffset) == 0 else { return nil }
        func r(_ g: GPR) -> UInt64 { word(s, StopSlotLayout.offset(of: g)) }
        let trap = word(s, StopSlotLayout.trapOffset)
        var regs = user_regs_struct()
        regs.rax = r(.rax); regs.rcx = r(.rcx); regs.rdx = r(.rdx); regs.rbx = r(.rbx)
        regs.rsp = r(.rsp); regs.rbp = r(.rbp); regs.rsi = r(.rsi); regs.rdi = r(.rdi)
        regs.r8 = r(.r8); regs.r9 = r(.r9); regs.r10 = r(.r10); regs.r11 = r(.r11)
        regs.r12 = r(.r12); regs.r13 = r(.r13); regs.r14 = r(.r14); regs.r15 = r(.r15)
        regs.eflags = word(s, StopSlotLayout.flagsOffset)
        regs.rip = trap &+ 1
        regs.orig_rax = UInt64.max
        regs.cs = 0x33
        regs.ss = 0x2b
        return (trap, regs, word(s, StopSlotLayout.stackWordOffset))
    }

    /// Frees the thread's slot if it holds one: at any stop but a trap's, whatever it had claimed the
    /// slot for may never reach its int3 (a signal handler that longjmps out of the pad).
    func release(_ tid: pid_t) {
        let s = slot(of: tid)
        if word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)) { free(s) }
    }

    private func free(_ s: UnsafeMutableRawPointer) {
        s.storeBytes(of: 0, toByteOffset: Int(StopSlotLayout.spoiledOffset), as: UInt64.self)
        nst_release_store(s.advanced(by: Int(StopSlotLayout.ownerOffset)).assumingMemoryBound(to: UInt64.self), 0)
    }
}

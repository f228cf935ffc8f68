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

    /// Claims spoiled by another stop of their holder, and spoiled slots freed at their own int3: for
    /// `--debug`.
    private var spoiled = 0, settled = 0

    deinit {
        if spoiled > 0 { DebugLog.log("stop slots at \(hex(target.base)): \(spoiled) spoiled by other stops, \(settled) freed at their int3") }
        munmap(base, size)
    }

    private func slot(of tid: pid_t) -> UnsafeMutableRawPointer {
        base.advanced(by: (Int(UInt32(bitPattern: tid)) & (target.count - 1)) << Int(StopSlotLayout.slotShift))
    }

    private func word(_ slot: UnsafeMutableRawPointer, _ offset: Int32) -> UInt64 {
        slot.load(fromByteOffset: Int(offset), as: UInt64.self)
    }

    /// What the thread left in its slot before the int3 it stopped at: the int3 (`known` finds it by
    /// its address), its registers and the word at its stack pointer, and xmm0–7 when the trap's
    /// function has values there (copied before the slot is freed: another thread may claim it at
    /// once); the slot is freed. nil when the thread holds no slot, a spoiled one, one it has not
    /// finished writing (a SIGTRAP someone sent came first), or one naming no trap of nstrace's: that
    /// stop asks the kernel.
    /// The registers go to `registers`, not into the result: an optional that held them (19 words)
    /// was destroyed through its type's metadata, at every stop.
    func take(_ tid: pid_t, into registers: inout SlotRegisters, known: (UInt64) -> TrapSite?) -> (trap: TrapSite, vectors: FPRegisters?)? {
        let s = slot(of: tid)
        guard word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)),
              word(s, StopSlotLayout.spoiledOffset) == 0 else { return nil }
        // Written last: 0 while the pad is still writing.
        let address = word(s, StopSlotLayout.trapOffset)
        guard address != 0 else { return nil }
        registers = SlotRegisters(trap: address, flags: word(s, StopSlotLayout.flagsOffset),
                                  stackWord: word(s, StopSlotLayout.stackWordOffset))
        withUnsafeMutableBytes(of: &registers.gprs) { gprs in
            gprs.copyMemory(from: UnsafeRawBufferPointer(start: s + Int(StopSlotLayout.offset(of: .rax)), count: gprs.count))
        }
        let trap = known(address)
        let vectors = trap?.function.usesVectorRegisters == true ? Self.vectors(in: s) : nil
        free(s)
        return trap.map { ($0, vectors) }
    }

    /// xmm0–7 as the pad left them; the rest of the FXSAVE area is read from the kernel if asked for.
    private static func vectors(in slot: UnsafeMutableRawPointer) -> FPRegisters {
        var fp = user_fpregs_struct()
        withUnsafeMutableBytes(of: &fp.xmm_space) { xmm in
            xmm.copyMemory(from: UnsafeRawBufferPointer(start: slot + Int(StopSlotLayout.offset(ofVector: 0)),
                                                        count: 16 * StopSlotLayout.vectorCount))
        }
        return FPRegisters(fp, complete: false)
    }

    /// Any other stop of a thread that holds its slot: whatever it claimed the slot for may not reach
    /// its int3 as written (a signal handler runs first, and may hit pads itself or longjmp away). The
    /// slot is spoiled, not freed: the thread may still be writing it once the handler returns, and a
    /// freed slot could be another thread's by then. Its stops ask the kernel until `settle` frees it.
    func spoil(_ tid: pid_t) {
        let s = slot(of: tid)
        guard word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)) else { return }
        s.storeBytes(of: 1, toByteOffset: Int(StopSlotLayout.spoiledOffset), as: UInt64.self)
        spoiled += 1
    }

    /// A SIGTRAP stop whose registers came from the kernel: a spoiled slot is freed once the thread
    /// stands at the very int3 its claim was written for, with the stack pointer it wrote (so no claim
    /// of an interrupted pad is pending on its stack any more).
    func settle(_ tid: pid_t, regs: user_regs_struct) {
        let s = slot(of: tid)
        guard word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)),
              word(s, StopSlotLayout.spoiledOffset) != 0 else { return }
        let trap = word(s, StopSlotLayout.trapOffset)
        if trap != 0, regs.rip == trap &+ 1, regs.rsp == word(s, StopSlotLayout.offset(of: .rsp)) {
            free(s)
            settled += 1
        }
    }

    /// Frees the thread's slot if it holds one, when nothing of it can be pending: the thread is gone,
    /// or it is a vfork parent whose child (which ran on its TCB, and so under its tid) is done.
    func release(_ tid: pid_t) {
        let s = slot(of: tid)
        if word(s, StopSlotLayout.ownerOffset) == UInt64(UInt32(bitPattern: tid)) { free(s) }
    }

    private func free(_ s: UnsafeMutableRawPointer) {
        s.storeBytes(of: 0, toByteOffset: Int(StopSlotLayout.trapOffset), as: UInt64.self)
        s.storeBytes(of: 0, toByteOffset: Int(StopSlotLayout.spoiledOffset), as: UInt64.self)
        nst_release_store(s.advanced(by: Int(StopSlotLayout.ownerOffset)).assumingMemoryBound(to: UInt64.self), 0)
    }
}

/// The registers a trap pad left in a stop slot, as plain words (copied with no retain): the general
/// registers by number, flags, the word at the stack pointer (an entry's return address), the int3.
struct SlotRegisters {
    var gprs: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
               UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    let trap: UInt64
    let flags: UInt64
    let stackWord: UInt64

    /// The word of a general register at `offset` (8 × its number: `ValueSlot.plan(registers:)`).
    func word(at offset: Int) -> UInt64 {
        withUnsafeBytes(of: gprs) { offset >= 0 && offset <= $0.count - 8 ? $0.load(fromByteOffset: offset, as: UInt64.self) : 0 }
    }

    subscript(_ gpr: GPR) -> UInt64 { word(at: 8 * gpr.rawValue) }

    /// As the kernel would give them at that int3: RIP just past it.
    var userRegs: user_regs_struct {
        var regs = user_regs_struct()
        for gpr in GPR.allCases where gpr != .rip { regs[gpr] = self[gpr] }
        regs.eflags = flags
        regs.rip = trap &+ 1
        regs.orig_rax = UInt64.max
        regs.cs = 0x33
        regs.ss = 0x2b
        return regs
    }
}

extension StopSlots {
    /// A stop other than a SIGTRAP: the thread's end or a vfork parent's release frees its slot, any
    /// other stop spoils it.
    func settleAtStop(_ result: WaitResult) {
        switch result {
        case .exited, .killed, .eventStop(_, .vforkDone, _): release(result.tid)
        default: spoil(result.tid)
        }
    }
}

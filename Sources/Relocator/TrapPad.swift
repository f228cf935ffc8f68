/// The jump strategy's code for a window: the window jumps here, where an int3 stops the thread in
/// nstrace's own memory — not in the program's code, where a byte 0xcc could be anyone's — and the
/// relocated window instructions run on from there when the thread is continued. Laid out as
///
/// ```
/// pad:  [int3]  relocated instructions (with [int3] before a last `ret`)  | jmp window end
/// ```
///
/// The thread needs no new RIP after the stop (it is already past the int3, on the relocated code).
/// With stop slots (`StopSlotTarget`), the pad also leaves the thread's registers in memory nstrace
/// shares before each int3, so a hit costs the floor's stop and continue and nothing else; without,
/// one GETREGS more.
public struct TrapPad: Sendable, WindowTarget {
    public let address: UInt64
    public let code: [UInt8]
    /// The int3 that records the call (the first byte), if the window is an entry.
    public let entryTrap: UInt64?
    /// The int3 just before a `ret` that ends the window, if it records the return.
    public let exitTrap: UInt64?
    /// Where each relocated instruction begins in the pad, with its address in the program: a fault
    /// there is delivered as if it had happened at the original.
    public let origins: [(pad: UInt64, original: UInt64)]

    public var entry: UInt64 { address }

    /// The pad for `window` at `address` (within ±2 GiB of the window). Traps at the entry when the
    /// window records the entry, before the `ret` when it records the return; nothing else of the
    /// window's roles (tail calls are followed at the caller's return address by the jump strategy).
    public static func build(window: InlineWindow, at address: UInt64, slots: StopSlotTarget? = nil) -> Result<TrapPad, Refusal> {
        var w = X86Writer(base: address)
        var entryTrap: UInt64?, exitTrap: UInt64?
        var origins: [(pad: UInt64, original: UInt64)] = []
        if window.recordsEntry {
            entryTrap = putTrap(slots, into: &w)
        }
        for (i, insn) in window.instructions.enumerated() {
            let isLast = i == window.instructions.count - 1
            if isLast, window.recordsReturn {
                exitTrap = putTrap(slots, into: &w)
            }
            origins.append((w.pc, insn.address))
            if let refusal = WindowRelocator.relocate(insn, isLast: isLast, into: &w) { return .failure(refusal) }
        }
        if !window.endsInTransfer { w.putJmpAddress(window.end) }
        guard let code = w.finish() else { return .failure(Refusal(reason: "internal: a pad label was never bound")) }
        return .success(TrapPad(address: address, code: code, entryTrap: entryTrap, exitTrap: exitTrap, origins: origins))
    }

    /// An int3, after the code that leaves the registers in the thread's stop slot; the int3's address.
    private static func putTrap(_ slots: StopSlotTarget?, into w: inout X86Writer) -> UInt64 {
        if let slots {
            // Drafts tell where the int3 lands (the address stored is shorter to write below 4 GiB: two
            // drafts settle it). Were it ever wrong, nstrace would find no trap there and ask the kernel.
            var trap = w.pc
            for _ in 0..<2 {
                var draft = X86Writer(base: w.pc)
                slots.putPublish(trap: trap, into: &draft)
                trap = w.pc &+ UInt64(draft.code.count)
            }
            slots.putPublish(trap: trap, into: &w)
        }
        let trap = w.pc
        w.putInt3()
        return trap
    }
}

/// Where trap pads leave a stopping thread's registers: a table of slots in memory nstrace maps too
/// (a memfd), one per thread by `tid & (count - 1)`. A thread claims its slot with a compare-and-swap
/// of its tid into the owner word, fills it (general registers, flags, xmm0–7, the word at RSP), and
/// stops at the int3 right after; nstrace reads the
/// registers there instead of asking the kernel (PTRACE_GETREGS), and frees the slot before letting
/// the thread go. The int3's address is written last: until it is, nstrace does not read the slot. A
/// slot another thread holds is left alone (that stop falls back to GETREGS); a slot the thread itself
/// still holds (a signal handler that interrupted its pad hits a pad too, or a vfork child ran on its
/// parent's TCB) is marked spoiled, and that stop falls back too. nstrace spoils it as well at any
/// other stop of the holder, and frees a spoiled slot only once the thread stands at the int3 the
/// slot was written for (see `StopSlots` in NonStop).
public struct StopSlotTarget: Sendable, Hashable {
    /// The table's address in the tracee.
    public let base: UInt64
    /// Slots in the table: a power of two.
    public let count: Int
    /// The TCB offset of glibc's tid (`PadEnvironment.ThreadIdentity.tcb`).
    public let tidOffset: Int32

    public init(base: UInt64, count: Int, tidOffset: Int32) {
        self.base = base
        self.count = count
        self.tidOffset = tidOffset
    }

    /// Saved on the stack below the red zone: flags, rax, rcx, rdx (rdx at the top).
    private static let redZone: Int32 = 128
    private static let frame = redZone + 4 * 8

    /// Claims the thread's slot and fills it; every register and flag as it was afterwards.
    func putPublish(trap: UInt64, into w: inout X86Writer) {
        let layout = StopSlotLayout.self
        let done = w.newLabel(), claimed = w.newLabel()
        w.putLea(.rsp, base: .rsp, displacement: -Self.redZone)
        w.putPushfq()
        w.putPush(.rax)
        w.putPush(.rcx)
        w.putPush(.rdx)
        // rdx = the tid, rcx = its slot.
        w.putLoadFS32(.rdx, displacement: tidOffset)
        w.putMov32(.rcx, .rdx)
        w.putAnd32(.rcx, UInt32(count - 1))
        w.putShl(.rcx, layout.slotShift)
        w.putMovImm64(.rax, base)
        w.putAdd(.rcx, .rax)
        w.putAnd32(.rax, 0)
        w.putLockCmpxchg(base: .rcx, displacement: layout.ownerOffset, .rdx)
        w.putJcc(.e, claimed)
        // Held already: by this thread, spoil it; by another, leave it.
        w.putCmp(.rax, .rdx)
        w.putJcc(.ne, done)
        w.putStoreImm64(1, base: .rcx, displacement: layout.spoiledOffset)
        w.putJmp(done)

        w.bind(claimed)
        for r in GPR.allCases where r != .rip && r != .rsp && r != .rax && r != .rcx && r != .rdx {
            w.putStore(r, base: .rcx, displacement: layout.offset(of: r))
        }
        for (r, saved) in [(GPR.rdx, Int32(0)), (.rcx, 8), (.rax, 16)] {
            w.putLoad(.rax, base: .rsp, displacement: saved)
            w.putStore(.rax, base: .rcx, displacement: layout.offset(of: r))
        }
        w.putLoad(.rax, base: .rsp, displacement: 24)
        w.putStore(.rax, base: .rcx, displacement: layout.flagsOffset)
        w.putLea(.rax, base: .rsp, displacement: Self.frame)
        w.putStore(.rax, base: .rcx, displacement: layout.offset(of: .rsp))
        w.putLoad(.rax, base: .rsp, displacement: Self.frame)
        w.putStore(.rax, base: .rcx, displacement: layout.stackWordOffset)
        for i in 0..<StopSlotLayout.vectorCount {
            w.putStoreXMM128(i, base: .rcx, displacement: layout.offset(ofVector: i))
        }
        w.putMovImm64(.rax, trap)
        w.putStore(.rax, base: .rcx, displacement: layout.trapOffset)

        w.bind(done)
        w.putPop(.rdx)
        w.putPop(.rcx)
        w.putPop(.rax)
        w.putPopfq()
        w.putLea(.rsp, base: .rsp, displacement: Self.redZone)
    }
}

/// One stop slot: 512 bytes.
public enum StopSlotLayout {
    public static let slotShift: UInt8 = 9
    public static var slotSize: Int { 1 << Int(slotShift) }
    /// The tid of the thread holding the slot; 0 when free.
    public static let ownerOffset: Int32 = 0
    /// Non-zero: the holder met its own claim in a pad, or nstrace saw it stop elsewhere, before the
    /// slot was freed: its contents may not be this stop's.
    public static let spoiledOffset: Int32 = 8
    /// The int3 the thread stops at next.
    public static let trapOffset: Int32 = 16
    /// The word at the stack pointer (a return address, at an entry).
    public static let stackWordOffset: Int32 = 24
    public static let flagsOffset: Int32 = 32
    /// The general registers, in encoding order (rax first), RSP as it was before the pad's code.
    public static func offset(of r: GPR) -> Int32 { 40 + 8 * Int32(r.rawValue) }
    /// xmm0–xmm7, where floating-point arguments and results are: 16 bytes each, from 176.
    public static let vectorCount = 8
    public static func offset(ofVector i: Int) -> Int32 { 176 + 16 * Int32(i) }
}

/// Code a window's jump goes to: an inline pad, or the jump strategy's trap pad.
public protocol WindowTarget {
    /// Where the window's jump goes.
    var entry: UInt64 { get }
}

extension WindowTarget {
    /// The bytes the window's site gets: a `jmp rel32` to the target (the rest of the patch length, past
    /// the jump, is left as it is: never executed, since nothing enters the window but at its start).
    /// With a short-jump slot, the site gets `jmp rel8` to the slot and the slot the `jmp rel32`.
    public func patches(for window: InlineWindow) -> [(address: UInt64, bytes: [UInt8])]? {
        if let slot = window.shortJumpSlot {
            let distance = Int64(bitPattern: slot &- (window.start &+ 2))
            guard let rel8 = Int8(exactly: distance), let long = jump(from: slot) else { return nil }
            return [(slot, long), (window.start, [0xeb, UInt8(bitPattern: rel8)])]
        }
        guard let long = jump(from: window.start) else { return nil }
        return [(window.start, long)]
    }

    private func jump(from: UInt64) -> [UInt8]? {
        var w = X86Writer(base: from)
        w.putJmpAddress(entry)
        return w.code.count == 5 ? w.code : nil
    }
}

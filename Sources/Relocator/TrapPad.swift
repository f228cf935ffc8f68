/// The jump strategy's code for a window: the window jumps here, where an int3 stops the thread in
/// nstrace's own memory — not in the program's code, where a byte 0xcc could be anyone's — and the
/// relocated window instructions run on from there when the thread is continued. Laid out as
///
/// ```
/// pad:  [int3]  relocated instructions (with [int3] before a last `ret`)  | jmp window end
/// ```
///
/// The thread needs no new RIP after the stop (it is already past the int3, on the relocated code), so
/// a hit costs the floor's stop and continue plus one GETREGS.
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
    public static func build(window: InlineWindow, at address: UInt64) -> Result<TrapPad, Refusal> {
        var w = X86Writer(base: address)
        var entryTrap: UInt64?, exitTrap: UInt64?
        var origins: [(pad: UInt64, original: UInt64)] = []
        if window.recordsEntry {
            entryTrap = w.pc
            w.putInt3()
        }
        for (i, insn) in window.instructions.enumerated() {
            let isLast = i == window.instructions.count - 1
            if isLast, window.recordsReturn {
                exitTrap = w.pc
                w.putInt3()
            }
            origins.append((w.pc, insn.address))
            if let refusal = WindowRelocator.relocate(insn, isLast: isLast, into: &w) { return .failure(refusal) }
        }
        if !window.endsInTransfer { w.putJmpAddress(window.end) }
        guard let code = w.finish() else { return .failure(Refusal(reason: "internal: a pad label was never bound")) }
        return .success(TrapPad(address: address, code: code, entryTrap: entryTrap, exitTrap: exitTrap, origins: origins))
    }
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

/// Where the inline strategy puts a function's sites: windows of whole instructions, each overwritten by
/// a jump to a pad that records the event and runs the relocated instructions, and — where no window is
/// sound — int3 sites, with the reason.
public struct InlinePlan: Sendable {
    public let windows: [InlineWindow]
    public let fallbacks: [InlineFallback]
    /// The function's exits are known, so its returns are seen at them; false when its code could not
    /// be analysed: its returns are then watched at its callers' return addresses, as the jump
    /// strategy does.
    public let returnsSeenAtExits: Bool

    /// Every site is a window: no int3 anywhere in the function.
    public var isFullyInline: Bool { fallbacks.isEmpty && returnsSeenAtExits }

    public init(windows: [InlineWindow], fallbacks: [InlineFallback], returnsSeenAtExits: Bool = true) {
        self.windows = windows
        self.fallbacks = fallbacks
        self.returnsSeenAtExits = returnsSeenAtExits
    }

    /// Where the function's tail calls go: those callees' returns are the function's.
    public var tailCallTargets: Set<UInt64> { Set(windows.compactMap(\.tailCallTarget)) }

    /// The same plan with the tail-call windows given up for int3s (their callees' returns cannot be
    /// watched).
    /// `entry`: where the function's entry int3 goes, for an entry window that ends in a tail call.
    public func withoutTailCallWindows(entry: UInt64, because reason: String) -> InlinePlan {
        var fallbacks = self.fallbacks
        var windows: [InlineWindow] = []
        for window in self.windows {
            guard window.tailCallTarget != nil, let jump = window.instructions.last else {
                windows.append(window)
                continue
            }
            fallbacks.append(InlineFallback(address: jump.address, kind: .tailExit, reason: reason))
            if window.recordsEntry {
                // An entry window that ends in the tail call: the entry needs its own int3 too.
                fallbacks.append(InlineFallback(address: entry, kind: .entry, reason: reason))
            }
        }
        return InlinePlan(windows: windows, fallbacks: fallbacks, returnsSeenAtExits: returnsSeenAtExits)
    }
}

/// A run of whole instructions that nothing enters except at `start`.
public struct InlineWindow: Sendable, Hashable {
    public let start: UInt64
    /// The instructions relocated into the pad, in order.
    public let instructions: [Instruction]
    /// Bytes overwritten at `start` (or at `shortJump`'s slot) by the jump: at least 5, past the last
    /// instruction only into never-executed padding.
    public let patchLength: Int
    /// The window is where the function is entered: record the call before the first instruction.
    public let recordsEntry: Bool
    /// The reported stack pointer at entry, from the one at the window's start: the function's first
    /// instruction (left in place) may have pushed or reserved stack.
    public let entryStackAdjust: Int32
    /// The last instruction is a `ret`: record the return just before it.
    public let recordsReturn: Bool
    /// The last instruction jumps out of the function (a tail call) to this address: record that the
    /// call goes on there just before it. Its return is then seen where the tail-callee returns.
    public let tailCallTarget: UInt64?
    /// The window's site holds a `jmp rel8` to this address in padding, which holds the `jmp rel32` to
    /// the pad (E9Patch's and Dyninst's answer to windows shorter than 5 bytes).
    public let shortJumpSlot: UInt64?

    public init(start: UInt64, instructions: [Instruction], patchLength: Int, recordsEntry: Bool,
                entryStackAdjust: Int32, recordsReturn: Bool, tailCallTarget: UInt64? = nil, shortJumpSlot: UInt64?) {
        self.start = start
        self.instructions = instructions
        self.patchLength = patchLength
        self.recordsEntry = recordsEntry
        self.entryStackAdjust = entryStackAdjust
        self.recordsReturn = recordsReturn
        self.tailCallTarget = tailCallTarget
        self.shortJumpSlot = shortJumpSlot
    }

    /// The first byte after the window's instructions: where the pad jumps back to when the window
    /// does not end in a `ret` or `jmp`.
    public var end: UInt64 { instructions.last?.next ?? start }

    /// Whether control leaves the window at its end (ret, jmp, or a call, which returns to the
    /// window's end by itself) rather than falling through.
    public var endsInTransfer: Bool {
        guard let last = instructions.last else { return false }
        return InlinePlanner.isUnconditionalTransfer(last) || InlinePlanner.isCall(last)
    }

    /// Instruction boundaries strictly inside the bytes the jump overwrites: no thread may be stopped
    /// at one (or have one saved in a frame) when the window is written.
    public var interiorBoundaries: [UInt64] {
        let patchedEnd = start &+ UInt64(shortJumpSlot == nil ? patchLength : 2)
        return instructions.dropFirst().map(\.address).filter { $0 < patchedEnd }
    }
}

/// A site of the function that keeps an int3, and why.
public struct InlineFallback: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// The function's entry: an int3 where the jump strategy puts it.
        case entry
        /// A `ret`: the int3 records the return and the `ret` is emulated.
        case exit
        /// A jump out of the function (a tail call, or an indirect jump nstrace cannot resolve): the
        /// call returns at its caller's return address, where an int3 sees it.
        case tailExit = "tail-exit"
    }

    public let address: UInt64
    public let kind: Kind
    public let reason: String

    public init(address: UInt64, kind: Kind, reason: String) {
        self.address = address
        self.kind = kind
        self.reason = reason
    }
}

/// One contiguous piece of a function's code: its body, or a part split off from it (`.cold`).
public struct CodePart: Sendable {
    public let start: UInt64
    public let bytes: [UInt8]
    /// The bytes after the part up to the next symbol (alignment padding), never executed when the
    /// part ends in an unconditional transfer.
    public let padding: [UInt8]

    public init(start: UInt64, bytes: [UInt8], padding: [UInt8]) {
        self.start = start
        self.bytes = bytes
        self.padding = padding
    }

    /// The first byte after the part; the top of the address space for bytes that would run past it
    /// (an untrusted symbol's address and size): their last instruction's end then never matches it,
    /// and the planner says the code does not decode.
    public var end: UInt64 {
        let (end, overflow) = start.addingReportingOverflow(UInt64(bytes.count))
        return overflow ? .max : end
    }
}

/// Where an indirect jump goes, for the planner.
public enum IndirectJumpTarget: Sendable, Hashable {
    /// A switch table: every target inside the function.
    case table(Set<UInt64>)
    /// A jump out of the function (a call in tail position).
    case tailCall
    case unresolved(String)
}

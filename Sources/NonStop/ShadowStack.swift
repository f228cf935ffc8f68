/// A thread's traced calls still open, with the stack pointer at entry (which points at the return
/// address). A frame is over once execution is seen above its entry stack pointer on the same stack
/// (the mapping that holds the stack pointer now holds the frame's too, `StackMappings`): that covers
/// a plain return, a tail call (the tail-callee entered with the same stack pointer and returns for
/// both), recursion (each level has its own stack pointer), and longjmp or an exception unwinding past
/// frames (they are closed as unwound). Frames on another stack (a fiber's, a sigaltstack's) are left
/// alone: their thread will come back to them.
struct ShadowStack {
    struct Frame {
        let function: TracedFunction
        let entrySP: UInt64
        /// Where the call returns to, when its return is watched there (0 when it is seen at the
        /// function's own `ret`s, as the inline strategy sees it).
        var returnAddress: UInt64
        let start: UInt64
        /// The function left by a tail call (inline strategy): it returns when the callee returns,
        /// with the callee's stack pointer, which is its own.
        var tailPending = false
    }

    /// A frame closed: returned (where it is seen) or unwound past; at which depth it was.
    typealias Closed = (frame: Frame, depth: Int, returned: Bool)

    private(set) var frames: [Frame] = []
    /// Frames dropped from the bottom because too many were open: depths stay as they were.
    private var dropped = 0

    var depth: Int { dropped &+ frames.count }

    /// Open frames kept per thread (or goroutine). Past that — runaway recursion, or calls whose
    /// returns are never seen — the oldest go, and their returns are not reported (counted as lost), so
    /// that memory stays bounded whatever the tracee does.
    static let maxFrames = 4096

    /// Opens a frame; returns how many of the oldest were dropped to make room.
    mutating func push(_ frame: Frame) -> Int {
        var evicted = 0
        if frames.count >= ShadowStack.maxFrames {
            evicted = ShadowStack.maxFrames / 16
            frames.removeFirst(evicted)
            dropped &+= evicted
        }
        frames.append(frame)
        return evicted
    }

    /// Frames opened before these, underneath them (a fork child's, from its parent).
    mutating func putUnderneath(_ older: ShadowStack) {
        frames = older.frames + frames
        dropped = older.dropped
    }

    /// Where the stack is not known (its mapping could not be read, a goroutine's scale), how far above
    /// a frame's entry stack pointer execution may be seen and still be on the same stack.
    static let sameStackReach: UInt64 = 64 << 20

    /// Whether a frame is on `stack`, the mapping `sp` is in (where that is not known: near enough
    /// below `sp`).
    private static func onStack(_ frame: Frame, _ stack: Range<UInt64>, sp: UInt64) -> Bool {
        if !stack.isEmpty { return stack.contains(frame.entrySP) }
        return frame.entrySP >= sp || sp - frame.entrySP <= sameStackReach
    }

    /// The innermost open frame on `stack`, by index (frames of other stacks above it are skipped).
    private func top(on stack: Range<UInt64>, sp: UInt64) -> Int? {
        var i = frames.count - 1
        while i >= 0, !ShadowStack.onStack(frames[i], stack, sp: sp) { i -= 1 }
        return i >= 0 ? i : nil
    }

    private mutating func close(_ i: Int, returned: Bool, into closed: inout [Closed]) {
        let frame = i == frames.count - 1 ? frames.removeLast() : frames.remove(at: i)
        closed.append((frame, dropped &+ i, returned))
    }

    /// Removes and returns the frames on `stack` that are over when the thread runs at `site` with
    /// `sp`, innermost first; `returned` says whether a frame returned here (its return address, with
    /// the stack pointer just past it) or was unwound past.
    mutating func popFrames(at site: UInt64?, sp: UInt64, stack: Range<UInt64>, into closed: inout [Closed]) {
        while let i = top(on: stack, sp: sp), frames[i].entrySP < sp {
            let frame = frames[i]
            let returnedHere = site != nil && (site == frame.returnAddress || frame.tailPending) && sp == frame.entrySP &+ 8
            close(i, returned: returnedHere, into: &closed)
        }
    }

    /// A call is entered at `sp`: the innermost frame, entered at the same stack pointer, must have
    /// returned unseen when nothing else could have left it there — its return is seen at its own
    /// `ret`s (the record was lost when the ring was full), or cannot be watched at all (a return
    /// address in anonymous memory): the caller is calling again from the same place, and a loop of
    /// such calls must not pile up frames. A frame watched at a return address (a tail call's caller,
    /// or the jump strategy's) stays: the tail-callee enters at its stack pointer.
    mutating func popReturnedUnseen(sp: UInt64, stack: Range<UInt64>, into closed: inout [Closed]) {
        guard let i = top(on: stack, sp: sp), frames[i].entrySP == sp, frames[i].returnAddress == 0,
              !frames[i].tailPending else { return }
        close(i, returned: false, into: &closed)
    }

    /// The function's `ret` ran with `sp`: frames below it are over (unwound), and the frame entered at
    /// `sp` returns.
    mutating func popReturn(of function: TracedFunction, sp: UInt64, stack: Range<UInt64>, into closed: inout [Closed]) {
        popFrames(at: nil, sp: sp, stack: stack, into: &closed)
        if let i = top(on: stack, sp: sp), frames[i].entrySP == sp, frames[i].function === function {
            close(i, returned: true, into: &closed)
        }
        if let i = top(on: stack, sp: sp), frames[i].entrySP == sp, frames[i].tailPending {
            popTailCallers(sp: sp, stack: stack, into: &closed)
        }
    }

    /// A return with `sp` (of a traced function, or of a callee watched for its tail-callers): the
    /// frames that tail-called into it return too.
    mutating func popTailCallers(sp: UInt64, stack: Range<UInt64>, into closed: inout [Closed]) {
        while let i = top(on: stack, sp: sp), frames[i].entrySP == sp, frames[i].tailPending {
            close(i, returned: true, into: &closed)
        }
    }

    /// The frame entered at `sp` left by a tail call; false when there is no such frame.
    mutating func markTailCall(of function: TracedFunction, sp: UInt64) -> Bool {
        guard let i = frames.lastIndex(where: { $0.entrySP == sp && $0.function === function }) else { return false }
        frames[i].tailPending = true
        return true
    }

    /// The frame entered at `sp` leaves by a jump (a tail call): it returns where its caller's return
    /// address sends it.
    mutating func watchReturnAddress(of function: TracedFunction, sp: UInt64, returnAddress: UInt64) {
        guard let i = frames.lastIndex(where: { $0.entrySP == sp && $0.function === function }) else { return }
        frames[i].returnAddress = returnAddress
    }

    mutating func removeAll() -> [(frame: Frame, depth: Int)] {
        defer { frames.removeAll() }
        return frames.enumerated().reversed().map { ($0.element, dropped &+ $0.offset) }
    }
}

/// A thread's shadow stack where its process keeps it: one lookup finds it and it is changed in
/// place, where a stack held by value in the table would be taken out and put back at every stop of
/// threads taking turns (two hashes and a table write each).
final class ThreadShadowStack {
    var stack = ShadowStack()
}


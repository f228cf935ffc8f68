/// A thread's traced calls still open, keyed by the stack pointer at entry (which points at the
/// return address). A frame is over once execution is seen above its entry stack pointer: that covers
/// a plain return, a tail call (the tail-callee entered with the same stack pointer and returns for
/// both), recursion (each level has its own stack pointer), and longjmp or an exception unwinding past
/// frames (they are closed as unwound).
struct ShadowStack {
    struct Frame {
        let function: TracedFunction
        let entrySP: UInt64
        let returnAddress: UInt64
        let start: UInt64
    }

    private(set) var frames: [Frame] = []

    var depth: Int { frames.count }

    mutating func push(_ frame: Frame) { frames.append(frame) }

    /// How far above a frame's entry stack pointer execution may be seen and still be on the same
    /// stack. Further up is another stack altogether — a signal handler's sigaltstack, a fiber's —
    /// and says nothing about the frames on this one.
    static let sameStackReach: UInt64 = 64 << 20

    /// Removes and returns the frames that are over when the thread runs at `site` with `sp`,
    /// innermost first; `returned` says whether a frame returned here (its return address, with the
    /// stack pointer just past it) or was unwound past.
    mutating func popFrames(at site: UInt64?, sp: UInt64) -> [(frame: Frame, depth: Int, returned: Bool)] {
        var closed: [(Frame, Int, Bool)] = []
        while let top = frames.last, top.entrySP < sp, sp - top.entrySP <= ShadowStack.sameStackReach {
            frames.removeLast()
            closed.append((top, frames.count, site == top.returnAddress && sp == top.entrySP &+ 8))
        }
        return closed
    }

    mutating func removeAll() -> [(frame: Frame, depth: Int)] {
        defer { frames.removeAll() }
        return frames.enumerated().reversed().map { ($0.element, $0.offset) }
    }
}

import Foundation
import NonStop
import Symbols

/// `--min-duration`, `--max-depth`, `--exclude`, `--caller`, `--follow-calls`: which calls reach the
/// renderers, the same for every output format. A call's return (or unwinding) is shown exactly when
/// its call is.
///
/// Depths stay the ones the engine gave (the depth among traced calls, as an unfiltered trace shows
/// it), as uftrace keeps them: a filtered trace lines up with an unfiltered one, and for the duration
/// filter the nesting is consistent anyway, because a call lasts at least as long as any call inside
/// it — whatever is shown has its traced callers shown too.
///
/// `--min-duration` cannot know a call is long enough until it returns: its call event is held (with
/// a copy of its values) and released, ahead of the first return long enough — its own or one inside
/// it — in the order the calls were made. What is held is capped per thread; past the cap the oldest
/// held call is given up, and if it turns out long enough, it is counted and told at the end.
public final class CallFilter {
    public struct Options {
        /// Nanoseconds.
        public var minDuration: UInt64?
        /// Levels of nesting shown: 1 is the outermost traced calls alone (depth 0).
        public var maxDepth: Int32?
        public var exclude: NamePattern?
        /// The module a call must be made from (its return address in it); the engine marks the calls.
        public var callerFiltered = false
        /// `--follow-calls N`: a callee's call (`TracedFunction.isCallee`) is shown only inside a call of
        /// a root (a function REGEX matches), at most N levels below the innermost one.
        public var followCalls: Int32?

        public init(minDuration: UInt64? = nil, maxDepth: Int32? = nil, exclude: NamePattern? = nil, callerFiltered: Bool = false,
                    followCalls: Int32? = nil) {
            self.minDuration = minDuration
            self.maxDepth = maxDepth
            self.exclude = exclude
            self.callerFiltered = callerFiltered
            self.followCalls = followCalls
        }

        var isEmpty: Bool { minDuration == nil && maxDepth == nil && exclude == nil && !callerFiltered && followCalls == nil }
    }

    /// Held calls per thread (or goroutine) at most: their values are copies, kept until they return.
    static let maxHeld = 1024

    private enum Frame {
        case shown
        /// Not shown, nor anything under it (`--exclude`).
        case excludedSubtree
        /// Not shown; what is under it is decided on its own.
        case hidden
        /// Waiting for its return to know its duration: its call event, and a copy of what it refers to.
        case held(HeldCall)
        /// Held, then given up (over the cap): if it lasts long enough it is counted as not shown.
        case givenUp
        /// A depth no call was seen at (lost, or begun before nstrace came).
        case unknown
    }

    private final class HeldCall {
        var event: Event
        let values: [UInt8]
        let detail: EventDetail?

        init(event: Event, values: [UInt8], detail: EventDetail?) {
            self.event = event
            self.values = values
            self.detail = detail
        }
    }

    private struct Track {
        var frames: [Frame] = []
        var held = 0
        /// `--follow-calls`: the depths of the open root calls, innermost last.
        var roots: [Int] = []
    }

    private let options: Options
    private var tracks: [CallKey: Track] = [:]
    /// Per function number: whether `--exclude` names it.
    private var excluded: [Bool] = []
    /// Long-enough calls that were given up over the cap, and are not shown.
    private(set) var givenUpLong = 0
    private var lastTimestamp: UInt64 = 0
    /// For held events' `BatchContext`: they refer to no batch.
    private let placeholder = EventBatch()

    private let functions: FunctionTable

    init(options: Options, functions: FunctionTable) {
        self.options = options
        self.functions = functions
    }

    /// Events of `context`'s batch, from `index`: those to show go to `show`, now or (held calls) later.
    func take(_ events: [Event], at index: Int, _ context: BatchContext, _ show: (Event, BatchContext) -> Void) {
        let event = events[index]
        switch event.kind {
        case .call: call(events, at: index, context, show)
        case .ret, .unwound: ended(event, context, show)
        default: show(event, context)
        }
    }

    private func call(_ events: [Event], at index: Int, _ context: BatchContext, _ show: (Event, BatchContext) -> Void) {
        let event = events[index]
        lastTimestamp = max(lastTimestamp, event.timestamp)
        let key = CallKey(event)
        var track = tracks.removeValue(forKey: key) ?? Track()
        defer { tracks[key] = track }
        let depth = Int(max(event.depth, 0))
        close(&track, from: depth)
        while track.frames.count < depth { track.frames.append(.unknown) }
        let parentExcluded: Bool = {
            guard let last = track.frames.last, case .excludedSubtree = last else { return false }
            return true
        }()
        if parentExcluded || isExcluded(event, context) {
            track.frames.append(.excludedSubtree)
        } else if let maxDepth = options.maxDepth, event.depth >= maxDepth {
            track.frames.append(.hidden)
        } else if options.callerFiltered, !event.fromCaller {
            track.frames.append(.hidden)
        } else if let follow = options.followCalls, !isFollowed(event, depth, context, &track, below: Int(follow)) {
            track.frames.append(.hidden)
        } else if options.minDuration != nil {
            if track.held >= CallFilter.maxHeld, let oldest = track.frames.firstIndex(where: { if case .held = $0 { return true } else { return false } }) {
                track.frames[oldest] = .givenUp
                track.held -= 1
            }
            track.frames.append(.held(hold(events, at: index, context)))
            track.held += 1
        } else {
            track.frames.append(.shown)
            show(event, context)
        }
    }

    private func ended(_ event: Event, _ context: BatchContext, _ show: (Event, BatchContext) -> Void) {
        lastTimestamp = max(lastTimestamp, event.timestamp)
        let key = CallKey(event)
        guard var track = tracks.removeValue(forKey: key) else { return }
        defer { tracks[key] = track }
        let depth = Int(max(event.depth, 0))
        guard depth < track.frames.count else { return }
        close(&track, from: depth &+ 1)
        switch track.frames[depth] {
        case .shown:
            track.frames.removeLast()
            show(event, context)
        case .held:
            if let minDuration = options.minDuration, event.duration >= minDuration { release(&track, show) }
            if case .held = track.frames.removeLast() { track.held -= 1 } else { show(event, context) }
        case .givenUp:
            track.frames.removeLast()
            if let minDuration = options.minDuration, event.duration >= minDuration { givenUpLong += 1 }
        case .excludedSubtree, .hidden, .unknown:
            track.frames.removeLast()
        }
        if track.roots.last == depth { track.roots.removeLast() }
    }

    /// Frames from `depth` on are over without a return seen (the engine tells every return, so only
    /// after losses): forgotten.
    private func close(_ track: inout Track, from depth: Int) {
        while track.frames.count > depth {
            if case .held = track.frames.removeLast() { track.held -= 1 }
        }
        while let root = track.roots.last, root >= depth { track.roots.removeLast() }
    }

    /// `--follow-calls`: whether a call at `depth` is shown — a root's always (and it opens a root), a
    /// callee's within `below` levels of the innermost open root.
    private func isFollowed(_ event: Event, _ depth: Int, _ context: BatchContext, _ track: inout Track, below: Int) -> Bool {
        guard let function = context.functions[event.function], function.isCallee else {
            track.roots.append(depth)
            return true
        }
        guard let root = track.roots.last else { return false }
        return depth &- root <= below
    }

    /// Every held call of the thread, outermost first: a call inside them is long enough, so they are.
    private func release(_ track: inout Track, _ show: (Event, BatchContext) -> Void) {
        for i in track.frames.indices {
            guard case .held(let call) = track.frames[i] else { continue }
            track.frames[i] = .shown
            track.held -= 1
            call.values.withUnsafeBytes { raw in
                show(call.event, BatchContext(batch: placeholder, values: raw, functions: functions, heldDetail: call.detail))
            }
        }
    }

    /// The call event with a copy of its values and detail: the batch it came in is reused once rendered.
    /// A batch's values are written in the order of its events, so this event's run ends where the next
    /// event's that has values begins.
    private func hold(_ events: [Event], at index: Int, _ context: BatchContext) -> HeldCall {
        var event = events[index]
        var copy: [UInt8] = []
        if event.valueCount > 0 {
            let start = Int(event.values)
            var end = context.values.count
            for next in events[(index &+ 1)...] where next.valueCount > 0 {
                end = min(end, Int(next.values))
                break
            }
            if start < end { copy = Array(UnsafeRawBufferPointer(rebasing: context.values[start..<end])) }
            event.values = 0
        }
        let detail = context.detail(of: event)
        event.detail = -1
        return HeldCall(event: event, values: copy, detail: detail)
    }

    private func isExcluded(_ event: Event, _ context: BatchContext) -> Bool {
        guard let exclude = options.exclude, let i = context.functions.index(of: event, in: &excluded, { exclude.matches($0.name) }) else {
            return false
        }
        return excluded[i]
    }

    /// At the end: held calls that have lasted long enough by the last event seen are shown (still
    /// open: their returns never come, as for any call open at the end).
    func finish(_ show: (Event, BatchContext) -> Void) {
        guard let minDuration = options.minDuration else { return }
        for key in tracks.keys.sorted() {
            guard var track = tracks[key] else { continue }
            if let deepest = track.frames.lastIndex(where: {
                if case .held(let call) = $0 { return lastTimestamp &- call.event.timestamp >= minDuration }
                return false
            }) {
                track.frames.removeSubrange((deepest &+ 1)...)
                release(&track, show)
            }
            tracks[key] = track
        }
    }
}

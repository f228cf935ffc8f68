import Foundation

/// The bounded queue of event batches between the engine thread and the renderer: one lock and at most
/// one wake-up per batch, never per event. When the renderer falls behind, the engine either waits
/// (back-pressure: the tracee threads stopped at breakpoints, or inline pads in `--lossless` mode, wait
/// with it) or — where waiting would make the ring overflow anyway — hands over the batch without its
/// calls and returns, and the engine reports how many as lost. Never a silent drop.
public final class EventQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var batches: [EventBatch] = []
    /// Events queued, against `capacity`.
    private var queued = 0
    private let capacity: Int
    private var closed = false
    private var consumerWaiting = false
    /// Events dropped because the output stalled while nstrace was asked to stop: calls, returns, others.
    private var dropped = (calls: 0, returns: 0, others: 0)
    /// Batches rendered, emptied for the engine to fill again: their memory is reused rather than
    /// allocated (and faulted in) anew for every batch.
    private var spare: [EventBatch] = []

    public init(capacity: Int = 1 << 18) {
        self.capacity = capacity
    }

    /// Queues a batch. With `mayThin`, a batch that finds the queue full goes in without its calls,
    /// returns and unwound frames, whose numbers come back; otherwise the engine waits for room.
    @discardableResult
    public func push(_ batch: EventBatch, mayThin: Bool = false) -> (calls: Int, returns: Int, others: Int) {
        condition.lock()
        defer { condition.unlock() }
        var thinned = (calls: 0, returns: 0, others: 0)
        while queued >= capacity && !closed {
            if mayThin {
                thinned = batch.removeCallEvents()
                break
            }
            // Once a stop is asked for, detaching the tracee matters more than a stuck reader: wait
            // a little, then go in without the calls and returns, counted (a `lost` event at the end);
            // the rest (thread, exit and lost events) is kept.
            if StopRequest.pending != nil {
                if !condition.wait(until: Date().addingTimeInterval(0.05)), StopRequest.pending != nil {
                    let removed = batch.removeCallEvents()
                    dropped = (dropped.calls &+ removed.calls, dropped.returns &+ removed.returns, dropped.others &+ removed.others)
                    break
                }
            } else {
                condition.wait()
            }
        }
        if closed || batch.isEmpty { return thinned }
        batches.append(batch)
        queued += batch.events.count
        if consumerWaiting { condition.broadcast() }
        return thinned
    }

    /// Takes every batch queued, waiting for one; nil once closed and drained.
    public func popAll() -> [EventBatch]? {
        condition.lock()
        defer { condition.unlock() }
        while batches.isEmpty && !closed {
            consumerWaiting = true
            condition.wait()
            consumerWaiting = false
        }
        return takeQueued()
    }

    /// Takes every batch queued without waiting; nil when there is none.
    public func take() -> [EventBatch]? {
        condition.lock()
        defer { condition.unlock() }
        return takeQueued()
    }

    /// Under the lock: every batch queued, and room for the engine.
    private func takeQueued() -> [EventBatch]? {
        guard !batches.isEmpty else { return nil }
        let taken = batches
        batches = []
        queued = 0
        condition.broadcast()
        return taken
    }

    /// Gives rendered batches back, to be filled again.
    public func recycle(_ batches: [EventBatch]) {
        for batch in batches { batch.removeAll() }
        condition.lock()
        spare += batches.prefix(max(0, 8 - spare.count))
        condition.unlock()
    }

    /// An empty batch, reused when one is spare.
    public func emptyBatch() -> EventBatch {
        condition.lock()
        defer { condition.unlock() }
        return spare.popLast() ?? EventBatch()
    }

    /// No more events will come; the consumer drains what is left.
    public func close() {
        condition.lock()
        if dropped.calls | dropped.returns | dropped.others != 0 {
            let batch = EventBatch()
            var event = Event(kind: .lost, pid: 0, tid: 0, timestamp: now())
            event.detail = batch.add(.lost(LostEvents(calls: dropped.calls, returns: dropped.returns, others: dropped.others,
                                                      cause: "the output stalled while nstrace was stopping")))
            batch.append(event)
            batches.append(batch)
            dropped = (0, 0, 0)
        }
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

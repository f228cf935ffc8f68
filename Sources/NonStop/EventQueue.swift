import Foundation

/// The bounded queue between the engine thread and the renderer. When the renderer falls behind the
/// engine blocks (and with it, the tracee threads stopped at breakpoints): back-pressure, never a
/// silent drop.
public final class EventQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var buffer: [TraceEvent] = []
    private var head = 0
    private let capacity: Int
    private var closed = false

    public init(capacity: Int = 65_536) {
        self.capacity = capacity
        buffer.reserveCapacity(capacity)
    }

    /// Events dropped because the output stalled while nstrace was asked to stop.
    private var dropped = 0

    public func push(_ event: TraceEvent) {
        condition.lock()
        defer { condition.unlock() }
        while buffer.count - head >= capacity && !closed {
            // Once a stop is asked for, detaching the tracee matters more than a stuck reader: wait
            // a little, then count what is dropped (reported as a `lost` event at the end).
            if StopRequest.pending != nil {
                if !condition.wait(until: Date().addingTimeInterval(0.05)), StopRequest.pending != nil {
                    dropped += 1
                    return
                }
            } else {
                condition.wait()
            }
        }
        if !closed {
            buffer.append(event)
            condition.broadcast()
        }
    }

    /// A batch at once: one lock and one wake-up for all of it.
    public func push(contentsOf batch: [TraceEvent]) {
        condition.lock()
        defer { condition.unlock() }
        var next = batch[...]
        while !next.isEmpty {
            while buffer.count - head >= capacity && !closed {
                if StopRequest.pending != nil {
                    if !condition.wait(until: Date().addingTimeInterval(0.05)), StopRequest.pending != nil {
                        dropped += next.count
                        return
                    }
                } else {
                    condition.wait()
                }
            }
            if closed { return }
            let room = capacity - (buffer.count - head)
            buffer.append(contentsOf: next.prefix(room))
            next = next.dropFirst(room)
            condition.broadcast()
        }
    }

    /// Takes everything queued, waiting for at least one event; nil once closed and drained.
    public func popAll() -> [TraceEvent]? {
        condition.lock()
        defer { condition.unlock() }
        while buffer.count == head && !closed { condition.wait() }
        if buffer.count == head { return nil }
        // Handed over whole (no copy); the next batch grows a new buffer.
        let batch = head == 0 ? buffer : Array(buffer[head...])
        buffer = []
        head = 0
        condition.broadcast()
        return batch
    }

    /// No more events will come; the consumer drains what is left.
    public func close() {
        condition.lock()
        if dropped > 0 {
            buffer.append(TraceEvent(timestamp: now(), pid: 0, tid: 0, kind: .lost(LostEvents(calls: 0, returns: 0, others: dropped,
                                                                                       cause: "the output stalled while nstrace was stopping"))))
            dropped = 0
        }
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

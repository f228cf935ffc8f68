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

    public func push(_ event: TraceEvent) {
        condition.lock()
        while buffer.count - head >= capacity && !closed { condition.wait() }
        if !closed {
            buffer.append(event)
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Takes everything queued, waiting for at least one event; nil once closed and drained.
    public func popAll() -> [TraceEvent]? {
        condition.lock()
        defer { condition.unlock() }
        while buffer.count == head && !closed { condition.wait() }
        if buffer.count == head { return nil }
        let batch = Array(buffer[head...])
        buffer.removeAll(keepingCapacity: true)
        head = 0
        condition.broadcast()
        return batch
    }

    /// No more events will come; the consumer drains what is left.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

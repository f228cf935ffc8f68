import Foundation
import NonStop

/// `--folded FILE`: folded stacks, one `outer;…;inner weight` line per distinct stack of traced calls,
/// as flamegraph.pl, inferno and speedscope read them (and as stackcollapse-perf writes them).
///
/// A line's weight is what the innermost call of the stack spent in itself: its duration minus the
/// durations of the traced calls inside it (`--folded-weight calls`: how many calls had exactly that
/// stack). Self time, not total: a flame graph draws a frame as wide as the sum of the lines under
/// it, so a line weighted by its total time would count each callee's time again in every caller.
///
/// Stacks are followed per thread (per goroutine in Go, whose calls may move between threads), and
/// the same stack in several threads is one line. A frame closed without returning (longjmp, an
/// exception, thread exit) weighs up to its unwinding, as the engine measures it; a call still open at
/// the end weighs up to the last event seen, as the Chrome trace's incomplete calls do. Lines are
/// sorted, so that the same trace gives the same file.
public final class FoldedRenderer: Renderer {
    public enum Weight: String {
        case time, calls
    }

    /// A node of the tree of stacks: its function (number) under its parent.
    private struct Node {
        let parent: Int
        let function: Int32
        var weight: UInt64 = 0
    }

    private struct Open {
        let node: Int
        let start: UInt64
        var children: UInt64 = 0
    }

    private struct Edge: Hashable {
        let parent: Int
        let function: Int32
    }

    private let output: Output
    private let weight: Weight
    /// Node 0 is the root, above every thread's outermost calls.
    private var nodes = [Node(parent: -1, function: -1)]
    private var children: [Edge: Int] = [:]
    private var stacks: [CallKey: [Open]] = [:]
    /// By function number: its name as a frame (no `;`, which separates frames).
    private var names: [String] = []
    private var lastTimestamp: UInt64 = 0

    public init(output: Output, weight: Weight) {
        self.output = output
        self.weight = weight
    }

    public func render(_ event: Event, _ batch: BatchContext) {
        switch event.kind {
        case .call:
            lastTimestamp = max(lastTimestamp, event.timestamp)
            _ = batch.functions.index(of: event, in: &names) { $0.name.replacingOccurrences(of: ";", with: ":") }
            let key = CallKey(event)
            var stack = stacks.removeValue(forKey: key) ?? []
            let edge = Edge(parent: stack.last?.node ?? 0, function: event.function)
            let node: Int
            if let known = children[edge] {
                node = known
            } else {
                node = nodes.count
                nodes.append(Node(parent: edge.parent, function: event.function))
                children[edge] = node
            }
            if weight == .calls { nodes[node].weight &+= 1 }
            stack.append(Open(node: node, start: event.timestamp))
            stacks[key] = stack
        case .ret, .unwound:
            lastTimestamp = max(lastTimestamp, event.timestamp)
            let key = CallKey(event)
            guard var stack = stacks.removeValue(forKey: key), !stack.isEmpty else { return }
            close(&stack, duration: event.duration)
            if !stack.isEmpty { stacks[key] = stack }
        default:
            break
        }
    }

    private func close(_ stack: inout [Open], duration: UInt64) {
        let call = stack.removeLast()
        if weight == .time {
            nodes[call.node].weight &+= duration > call.children ? duration &- call.children : 0
            if !stack.isEmpty { stack[stack.count &- 1].children &+= duration }
        }
    }

    public func flush() {}

    public func finish() {
        for key in stacks.keys.sorted() {
            guard var stack = stacks[key] else { continue }
            while let innermost = stack.last {
                close(&stack, duration: lastTimestamp > innermost.start ? lastTimestamp &- innermost.start : 0)
            }
        }
        stacks = [:]
        for (stack, weight) in lines() {
            output.append(stack)
            output.byte(0x20)
            output.decimal(weight)
            output.newline()
        }
        output.close()
    }

    /// Each stack with a weight, by name (functions of one name in several modules are one frame).
    func lines() -> [(String, UInt64)] {
        var paths = [String](repeating: "", count: nodes.count)
        var byStack: [String: UInt64] = [:]
        // A node comes after its parent in `nodes`: its parent's path is made first.
        for i in nodes.indices.dropFirst() {
            let node = nodes[i]
            let index = Int(node.function)
            let name = index >= 0 && index < names.count ? names[index] : "?"
            paths[i] = node.parent == 0 ? name : paths[node.parent] + ";" + name
            if node.weight > 0 { byStack[paths[i], default: 0] &+= node.weight }
        }
        return byStack.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

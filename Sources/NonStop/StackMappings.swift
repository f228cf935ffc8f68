import Glibc

/// Which memory mapping a stack pointer is in. A frame is on the stack a thread runs on when its entry
/// stack pointer is in the mapping that holds the thread's stack pointer now: frames on different
/// mappings — a fiber's stack, a signal handler's sigaltstack, another thread's — never close each
/// other, however near their addresses. A mapping is not an identity to keep, only a range to test
/// against: its ends move (the main stack grows down; a new thread's stack block, read before glibc
/// made its guard page, is one mapping with the guard page of the stack above it, and two after).
/// /proc/PID/maps is read again only when a stack pointer falls outside every mapping known (a new
/// thread's stack, a fiber's): records come in runs on one stack, and the last one is checked first.
final class StackMappings {
    private let pid: pid_t
    /// Sorted by start; half-open [start, end).
    private var mappings: [(start: UInt64, end: UInt64)] = []
    private var last: (start: UInt64, end: UInt64) = (0, 0)
    /// CLOCK_MONOTONIC of the last read.
    private var readAt: UInt64 = 0
    /// Pages stack pointers were in that a read did not have: a stack unmapped since its records were
    /// written (a thread's that ended). Such a page is looked for again at most once per millisecond;
    /// any other unknown stack pointer gets a fresh read at once, so a stack mapped just after a read (a
    /// fiber's, a sigaltstack) is never taken for no stack at all.
    private var missing: Set<UInt64> = []

    init(pid: pid_t) { self.pid = pid }

    /// The mapping holding `sp`; empty when none is (frames then fall back to distance).
    func stack(of sp: UInt64) -> Range<UInt64> {
        if sp >= last.start, sp < last.end { return last.start..<last.end }
        if let found = lookup(sp) { return found }
        let page = sp >> 12, now = monotonicNow()
        if missing.contains(page), now &- readAt < 1_000_000 { return 0..<0 }
        readAt = now
        reload()
        if let found = lookup(sp) {
            missing.remove(page)
            return found
        }
        if missing.count >= 4096 { missing.removeAll() }
        missing.insert(page)
        return 0..<0
    }

    /// Reads the mappings again unless they were read in the last millisecond (threads exiting in a
    /// burst, an exit_group, read them once).
    func refresh() {
        let now = monotonicNow()
        guard now &- readAt >= 1_000_000 else { return }
        readAt = now
        reload()
    }

    /// After an exec: a new address space.
    func forget() {
        mappings = []
        last = (0, 0)
        missing = []
    }

    private func lookup(_ sp: UInt64) -> Range<UInt64>? {
        var low = 0, high = mappings.count
        while low < high {
            let mid = (low + high) / 2
            if mappings[mid].end <= sp { low = mid + 1 } else { high = mid }
        }
        guard low < mappings.count, mappings[low].start <= sp else { return nil }
        last = mappings[low]
        return last.start..<last.end
    }

    private func reload() {
        // A process that has ended has no mappings to read: what was read last stays.
        guard let maps = ProcFS.text("/proc/\(pid)/maps"), !maps.isEmpty else { return }
        mappings = maps.split(separator: "\n").compactMap { line in
            let range = line.prefix { $0 != " " }.split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
                  start < end else { return nil }
            return (start, end)
        }.sorted { $0.start < $1.start }
        last = (0, 0)
    }
}

/// Durations in power-of-two buckets, as bpftrace's hist() draws them, plus exact order statistics
/// (nstrace keeps every sample: a trace of millions of calls is millions of events anyway).
struct LatencyHistogram {
    private(set) var samples: [UInt64] = []
    private var sorted = true

    mutating func add(_ ns: UInt64) {
        if let last = samples.last, ns < last { sorted = false }
        samples.append(ns)
    }

    var count: Int { samples.count }
    var total: UInt64 { samples.reduce(0, &+) }
    var min: UInt64 { samples.min() ?? 0 }
    var max: UInt64 { samples.max() ?? 0 }
    var mean: Double { samples.isEmpty ? 0 : Double(total) / Double(samples.count) }

    /// The nearest-rank percentile (p in 0…100).
    mutating func percentile(_ p: Double) -> UInt64 {
        guard !samples.isEmpty else { return 0 }
        if !sorted {
            samples.sort()
            sorted = true
        }
        let rank = Int((p / 100 * Double(samples.count)).rounded(.up))
        return samples[Swift.max(0, Swift.min(samples.count - 1, rank - 1))]
    }

    /// (lower bound, count) for each power-of-two bucket from the smallest to the largest used.
    var buckets: [(lower: UInt64, count: Int)] {
        guard !samples.isEmpty else { return [] }
        var counts = [Int](repeating: 0, count: 65)
        for s in samples { counts[s == 0 ? 0 : 64 - s.leadingZeroBitCount] += 1 }
        guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 }) else { return [] }
        return (first...last).map { i in (i == 0 ? 0 : UInt64(1) << UInt64(i - 1), counts[i]) }
    }

    /// bpftrace's text histogram: `[lo, hi)  count |@@@@     |`.
    func drawn(width: Int = 40) -> [String] {
        let rows = buckets
        let peak = rows.map(\.count).max() ?? 1
        return rows.map { row in
            let hi = row.lower == 0 ? 1 : row.lower * 2
            let range = "[\(Self.compact(row.lower)), \(Self.compact(hi)))"
            let bar = String(repeating: "@", count: Int((Double(row.count) / Double(peak) * Double(width)).rounded(.up)))
            return range.padding(toLength: 18, withPad: " ", startingAt: 0) + String(row.count).leftPadded(to: 8)
                + " |" + bar.padding(toLength: width, withPad: " ", startingAt: 0) + "|"
        }
    }

    /// 512, 1K, 64M: bucket bounds as bpftrace writes them.
    static func compact(_ value: UInt64) -> String {
        for (suffix, unit) in [("G", UInt64(1) << 30), ("M", UInt64(1) << 20), ("K", UInt64(1) << 10)] where value >= unit && value % unit == 0 {
            return "\(value / unit)\(suffix)"
        }
        return String(value)
    }
}

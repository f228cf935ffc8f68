/// Durations in log-linear buckets (each power of two split in 32), so memory stays flat however long
/// the trace: min, max, count and total are exact; percentiles are within ~3% (the bucket's width);
/// the drawn histogram merges the sub-buckets into bpftrace's power-of-two rows.
struct LatencyHistogram {
    private static let subBits = 5
    private var counts = [Int](repeating: 0, count: 64 << subBits)
    private(set) var count = 0
    private(set) var total: UInt64 = 0
    private(set) var min: UInt64 = .max
    private(set) var max: UInt64 = 0

    mutating func add(_ ns: UInt64) {
        counts[Self.index(of: ns)] += 1
        count += 1
        total &+= ns
        min = Swift.min(min, ns)
        max = Swift.max(max, ns)
    }

    var mean: Double { count == 0 ? 0 : Double(total) / Double(count) }

    /// Another histogram's values added to this one's.
    mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for i in counts.indices { counts[i] += other.counts[i] }
        count += other.count
        total &+= other.total
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    /// Values below 2^subBits get a bucket each; above, the top subBits+1 significant bits choose.
    private static func index(of value: UInt64) -> Int {
        let bits = 64 - value.leadingZeroBitCount
        guard bits > subBits else { return Int(value) }
        let shift = bits - subBits - 1
        let sub = Int((value >> UInt64(shift)) & ((1 << UInt64(subBits)) - 1))
        return ((shift + 1) << subBits) + sub
    }

    private static func lowerBound(of index: Int) -> UInt64 {
        let group = index >> subBits, sub = UInt64(index & ((1 << subBits) - 1))
        guard group > 0 else { return UInt64(index) }
        let shift = UInt64(group - 1)
        return ((1 << UInt64(subBits)) | sub) << shift
    }

    /// The nearest-rank percentile (p in 0…100): the middle of its bucket, clamped to min and max.
    func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = Swift.max(1, Int((p / 100 * Double(count)).rounded(.up)))
        var seen = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank {
                let low = Self.lowerBound(of: i), high = Self.lowerBound(of: i + 1)
                return Swift.min(max, Swift.max(min, low + (high - low) / 2))
            }
        }
        return max
    }

    /// (lower bound, count) for each power-of-two bucket from the smallest to the largest used.
    var buckets: [(lower: UInt64, count: Int)] {
        guard count > 0 else { return [] }
        var rows = [Int](repeating: 0, count: 65)
        for (i, c) in counts.enumerated() where c > 0 {
            let low = Self.lowerBound(of: i)
            rows[low == 0 ? 0 : 64 - low.leadingZeroBitCount] += c
        }
        guard let first = rows.firstIndex(where: { $0 > 0 }), let last = rows.lastIndex(where: { $0 > 0 }) else { return [] }
        return (first...last).map { i in (i == 0 ? 0 : UInt64(1) << UInt64(i - 1), rows[i]) }
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

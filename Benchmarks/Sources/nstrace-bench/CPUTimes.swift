import Foundation

/// The machine's CPU time so far, from the `cpu` line of /proc/stat (in USER_HZ ticks): on a VM the
/// `steal` column is time the hypervisor gave the vCPUs to someone else, which ptrace round trips
/// (a sleep and a wake-up each) feel more than anything else does.
struct CPUTimes {
    let steal: UInt64
    let total: UInt64

    static func now() -> CPUTimes? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return nil }
        // user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user's).
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 8 else { return nil }
        return CPUTimes(steal: fields[7], total: fields.prefix(8).reduce(0, +))
    }

    /// The steal over the CPU time that passed since `earlier`, in percent.
    func stealPercent(since earlier: CPUTimes) -> Double {
        let total = self.total &- earlier.total
        return total == 0 ? 0 : Double(steal &- earlier.steal) / Double(total) * 100
    }
}

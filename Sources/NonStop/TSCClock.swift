import CShim
import Glibc

/// Turns the time-stamp counter the pads record into CLOCK_MONOTONIC nanoseconds, the clock every
/// other event of the engine uses. The rate is measured against the kernel's clock from the first
/// sample on, so it only gets better as the trace goes on (this machine's TSC is invariant:
/// constant_tsc, nonstop_tsc).
struct TSCClock {
    private let tsc0: UInt64
    private let nanoseconds0: UInt64
    private var nanosecondsPerTick: Double

    init() {
        tsc0 = nst_rdtsc()
        nanoseconds0 = monotonicNow()
        // A first estimate over a few milliseconds; refined at every drain.
        var pause = timespec(tv_sec: 0, tv_nsec: 5_000_000)
        nanosleep(&pause, nil)
        nanosecondsPerTick = 1
        refine()
    }

    /// Measures the rate again over everything since the start.
    mutating func refine() {
        let ticks = nst_rdtsc() &- tsc0, nanoseconds = monotonicNow() &- nanoseconds0
        if ticks > 0, nanoseconds > 0 { nanosecondsPerTick = Double(nanoseconds) / Double(ticks) }
    }

    /// CLOCK_MONOTONIC nanoseconds at `tsc` (a stamp from a pad: untrusted, so no arithmetic traps).
    func nanoseconds(at tsc: UInt64) -> UInt64 {
        let delta = Double(Int64(bitPattern: tsc &- tsc0)) * nanosecondsPerTick
        guard delta.isFinite, abs(delta) < 1e18 else { return nanoseconds0 }
        return nanoseconds0 &+ UInt64(bitPattern: Int64(delta))
    }

    /// TSC ticks in `nanoseconds`.
    func ticks(in nanoseconds: UInt64) -> UInt64 {
        let ticks = Double(nanoseconds) / nanosecondsPerTick
        return ticks.isFinite && ticks < 1.8e19 ? UInt64(ticks) : UInt64.max
    }
}

import CShim
import Foundation
import Glibc

/// Wakes the engine thread out of waitpid while inline pads may be writing records, so the ring is read
/// even when no thread stops: SIGUSR2, whose handler does nothing and does not restart the call, so
/// waitpid returns EINTR, the engine drains, and waits again. As seldom as the rings allow: a wake-up
/// lands on a CPU the traced program is using, and on a small machine that costs it more than the
/// reading does (measured: every 2 ms took 40% of a redis server's throughput). The engine sets the
/// period from how fast the rings fill.
///
/// It also keeps the rings' heartbeat: pads that wait for nstrace (lossless mode, r_brk) wait only
/// while nstrace is alive, however busy the engine is — and stop waiting a second after it is gone.
final class DrainTicker: @unchecked Sendable {
    static let shortest: useconds_t = 1_000
    /// A bucket of the default ring holds 16 Ki one-slot records: a single thread making a few hundred
    /// thousand traced calls a second fills it in about 40 ms, so a burst after a quiet spell (when
    /// the period has grown to its longest) must be read within that. (At 100 ms, a redis server
    /// traced with -c lost ~1 % of its calls at the start of each benchmark run.)
    static let longest: useconds_t = 10_000
    private let lock = NSLock()
    private var running = true
    private var rings: [EventRing] = []
    private var period: useconds_t = 20_000

    /// Read the rings more often or less, from how full the busiest bucket got since the last time:
    /// a quarter full, at once as often as can be (a burst has begun); an eighth, twice as often; a
    /// thirty-second or less, half as often.
    func adjust(fill: Double) {
        lock.lock()
        if fill > 0.25 {
            period = DrainTicker.shortest
        } else if fill > 0.125 {
            period = max(DrainTicker.shortest, period / 2)
        } else if fill < 1.0 / 32 {
            period = min(DrainTicker.longest, period * 2)
        }
        lock.unlock()
    }

    func keepAlive(_ ring: EventRing) {
        lock.lock()
        rings.append(ring)
        lock.unlock()
    }

    /// Call on the engine thread: it is the one woken.
    init() {
        nst_ensure_kick_handler()
        let target = nst_gettid()
        let pid = getpid()
        Thread.detachNewThread { [self] in
            var sleep = DrainTicker.shortest
            while true {
                usleep(sleep)
                lock.lock()
                let go = running
                if go { for ring in rings { ring.beat() } }
                sleep = period
                lock.unlock()
                if !go { return }
                _ = nst_tgkill(pid, target, SIGUSR2)
            }
        }
    }

    /// No more wake-ups or heartbeats (returns once the last heartbeat is written).
    func stop() {
        lock.lock()
        running = false
        rings = []
        lock.unlock()
    }
}

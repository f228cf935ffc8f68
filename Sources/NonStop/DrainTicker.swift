import CShim
import Foundation
import Glibc

/// Wakes the engine thread out of waitpid every couple of milliseconds while inline pads may be writing
/// records, so the ring is read even when no thread stops. SIGUSR2, whose handler does nothing and
/// does not restart the call: waitpid returns EINTR, the engine drains, and waits again.
///
/// It also keeps the rings' heartbeat: pads that wait for nstrace (lossless mode, r_brk) wait only
/// while nstrace is alive, however busy the engine is — and stop waiting a second after it is gone.
final class DrainTicker: @unchecked Sendable {
    static let period: useconds_t = 2_000
    private let lock = NSLock()
    private var running = true
    private var rings: [EventRing] = []

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
            while true {
                usleep(DrainTicker.period)
                lock.lock()
                let go = running
                if go { for ring in rings { ring.beat() } }
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

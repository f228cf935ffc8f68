import CShim
import Foundation
import Glibc

/// How nstrace is asked to stop: SIGINT, SIGTERM, SIGHUP, `--duration`, or a failure to write output.
/// The handlers only set a flag; a watcher thread then keeps nudging the engine thread with SIGUSR2
/// (whose handler does nothing and does not restart system calls) until the engine has seen the flag,
/// so a blocking waitpid always returns however the signal and the call raced.
public enum StopRequest {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var engineThread: pid_t = 0
    nonisolated(unsafe) private static var acknowledged = false

    /// Installs the handlers: first thing, before anything that takes time. A stop signal that came
    /// earlier would be lost — ignored, as in a background job or under nohup — or would end nstrace
    /// by its default action; one that comes now, while the symbols are read or the process attached,
    /// is seen by the engine as soon as it runs, and it detaches at once.
    public static func installHandlers() {
        nst_install_stop_handlers()
    }

    /// Starts the watcher (and the `--duration` clock). Call once, before tracing.
    public static func install(duration: Double?) {
        let started = Date()
        Thread.detachNewThread {
            while true {
                usleep(20_000)
                if let duration, nst_stop_signal() == 0, Date().timeIntervalSince(started) >= duration {
                    nst_request_stop(-1)
                }
                guard nst_stop_signal() != 0 else { continue }
                lock.lock()
                let target = engineThread, done = acknowledged
                lock.unlock()
                if done { return }
                if target != 0 { _ = nst_tgkill(getpid(), target, SIGUSR2) }
            }
        }
    }

    /// Asks for a stop from inside nstrace (output failed, say).
    public static func request() { nst_request_stop(-1) }

    /// The signal that asked to stop (-1 for a request from within), or nil.
    public static var pending: Int32? {
        let s = nst_stop_signal()
        return s == 0 ? nil : s
    }

    static func registerEngineThread() {
        lock.lock()
        engineThread = nst_gettid()
        lock.unlock()
    }

    static func acknowledge() {
        lock.lock()
        acknowledged = true
        lock.unlock()
    }
}

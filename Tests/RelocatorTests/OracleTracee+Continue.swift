import CShim
import Foundation
import Glibc
import OracleSupport

extension OracleTracee {
    /// How a run on to a breakpoint ended.
    enum ContinueStop: Equatable {
        /// At the breakpoint, about to execute `address`.
        case reached
        /// A signal first: a fault, with siginfo's code and address.
        case signal(Int32, code: Int32, address: UInt64)
        /// Still running at the deadline (code under test looping): stopped there.
        case timedOut
    }

    /// Lets the child run (suppressing the signal it stopped with last) until it is about to execute
    /// `address` — a hardware breakpoint, so the code under test is not changed — or until a signal
    /// stops it. A pad of a hundred instructions costs one stop instead of a hundred single-steps (this
    /// VM ignores the branch-step flag PTRACE_SINGLEBLOCK needs). Code that runs past `deadline`
    /// seconds is stopped with SIGSTOP, which only this sends.
    func continueUntil(_ address: UInt64?, deadline: TimeInterval) throws -> ContinueStop {
        let alarm = StopAlarm(pid: pid)
        DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { alarm.fire() }
        var stop = try resume(to: address)
        if alarm.disarm() {
            if case .signal(SIGSTOP, _, _) = stop { return .timedOut }
            // It stopped by itself just as the alarm went off: the SIGSTOP is still pending. Let the
            // child take it now, which it does before it runs another instruction.
            let drained = try resume(to: nil)
            guard case .signal(SIGSTOP, _, _) = drained else {
                throw TraceeError(operation: "take the deadline's SIGSTOP (the child stopped with \(drained))", pid: pid, errno: EINVAL)
            }
        }
        if case .signal(SIGTRAP, Self.hardwareBreakpointCode, _) = stop { stop = .reached }
        return stop
    }

    private func resume(to address: UInt64?) throws -> ContinueStop {
        var signal: Int32 = 0, code: Int32 = 0
        var at: UInt64 = 0
        switch oracle_continue_to(pid, address ?? 0, &signal, &code, &at) {
        case 0:
            return .signal(signal, code: code, address: at)
        case 1:
            throw TraceeError(operation: "child died while running on to 0x\(String(address ?? 0, radix: 16))", pid: pid, errno: ECHILD)
        default:
            throw TraceeError(operation: "continue to a hardware breakpoint", pid: pid, errno: nst_errno())
        }
    }

    /// siginfo's si_code for a hardware breakpoint (TRAP_HWBKPT).
    static let hardwareBreakpointCode: Int32 = 4
}

/// Sends SIGSTOP to the child once, unless disarmed first; says whether it did.
private final class StopAlarm: @unchecked Sendable {
    private let pid: pid_t
    private let lock = NSLock()
    private var armed = true
    private var fired = false

    init(pid: pid_t) { self.pid = pid }

    func fire() {
        lock.lock()
        defer { lock.unlock() }
        guard armed else { return }
        fired = true
        kill(pid, SIGSTOP)
    }

    /// Whether it fired.
    func disarm() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        armed = false
        return fired
    }
}

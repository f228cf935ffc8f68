import CShim
import Glibc

/// The ptrace requests nstrace makes, one wrapper each. Every wrapper retries EINTR and throws a
/// `TraceError` carrying the errno and the thread; ESRCH (thread gone) is for the caller to handle.
enum Ptrace {
    static let seizeRequest: Int32 = 0x4206
    static let interruptRequest: Int32 = 0x4207
    static let listenRequest: Int32 = 0x4208
    static let contRequest: Int32 = 7
    static let singleStepRequest: Int32 = 9
    static let detachRequest: Int32 = 17
    static let getRegsRequest: Int32 = 12
    static let setRegsRequest: Int32 = 13
    static let getFPRegsRequest: Int32 = 14
    static let setOptionsRequest: Int32 = 0x4200
    static let getEventMsgRequest: Int32 = 0x4201
    static let getSigInfoRequest: Int32 = 0x4202
    static let setSigInfoRequest: Int32 = 0x4203
    static let syscallRequest: Int32 = 24
    static let getSyscallInfoRequest: Int32 = 0x420e

    struct Options: OptionSet {
        let rawValue: UInt
        static let traceSysGood = Options(rawValue: 0x01)
        static let traceFork = Options(rawValue: 0x02)
        static let traceVFork = Options(rawValue: 0x04)
        static let traceClone = Options(rawValue: 0x08)
        static let traceExec = Options(rawValue: 0x10)
        static let traceVForkDone = Options(rawValue: 0x20)
        static let traceExit = Options(rawValue: 0x40)
        static let exitKill = Options(rawValue: 0x100000)
    }

    enum Event: Int32 {
        case fork = 1, vfork = 2, clone = 3, exec = 4, vforkDone = 5, exit = 6, stop = 128

        /// Whether the task this event reports (`child`, its event message) is a new thread of `pid`:
        /// a clone with CLONE_THREAD. A clone without it is a new process, as a fork is. A child already
        /// gone from /proc, with nothing left to tell by, is taken for a thread.
        func madeThread(_ child: pid_t, of pid: pid_t) -> Bool {
            self == .clone && (ProcFS.threadGroup(of: child) ?? pid) == pid
        }
    }

    @discardableResult
    private static func call(_ name: String, _ request: Int32, _ tid: pid_t, _ addr: UInt = 0, _ data: UInt = 0)
        throws(TraceError) -> Int
    {
        while true {
            let rc = nst_ptrace(request, tid, addr, data)
            if rc != -1 { return rc }
            let e = nst_errno()
            if e == EINTR { continue }
            throw TraceError(name, tid: tid, errno: e)
        }
    }

    /// The thread's seccomp filter number `index` (0 the newest) as raw classic BPF into `buffer`; how
    /// many instructions. ENOENT past the last filter.
    static func seccompFilter(_ tid: pid_t, index: Int, into buffer: UnsafeMutableRawBufferPointer) throws(TraceError) -> Int {
        try call("PTRACE_SECCOMP_GET_FILTER", 0x420c, tid, UInt(index), UInt(bitPattern: buffer.baseAddress))
    }

    static func seize(_ tid: pid_t, options: Options) throws(TraceError) {
        try call("PTRACE_SEIZE", seizeRequest, tid, 0, options.rawValue)
    }

    static func interrupt(_ tid: pid_t) throws(TraceError) {
        try call("PTRACE_INTERRUPT", interruptRequest, tid)
    }

    /// Keeps a tracee in group-stop while still letting it report (SIGCONT, new events).
    static func listen(_ tid: pid_t) throws(TraceError) {
        try call("PTRACE_LISTEN", listenRequest, tid)
    }

    static func cont(_ tid: pid_t, signal: Int32 = 0) throws(TraceError) {
        try call("PTRACE_CONT", contRequest, tid, 0, UInt(signal))
    }

    /// As `cont`, but the thread stops again at its next syscall entry or exit (`-S`).
    static func syscall(_ tid: pid_t, signal: Int32 = 0) throws(TraceError) {
        try call("PTRACE_SYSCALL", syscallRequest, tid, 0, UInt(signal))
    }

    static func singleStep(_ tid: pid_t, signal: Int32 = 0) throws(TraceError) {
        try call("PTRACE_SINGLESTEP", singleStepRequest, tid, 0, UInt(signal))
    }

    static func detach(_ tid: pid_t, signal: Int32 = 0) throws(TraceError) {
        try call("PTRACE_DETACH", detachRequest, tid, 0, UInt(signal))
    }

    static func setOptions(_ tid: pid_t, _ options: Options) throws(TraceError) {
        try call("PTRACE_SETOPTIONS", setOptionsRequest, tid, 0, options.rawValue)
    }

    /// A request that fills (get) or hands over (set) a C struct through `data`.
    private static func transfer<T>(_ name: String, _ request: Int32, _ tid: pid_t, _ value: inout T) throws(TraceError) {
        _ = try withUnsafeMutablePointer(to: &value) { (p) throws(TraceError) in
            try call(name, request, tid, 0, UInt(bitPattern: p))
        }
    }

    static func getRegs(_ tid: pid_t) throws(TraceError) -> user_regs_struct {
        var regs = user_regs_struct()
        try transfer("PTRACE_GETREGS", getRegsRequest, tid, &regs)
        return regs
    }

    static func setRegs(_ tid: pid_t, _ regs: user_regs_struct) throws(TraceError) {
        var copy = regs
        try transfer("PTRACE_SETREGS", setRegsRequest, tid, &copy)
    }

    static func getFPRegs(_ tid: pid_t) throws(TraceError) -> user_fpregs_struct {
        var regs = user_fpregs_struct()
        try transfer("PTRACE_GETFPREGS", getFPRegsRequest, tid, &regs)
        return regs
    }

    static func getSigInfo(_ tid: pid_t) throws(TraceError) -> siginfo_t {
        var info = siginfo_t()
        try transfer("PTRACE_GETSIGINFO", getSigInfoRequest, tid, &info)
        return info
    }

    static func setSigInfo(_ tid: pid_t, _ info: siginfo_t) throws(TraceError) {
        var copy = info
        try transfer("PTRACE_SETSIGINFO", setSigInfoRequest, tid, &copy)
    }

    /// PTRACE_GET_SYSCALL_INFO (Linux 5.3): which side of a syscall a syscall-stop is, and its number
    /// and arguments or its result. Read from the kernel's `struct ptrace_syscall_info` by offset.
    static func syscallInfo(_ tid: pid_t) throws(TraceError) -> SyscallInfo {
        var raw: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let size = MemoryLayout.size(ofValue: raw)
        _ = try withUnsafeMutableBytes(of: &raw) { (p) throws(TraceError) in
            try call("PTRACE_GET_SYSCALL_INFO", getSyscallInfoRequest, tid, UInt(size), UInt(bitPattern: p.baseAddress))
        }
        return withUnsafeBytes(of: raw) { bytes in
            func word(_ offset: Int) -> UInt64 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
            switch bytes[0] {
            case 1, 3:  // PTRACE_SYSCALL_INFO_ENTRY, _SECCOMP: nr at 24, args at 32
                return .entry(number: word(24), arguments: (0..<6).map { word(32 + 8 * $0) })
            case 2:  // PTRACE_SYSCALL_INFO_EXIT: rval at 24, is_error at 32
                return .exit(value: Int64(bitPattern: word(24)), isError: bytes[32] != 0)
            default:
                return .none
            }
        }
    }

    static func eventMessage(_ tid: pid_t) throws(TraceError) -> UInt {
        var message: UInt = 0
        try transfer("PTRACE_GETEVENTMSG", getEventMsgRequest, tid, &message)
        return message
    }
}

/// Where a thread in a syscall-stop is.
enum SyscallInfo {
    case entry(number: UInt64, arguments: [UInt64])
    case exit(value: Int64, isError: Bool)
    /// Not a syscall-stop after all.
    case none
}

/// What waitpid said about one thread.
enum WaitResult {
    case exited(tid: pid_t, status: Int32)
    case killed(tid: pid_t, signal: Int32, coreDumped: Bool)
    /// A signal-delivery-stop (or a trap: SIGTRAP from int3 or a single step).
    case signalStop(tid: pid_t, signal: Int32)
    /// A ptrace event stop; `signal` is WSTOPSIG (SIGTRAP, or the job-control signal of a group-stop).
    case eventStop(tid: pid_t, event: Ptrace.Event, signal: Int32)
    /// A syscall-entry or -exit stop (PTRACE_SYSCALL with TRACESYSGOOD: SIGTRAP|0x80). Only threads
    /// resumed with PTRACE_SYSCALL (`-S`) make them; no signal is delivered from one.
    case syscallStop(tid: pid_t)

    /// A SIGTRAP signal-delivery-stop: an int3's (or a step's, or a SIGTRAP someone sent).
    var isTrap: Bool {
        if case .signalStop(_, SIGTRAP) = self { return true }
        return false
    }

    var isEnd: Bool { ending != nil }

    /// How the thread ended, when this is its end.
    var ending: ExitStatus? {
        switch self {
        case .exited(_, let status): .exited(status)
        case .killed(_, let signal, let core): .killed(signal: signal, coreDumped: core)
        default: nil
        }
    }

    var tid: pid_t {
        switch self {
        case .exited(let t, _), .killed(let t, _, _), .signalStop(let t, _), .eventStop(let t, _, _), .syscallStop(let t):
            return t
        }
    }
}

enum Wait {
    static let all: Int32 = 0x4000_0000  // __WALL: threads and children alike
    static let noHang: Int32 = 1

    /// Waits for `tid` (or any tracee with -1). nil when interrupted by a signal to nstrace (so the
    /// engine can look at its stop flag) or, with `noHang`, when nothing is ready.
    static func next(_ tid: pid_t = -1, flags: Int32 = 0) throws(TraceError) -> WaitResult? {
        var status: Int32 = 0
        let rc = waitpid(tid, &status, all | flags)
        if rc == 0 { return nil }
        if rc < 0 {
            let e = nst_errno()
            if e == EINTR { return nil }
            throw TraceError("waitpid", tid: tid, errno: e)
        }
        return decode(rc, status)
    }

    static func decode(_ tid: pid_t, _ status: Int32) -> WaitResult {
        if nst_wifexited(status) { return .exited(tid: tid, status: nst_wexitstatus(status)) }
        if nst_wifsignaled(status) {
            return .killed(tid: tid, signal: nst_wtermsig(status), coreDumped: nst_wcoredump(status))
        }
        let signal = nst_wstopsig(status)
        let event = (status >> 16) & 0xff
        if event != 0, let e = Ptrace.Event(rawValue: event) {
            return .eventStop(tid: tid, event: e, signal: signal)
        }
        if signal == SIGTRAP | 0x80 { return .syscallStop(tid: tid) }
        return .signalStop(tid: tid, signal: signal)
    }
}

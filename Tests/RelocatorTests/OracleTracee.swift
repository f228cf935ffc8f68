import CShim
import Foundation
import Glibc
import OracleSupport

/// A ptrace request, wait or memory access on the oracle's child that failed, with its errno and pid.
struct TraceeError: Error, CustomStringConvertible {
    let operation: String
    let pid: pid_t
    let errno: Int32

    var description: String { "\(operation) (pid \(pid)): \(String(cString: strerror(errno)))" }
}

/// How a single-step ended.
enum StepStop: Equatable, CustomStringConvertible {
    /// The single-step trap: the instruction completed (for a rep string instruction, one iteration).
    case stepped
    /// A signal reported before the instruction completed: a fault, with siginfo's code and address.
    case signal(Int32, code: Int32, address: UInt64)

    var description: String {
        switch self {
        case .stepped: return "completed"
        case .signal(let s, let code, let address):
            return "\(String(cString: strsignal(s))) (signal \(s), code \(code), address 0x\(String(address, radix: 16)))"
        }
    }
}

/// The oracle's child process, traced from the one thread that spawned it (every ptrace request must
/// come from the tracer thread). It is killed by `kill()`, by a watchdog when the oracle runs past its
/// deadline, and by the kernel if the test process dies (PTRACE_O_EXITKILL).
final class OracleTracee {
    let pid: pid_t
    private var memory: Int32 = -1
    private var alive = true
    private let watchdog: DispatchWorkItem

    private enum Request {
        static let cont: Int32 = 7
        static let singleStep: Int32 = 9
        static let getRegs: Int32 = 12
        static let setRegs: Int32 = 13
        static let setOptions: Int32 = 0x4200
        static let getSigInfo: Int32 = 0x4202
        static let getRegSet: Int32 = 0x4204
        static let setRegSet: Int32 = 0x4205
    }
    private static let exitKill: UInt = 0x100000
    private static let xstateNote: UInt = 0x202  // NT_X86_XSTATE

    /// Starts `executable` traced and pinned to `cpu`, lets it run until it stops itself with SIGSTOP,
    /// and leaves it there. The child is SIGKILLed when `deadline` seconds have passed, whatever it is
    /// doing, so that no wait below can hang the test.
    init(executable: String, arguments: [String], cpu: Int32, deadline: TimeInterval) throws {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let pid = oracle_spawn_traced(executable, argv, cpu)
        guard pid > 0 else { throw TraceeError(operation: "fork", pid: 0, errno: nst_errno()) }
        self.pid = pid
        let watchdog = DispatchWorkItem { _ = Glibc.kill(pid, SIGKILL) }
        self.watchdog = watchdog
        DispatchQueue.global().asyncAfter(deadline: .now() + deadline, execute: watchdog)
        do {
            try expectStop(SIGTRAP, "stop at exec")
            try ptrace("PTRACE_SETOPTIONS", Request.setOptions, 0, Self.exitKill)
            try ptrace("PTRACE_CONT", Request.cont)
            try expectStop(SIGSTOP, "stop itself once set up")
            memory = open("/proc/\(pid)/mem", O_RDWR | O_CLOEXEC)
            guard memory >= 0 else { throw TraceeError(operation: "open /proc/\(pid)/mem", pid: pid, errno: errno) }
        } catch {
            self.kill()
            throw error
        }
    }

    deinit { kill() }

    /// Kills and reaps the child; safe to call more than once.
    func kill() {
        watchdog.cancel()
        if memory >= 0 { close(memory); memory = -1 }
        guard alive else { return }
        alive = false
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, __WALL) == pid || errno == EINTR {
            if nst_wifexited(status) || nst_wifsignaled(status) { break }
        }
    }

    // MARK: Registers

    func registers() throws -> user_regs_struct {
        var regs = user_regs_struct()
        try withUnsafeMutablePointer(to: &regs) { try ptrace("PTRACE_GETREGS", Request.getRegs, 0, UInt(bitPattern: $0)) }
        return regs
    }

    func setRegisters(_ regs: user_regs_struct) throws {
        var regs = regs
        try withUnsafeMutablePointer(to: &regs) { try ptrace("PTRACE_SETREGS", Request.setRegs, 0, UInt(bitPattern: $0)) }
    }

    /// The XSAVE area in the standard layout (x87, SSE, AVX, AVX-512 ...), as NT_X86_XSTATE gives it.
    func extendedState() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 16384)
        let size = try buffer.withUnsafeMutableBytes { raw -> Int in
            var vector = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            try withUnsafeMutablePointer(to: &vector) {
                try ptrace("PTRACE_GETREGSET", Request.getRegSet, Self.xstateNote, UInt(bitPattern: $0))
            }
            return vector.iov_len
        }
        return Array(buffer.prefix(size))
    }

    func setExtendedState(_ state: [UInt8]) throws {
        var state = state
        try state.withUnsafeMutableBytes { raw in
            var vector = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            try withUnsafeMutablePointer(to: &vector) {
                try ptrace("PTRACE_SETREGSET", Request.setRegSet, Self.xstateNote, UInt(bitPattern: $0))
            }
        }
    }

    // MARK: Execution

    /// One PTRACE_SINGLESTEP, suppressing whatever signal the child stopped with last.
    func singleStep() throws -> StepStop {
        try ptrace("PTRACE_SINGLESTEP", Request.singleStep)
        let signal = try waitForStop("single-step")
        if signal == SIGTRAP { return .stepped }
        var info = siginfo_t()
        try withUnsafeMutablePointer(to: &info) { try ptrace("PTRACE_GETSIGINFO", Request.getSigInfo, 0, UInt(bitPattern: $0)) }
        return .signal(signal, code: nst_siginfo_code(&info), address: UInt64(nst_siginfo_addr(&info)))
    }

    // MARK: Memory, through /proc/PID/mem: one call per range

    /// The bytes at `address`, or nil when any of them is not mapped.
    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { raw in
                pread(memory, raw.baseAddress.map { $0 + done }, count - done, off_t(Int64(bitPattern: address &+ UInt64(done))))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            done += n
        }
        return bytes
    }

    func write(_ bytes: [UInt8], at address: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                pwrite(memory, raw.baseAddress.map { $0 + done }, bytes.count - done, off_t(Int64(bitPattern: address &+ UInt64(done))))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw TraceeError(operation: "write \(bytes.count) bytes at 0x\(String(address, radix: 16))", pid: pid,
                                  errno: n < 0 ? errno : EIO)
            }
            done += n
        }
    }

    /// The child's mappings now, from /proc/PID/maps.
    func mappings() throws -> [Mapping] {
        let text = String(decoding: try Self.readToEnd("/proc/\(pid)/maps"), as: UTF8.self)
        return text.split(separator: "\n").compactMap(Mapping.init)
    }

    /// A /proc file, read to its end: its size says 0, so Foundation's readers stop after one buffer.
    private static func readToEnd(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TraceeError(operation: "open \(path)", pid: 0, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw TraceeError(operation: "read \(path)", pid: 0, errno: errno) }
            if n == 0 { return out }
            out += chunk[..<n]
        }
    }

    // MARK: ptrace and waitpid, each in one place

    private func ptrace(_ name: String, _ request: Int32, _ address: UInt = 0, _ data: UInt = 0) throws {
        while nst_ptrace(request, pid, address, data) == -1 {
            let e = nst_errno()
            if e != EINTR { throw TraceeError(operation: name, pid: pid, errno: e) }
        }
    }

    /// The signal of the next ptrace stop. The child exiting instead is an error: every later step
    /// would be meaningless.
    private func waitForStop(_ what: String) throws -> Int32 {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, __WALL)
            if rc == pid { break }
            if rc < 0 && errno == EINTR { continue }
            throw TraceeError(operation: "waitpid after \(what)", pid: pid, errno: rc < 0 ? errno : ECHILD)
        }
        if nst_wifstopped(status) { return nst_wstopsig(status) }
        // Reaped: its pid may be reused, so the watchdog must not fire at it any more.
        alive = false
        watchdog.cancel()
        let how = nst_wifexited(status) ? "exited with \(nst_wexitstatus(status))" : "was killed by signal \(nst_wtermsig(status))"
        throw TraceeError(operation: "child \(how) during \(what) (the watchdog kills it after the deadline)",
                          pid: pid, errno: ECHILD)
    }

    private func expectStop(_ signal: Int32, _ what: String) throws {
        let got = try waitForStop(what)
        guard got == signal else {
            throw TraceeError(operation: "\(what): stopped with signal \(got), expected \(signal)", pid: pid, errno: EINVAL)
        }
    }
}

/// One line of /proc/PID/maps.
struct Mapping: Sendable {
    let start: UInt64
    let end: UInt64
    let readable: Bool
    let writable: Bool
    let executable: Bool
    let path: String

    init?(_ line: Substring) {
        let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count >= 5 else { return nil }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16)
        else { return nil }
        self.start = start
        self.end = end
        let perms = Array(fields[1])
        readable = perms.first == "r"
        writable = perms.count > 1 && perms[1] == "w"
        executable = perms.count > 2 && perms[2] == "x"
        path = fields.count > 5 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
    }

    func contains(_ address: UInt64) -> Bool { address >= start && address < end }
}

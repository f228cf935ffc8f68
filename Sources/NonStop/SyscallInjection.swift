import CShim
import Glibc

/// Runs one system call inside a stopped tracee thread: save its registers, point RIP at a `syscall`
/// instruction with the call's number and arguments loaded, single-step, read RAX, put everything back.
/// orig_rax is -1 during the call so the kernel's restart logic leaves the injected call alone, and the
/// saved registers (orig_rax included) go back afterwards so an interrupted system call of the thread's
/// own restarts as it would have.
struct SyscallInjection {
    let tid: pid_t
    let memory: TraceeMemory
    /// Signals that arrive while the call runs: held, to be delivered when the thread resumes.
    var held: [siginfo_t] = []
    /// Whether the thread was stepped (and so now sits in a trap's signal-delivery-stop).
    private(set) var stepped = false
    /// The thread's end, if it ended while the call ran (that report is consumed here).
    private(set) var ended: WaitResult?

    init(tid: pid_t, memory: TraceeMemory) {
        self.tid = tid
        self.memory = memory
    }

    /// With `gadget` nil, two bytes at the thread's RIP are borrowed for the `syscall` instruction:
    /// only safe while no other thread of the address space can run (attach, the stop after exec).
    mutating func call(_ number: Int, _ args: [UInt64], gadget: UInt64?) throws(TraceError) -> Int64 {
        let saved = try Ptrace.getRegs(tid)
        try checkSeccomp(number, args, ip: gadget ?? saved.rip)
        var regs = saved
        var borrowed: [UInt8]?
        var guarded: Int32 = -1
        var site = saved.rip
        defer {
            if let borrowed { try? memory.write(borrowed, at: site) }
            CrashGuard.unpatch(guarded)
            CrashGuard.injecting(tid, saved: nil)
        }
        // Should nstrace crash meanwhile, the crash guard puts the registers and bytes back.
        CrashGuard.injecting(tid, saved: saved)
        if let gadget {
            site = gadget
        } else {
            let bytes = try memory.read(site, count: 2)
            guard bytes.count == 2 else { throw TraceError("inject syscall at 0x\(String(site, radix: 16))", tid: tid, errno: EFAULT) }
            guarded = CrashGuard.patch(owner: 0, pid: memory.pid, at: site, original: bytes, patched: [0x0f, 0x05], kind: .other)
            borrowed = bytes
            try memory.write([0x0f, 0x05], at: site)
        }
        regs.rip = site
        regs.rax = UInt64(number)
        regs.orig_rax = UInt64.max
        let argumentRegisters: [WritableKeyPath<user_regs_struct, UInt64>] = [\.rdi, \.rsi, \.rdx, \.r10, \.r8, \.r9]
        for (i, value) in args.prefix(6).enumerated() { regs[keyPath: argumentRegisters[i]] = value }
        try Ptrace.setRegs(tid, regs)
        do {
            try stepOverSyscall(expectedEnd: site + 2)
        } catch {
            try? Ptrace.setRegs(tid, saved)
            throw error
        }
        let result = try Ptrace.getRegs(tid)
        try Ptrace.setRegs(tid, saved)
        return Int64(bitPattern: result.rax)
    }

    /// The thread's seccomp filters, read at the first injection (nil inside: none, or unreadable).
    private var filters: SeccompFilters??

    /// Under a seccomp filter, the call is injected only if the filter lets it run or fail plainly: a
    /// filter may kill the process (or send it SIGSYS) for a call it did not expect. A filter that
    /// cannot be read is taken as forbidding everything.
    private mutating func checkSeccomp(_ number: Int, _ args: [UInt64], ip: UInt64) throws(TraceError) {
        if filters == nil {
            filters = .some(ProcFS.statusField("Seccomp", of: tid) == "2" ? SeccompFilters(tid: tid) ?? SeccompFilters(programs: [[]]) : nil)
        }
        guard let filters = filters ?? nil else { return }
        let action = filters.action(number: number, arguments: args, ip: ip)
        guard SeccompFilters.harmless(action) else {
            let name = SystemCall.name(number)
            throw TraceError("a seccomp filter would answer the \(name) nstrace must inject with \(SeccompFilters.name(of: action)); "
                             + "nothing was injected", tid: tid, errno: EPERM)
        }
    }

    /// Calls the function at `address` with no arguments (a GNU indirect function's resolver) on a
    /// fresh frame below the thread's stack and red zone, returning to `trap` (an int3 in scratch),
    /// and returns RAX; everything is put back. GDB resolves an ifunc it finds in no GOT the same way.
    /// nil when the call does not come back to `trap` — a fault, or one of nstrace's own breakpoints
    /// on the way (a resolver is pure, so abandoning it mid-way leaves nothing behind).
    mutating func callFunction(at address: UInt64, returningTo trap: UInt64) throws(TraceError) -> UInt64? {
        let saved = try Ptrace.getRegs(tid)
        var regs = saved
        let stack = ((saved.rsp &- 4096) & ~UInt64(0xf)) &- 8
        try memory.write(withUnsafeBytes(of: trap.littleEndian) { Array($0) }, at: stack)
        regs.rsp = stack
        regs.rip = address
        regs.rax = 0
        regs.orig_rax = UInt64.max
        // Should nstrace crash meanwhile, the crash guard puts the registers back.
        CrashGuard.injecting(tid, saved: saved)
        try Ptrace.setRegs(tid, regs)
        defer {
            try? Ptrace.setRegs(tid, saved)
            CrashGuard.injecting(tid, saved: nil)
        }
        try Ptrace.cont(tid)
        stepped = true
        switch try nextRaisedStop("call an indirect function's resolver", stepping: false) {
        case .trap:
            let now = try Ptrace.getRegs(tid)
            return now.rip == trap &+ 1 ? now.rax : nil
        case .fault:
            return nil
        }
    }

    /// One instruction of the thread's own, single-stepped (to get it out of code about to be
    /// rewritten), with signals that arrive meanwhile held.
    mutating func step() throws(TraceError) {
        try stepOverSyscall(expectedEnd: 0)
    }

    private mutating func stepOverSyscall(expectedEnd: UInt64) throws(TraceError) {
        try Ptrace.singleStep(tid)
        stepped = true
        if case .fault(let signal) = try nextRaisedStop("inject syscall", stepping: true) {
            // The syscall instruction itself faulted (its page is gone): give up.
            throw TraceError("inject syscall (\(signalName(signal)) at the gadget)", tid: tid, errno: EFAULT)
        }
    }

    private enum RaisedStop { case trap, fault(Int32) }

    /// The thread's next stop raised by what it runs (si_code > 0): the trap of a step or an int3, or
    /// a fault. A signal sent meanwhile (kill has si_code <= 0, as do the rest) is held for later; a
    /// group-stop or an interrupt is passed by going on (single-stepping when `stepping`).
    private mutating func nextRaisedStop(_ operation: String, stepping: Bool) throws(TraceError) -> RaisedStop {
        while true {
            guard let result = try Wait.next(tid) else { continue }
            switch result {
            case .signalStop(_, let signal):
                let info = try Ptrace.getSigInfo(tid)
                if info.si_code > 0, signal == SIGTRAP { return .trap }
                if info.si_code > 0, [SIGSEGV, SIGBUS, SIGILL, SIGFPE].contains(signal) { return .fault(signal) }
                held.append(info)
            case .eventStop, .syscallStop:
                break  // a syscall-stop only under -S, which neither way of going on here asks for
            case .exited, .killed:
                ended = result
                throw TraceError(operation, tid: tid, errno: ESRCH)
            }
            if stepping { try Ptrace.singleStep(tid) } else { try Ptrace.cont(tid) }
        }
    }
}

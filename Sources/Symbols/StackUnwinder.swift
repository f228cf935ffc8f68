import CElfutils
import CShim
import Glibc

/// Unwinds a stopped thread's stack with libdwfl's CFI unwinder (.eh_frame / .debug_frame), given the
/// thread's registers and a way to read its memory. nstrace owns the ptrace session, so libdwfl gets
/// the state through callbacks (dwfl_attach_state) instead of attaching on its own.
public final class StackUnwinder {
    private let session: OpaquePointer
    private var dwfl: OpaquePointer { nst_dwfl_session_dwfl(session) }
    private let callbacks: UnsafeMutablePointer<Dwfl_Thread_Callbacks>
    private let context: Context
    private let attached: Bool
    /// libdwfl's word on the last unwind that stopped early, for --debug.
    public private(set) var lastError: String?

    /// What the callbacks see: the thread being unwound, its registers, the memory reader.
    final class Context {
        var tid: pid_t = 0
        /// DWARF registers 0–16 (rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8–r15, return address).
        var registers: [UInt64] = []
        var readWord: (UInt64) -> UInt64? = { _ in nil }
        var frames: [UInt64] = []
        var limit = 0
    }

    /// Reports the process's modules anew (its own libdwfl session) and attaches the callbacks.
    public init(pid: pid_t, debuginfoPath: String? = ProcessImage.defaultDebuginfoPath) throws(SymbolError) {
        guard let session = nst_dwfl_session_begin(true, debuginfoPath) else {
            throw .elfutils(ProcessImage.lastError, context: "unwinder for \(pid)")
        }
        self.session = session
        context = Context()
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: Dwfl_Thread_Callbacks(
            next_thread: { _, arg, threadArg in
                guard let arg, let threadArg else { return 0 }
                if threadArg.pointee != nil { return 0 }
                threadArg.pointee = arg
                return Unmanaged<Context>.fromOpaque(arg).takeUnretainedValue().tid
            },
            get_thread: { _, tid, arg, threadArg in
                guard let arg, let threadArg else { return false }
                threadArg.pointee = arg
                return Unmanaged<Context>.fromOpaque(arg).takeUnretainedValue().tid == tid
            },
            memory_read: { _, address, result, arg in
                guard let arg, let result else { return false }
                let context = Unmanaged<Context>.fromOpaque(arg).takeUnretainedValue()
                guard let word = context.readWord(address) else { return false }
                result.pointee = word
                return true
            },
            set_initial_registers: { thread, threadArg in
                guard let thread, let threadArg else { return false }
                let context = Unmanaged<Context>.fromOpaque(threadArg).takeUnretainedValue()
                guard context.registers.count == 17 else { return false }
                return context.registers.withUnsafeBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return false }
                    return dwfl_thread_state_registers(thread, 0, 17, base)
                }
            },
            detach: nil,
            thread_detach: nil))
        dwfl_report_begin(nst_dwfl_session_dwfl(session))
        let rc = dwfl_linux_proc_report(nst_dwfl_session_dwfl(session), ProcessImage.liveTask(of: pid))
        dwfl_report_end(nst_dwfl_session_dwfl(session), nil, nil)
        attached = rc == 0
            && dwfl_attach_state(nst_dwfl_session_dwfl(session), nil, pid, callbacks,
                                 Unmanaged.passUnretained(context).toOpaque())
    }

    deinit {
        nst_dwfl_session_end(session)
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    /// Return addresses of the thread's callers, innermost first (the stopped pc itself excluded), at
    /// most `limit` of them. `registers` are DWARF 0–16 with 16 the pc.
    public func callers(tid: pid_t, registers: [UInt64], limit: Int, readWord: @escaping (UInt64) -> UInt64?) -> [UInt64] {
        guard attached, limit > 0 else {
            lastError = attached ? nil : "not attached"
            return []
        }
        context.tid = tid
        context.registers = registers
        context.readWord = readWord
        context.frames = []
        context.limit = limit + 1
        let rc = withExtendedLifetime(context) {
            dwfl_getthread_frames(dwfl, tid, { frame, arg in
                guard let frame, let arg else { return Int32(DWARF_CB_ABORT) }
                let context = Unmanaged<Context>.fromOpaque(arg).takeUnretainedValue()
                var pc: Dwarf_Addr = 0
                guard dwfl_frame_pc(frame, &pc, nil), pc != 0 else { return Int32(DWARF_CB_ABORT) }
                context.frames.append(pc)
                return Int32(context.frames.count >= context.limit ? DWARF_CB_ABORT : DWARF_CB_OK)
            }, Unmanaged.passUnretained(context).toOpaque())
        }
        lastError = rc != 0 && context.frames.count < context.limit ? ProcessImage.lastError : nil
        context.readWord = { _ in nil }
        return Array(context.frames.dropFirst())
    }
}

import Glibc

/// A syscall a thread has entered and not yet returned from (`-S`).
struct SyscallInFlight {
    let number: Int
    let registers: [UInt64]
    /// Decoded at entry, while the paths and input buffers are what the kernel reads.
    var arguments: [SyscallArgument]
    let start: UInt64
}

/// Syscall events (`-S`): every traced thread is resumed with PTRACE_SYSCALL and stops on its own
/// syscalls' entries and exits, alone (non-stop, as at breakpoints). Without `-S` the engine resumes
/// with PTRACE_CONT and none of this runs.
extension Engine {
    /// Lets a thread run on: to its next syscall-stop too when syscalls are traced.
    func proceed(_ tid: pid_t, signal: Int32 = 0) throws(TraceError) {
        if configuration.syscalls != nil {
            try Ptrace.syscall(tid, signal: signal)
        } else {
            try Ptrace.cont(tid, signal: signal)
        }
    }

    /// A syscall-stop: the entry is remembered with its arguments, the exit makes the event. The caller
    /// resumes the thread (or keeps it, in an all-stop).
    func syscallStopped(_ thread: TraceeThread) throws(TraceError) {
        guard let selection = configuration.syscalls else { return }
        let time = monotonicNow()
        switch try Ptrace.syscallInfo(thread.tid) {
        case .entry(let number, let registers):
            guard selection.contains(number) else {
                thread.syscall = nil
                return
            }
            let n = Int(number)
            let entry = SyscallInFlight(number: n, registers: registers, arguments: entryArguments(n, registers, thread), start: time)
            DebugLog.log("\(thread.tid): syscall entry \(SyscallSelection.name(of: n) ?? "\(n)")")
            guard n != SystemCall.exit && n != SystemCall.exitGroup else {
                // No exit-stop will come: the thread ends in the kernel. Told now, as strace does.
                thread.syscall = nil
                report(entry, SyscallEvent(number: n, name: SyscallSelection.name(of: n) ?? "syscall_\(n)", arguments: entry.arguments,
                                           result: 0, errno: 0, returns: false), duration: 0, thread)
                return
            }
            thread.syscall = entry
        case .exit(let value, let isError):
            // An exit with no entry seen: the syscall began before nstrace attached (or across an
            // exec from another thread). Its arguments are unknown: not reported.
            guard var entry = thread.syscall else { return }
            thread.syscall = nil
            finishArguments(&entry, result: value, isError: isError, thread)
            let signature = SyscallSignature.of(entry.number)
            let event = SyscallEvent(number: entry.number,
                                     name: SyscallSelection.name(of: entry.number) ?? "syscall_\(entry.number)",
                                     arguments: entry.arguments, result: isError ? -1 : value,
                                     errno: isError ? Int32(truncatingIfNeeded: -value) : 0,
                                     resultIsAddress: signature?.returnsAddress ?? false)
            DebugLog.log("\(thread.tid): syscall exit \(event.name) = \(value)")
            report(entry, event, duration: time &- entry.start, thread)
        case .none:
            break
        }
    }

    private func report(_ entry: SyscallInFlight, _ event: SyscallEvent, duration: UInt64, _ thread: TraceeThread) {
        let process = thread.process, tid = thread.tid, start = entry.start
        // After the records the thread wrote before it entered the kernel (the inline strategy's
        // ring): each thread's events stay in order.
        afterRecords(of: process, tid: tid) { [unowned self] in
            emit(process, tid, .syscall(event, duration: duration), at: start)
        }
    }

    private func entryArguments(_ number: Int, _ registers: [UInt64], _ thread: TraceeThread) -> [SyscallArgument] {
        guard let signature = SyscallSignature.of(number) else {
            return registers.enumerated().map { SyscallArgument(name: "arg\($0.offset)", value: .hex($0.element)) }
        }
        let memory = thread.process.space.memory
        var arguments: [SyscallArgument] = []
        for (i, parameter) in signature.parameters.enumerated() where i < registers.count {
            let raw = registers[i]
            let value: SyscallValue
            switch parameter.kind {
            case .signed, .signal: value = .signed(Int64(bitPattern: raw))
            case .unsigned: value = .unsigned(raw)
            case .hex: value = raw == 0 ? .symbol("NULL") : .hex(raw)
            case .fd: value = .signed(Int64(Int32(truncatingIfNeeded: raw)))
            case .dirfd:
                let fd = Int32(truncatingIfNeeded: raw)
                value = fd == AT_FDCWD ? .symbol("AT_FDCWD") : .signed(Int64(fd))
            case .path:
                if raw == 0 { value = .symbol("NULL") }
                else if let s = memory.string(at: raw, limit: maxString) { value = .string(s.bytes, truncated: s.truncated) }
                else { value = .hex(raw) }
            case .inBuffer(let countIndex):
                let count = countIndex < registers.count ? registers[countIndex] : 0
                value = buffer(memory, at: raw, count: count)
            case .outBuffer: value = raw == 0 ? .symbol("NULL") : .hex(raw)  // filled in at exit
            case .openFlags: value = .symbol(openFlagsText(raw))
            case .createMode(let flagsIndex):
                // strace shows the mode only when the flags create a file (O_CREAT, O_TMPFILE).
                let flags = flagsIndex < registers.count ? registers[flagsIndex] : 0
                guard flags & 0o100 != 0 || flags & 0o20000000 != 0 else { continue }
                value = .octal(raw & 0o7777)
            case .mode: value = .octal(raw & 0o7777)
            }
            arguments.append(SyscallArgument(name: parameter.name, value: value))
        }
        return arguments
    }

    /// Buffers the kernel filled, now that the result says how much of them it did.
    private func finishArguments(_ entry: inout SyscallInFlight, result: Int64, isError: Bool, _ thread: TraceeThread) {
        guard let signature = SyscallSignature.of(entry.number) else { return }
        for (i, parameter) in signature.parameters.enumerated() where i < entry.registers.count {
            guard case .outBuffer = parameter.kind, !isError, result >= 0, entry.registers[i] != 0,
                  let at = entry.arguments.firstIndex(where: { $0.name == parameter.name })
            else { continue }
            entry.arguments[at] = SyscallArgument(name: parameter.name,
                                                  value: buffer(thread.process.space.memory, at: entry.registers[i], count: UInt64(result)))
        }
    }

    private func buffer(_ memory: TraceeMemory, at address: UInt64, count: UInt64) -> SyscallValue {
        let wanted = Int(min(count, UInt64(maxString)))
        guard address != 0 else { return .symbol("NULL") }
        guard wanted > 0 else { return .string([], truncated: false) }
        guard let bytes = try? memory.read(address, count: wanted), bytes.count == wanted else { return .hex(address) }
        return .string(bytes, truncated: count > UInt64(wanted))
    }
}

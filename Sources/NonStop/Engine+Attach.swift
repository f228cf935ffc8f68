import CShim
import Foundation
import Glibc

/// Getting hold of tracees: attaching to a running process (every thread stopped and collected) and
/// launching a program under the tracer. Letting go of them is Engine+Detach.swift.
extension Engine {
    /// TRACEEXIT: a thread stops once more as it exits, with its memory still mapped, so that the
    /// stacks its records were written on can still be told apart when they are read after the process
    /// has gone (its maps are empty then).
    static let options: Ptrace.Options = [.traceClone, .traceFork, .traceVFork, .traceVForkDone, .traceExec, .traceSysGood, .traceExit]

    /// Attaches to every thread of a running process, stops them all, puts the breakpoints in, and lets
    /// them go. PTRACE_SEIZE (no stray SIGSTOP); the task list is re-read until no new thread appears,
    /// since a thread created by a not-yet-seized thread is not reported by TRACECLONE.
    public func attach(_ pid: pid_t) throws(StartError) {
        guard pid != getpid() else { throw .tracingItself }
        guard kill(pid, 0) == 0 || errno != ESRCH, !ProcFS.tasks(of: pid).isEmpty else { throw .noSuchProcess(pid) }
        if let tracer = ProcFS.tracer(of: pid), tracer != 0 { throw .alreadyTraced(pid, by: tracer) }
        if ProcFS.usesShadowStack(pid) { throw .shadowStack(pid) }
        // A process whose main thread has exited (pthread_exit) has a zombie leader with empty
        // /proc/PID/mem and maps; its live threads see the same memory.
        var memory: TraceeMemory?
        var lastError = EACCES
        for candidate in [pid] + (ProcFS.isExiting(pid, of: pid) ? ProcFS.tasks(of: pid).filter { $0 != pid } : []) {
            do {
                memory = try TraceeMemory(pid: candidate)
                if candidate == pid || !ProcFS.isExiting(candidate, of: pid) { break }
            } catch {
                lastError = error.errno  // that thread just ended: try the next
            }
        }
        guard let memory else {
            if lastError == ENOENT || lastError == ESRCH { throw .noSuchProcess(pid) }
            throw .permissionDenied(pid, detail: String(cString: strerror(lastError)))
        }
        let process = TracedProcess(pid: pid, space: AddressSpace(memory: memory), reportsEvents: true, launched: false)
        process.space.adoptLeftRegions()
        processes[pid] = process

        var seized = Set<pid_t>()
        while true {
            let fresh = ProcFS.tasks(of: pid).filter { !seized.contains($0) && threads[$0] == nil }
            if fresh.isEmpty { break }
            for tid in fresh {
                seized.insert(tid)
                do {
                    try Ptrace.seize(tid, options: Engine.options)
                    try Ptrace.interrupt(tid)
                } catch {
                    // A thread that is exiting refuses PTRACE_SEIZE with EPERM, as a gone one does with
                    // ESRCH; so does one already ours (cloned by a seized thread: its clone event and
                    // first stop are on their way).
                    if error.threadGone { continue }
                    if error.errno == EPERM, tid != pid {
                        // TracerPid names the tracing thread: this one.
                        if ProcFS.tracer(of: tid) == nst_gettid() {
                            registerAttaching(tid, in: process)
                            continue
                        }
                        // Asked second: a thread that ended after the refusal counts as exiting too.
                        if ProcFS.isExiting(tid, of: pid) { continue }
                    }
                    processes[pid] = nil
                    for t in process.threads.keys { try? Ptrace.detach(t); threads[t] = nil }
                    if error.errno == EPERM { throw .permissionDenied(pid, detail: "ptrace: \(String(cString: strerror(EPERM)))") }
                    throw .launchFailed(String(describing: error))
                }
                registerAttaching(tid, in: process)
            }
        }
        guard !process.threads.isEmpty else {
            processes[pid] = nil
            throw .noSuchProcess(pid)
        }
        do {
            try collectStops(of: process)
            emit(process, pid, .attach)
            // Injection needs a thread in a trap or event stop it can step (not one held in group-stop).
            if let runnable = process.threads.values.first(where: \.isHeldOutsideGroupStop) {
                // Near the program itself: its functions are the likeliest to be traced.
                var near = ProcFS.entryPoint(of: pid) ?? 0
                if near == 0 { near = try Ptrace.getRegs(runnable.tid).rip }
                try mapFirstRegion(process, near: near, using: runnable)
                try install(process, using: runnable)
            } else {
                notice(process, "process \(pid) is stopped; breakpoints go in when it continues")
            }
            for thread in process.threads.values {
                if thread.isInGroupStop { try listen(thread) } else { try resume(thread) }
            }
        } catch {
            if !(error.errno == EINTR) { fail("attach: \(error)") }
            detachAll()
            // Asked to stop while attaching: detached again, as a stop asked for later would have.
            if error.errno == EINTR, StopRequest.pending != nil { return }
            throw error.errno == EINTR ? .attachFailed("interrupted") : .attachFailed(String(describing: error))
        }
    }

    private func registerAttaching(_ tid: pid_t, in process: TracedProcess) {
        guard threads[tid] == nil else { return }
        let thread = TraceeThread(tid: tid, process: process)
        thread.state = .interruptPending(redo: nil)
        process.threads[tid] = thread
        threads[tid] = thread
    }

    /// Waits until every thread of the process has stopped after PTRACE_INTERRUPT (or died). Any stop
    /// counts as that one: "any trap clears a pending interrupt" (kernel/ptrace.c), so after a clone,
    /// fork, exec or signal stop no interrupt stop may follow. Threads born meanwhile are waited for
    /// too; children are registered (and let go at their first stop). A signal's delivery-stop is kept:
    /// resuming from it later delivers the signal with its own siginfo. Bounded in time, and a stop
    /// request ends it.
    func collectStops(of process: TracedProcess) throws(TraceError) {
        let deadline = monotonicNow() + 10_000_000_000
        func pending() -> [TraceeThread] { process.threads.values.filter(\.awaitsStop) }
        var replay: [WaitResult] = []
        while !pending().isEmpty {
            if StopRequest.pending != nil { throw TraceError("attach", tid: process.pid, errno: EINTR) }
            let result: WaitResult
            if !replay.isEmpty {
                result = replay.removeFirst()
            } else {
                guard let next = try Wait.next() else {
                    if monotonicNow() > deadline {
                        throw TraceError("attach: threads \(pending().map(\.tid)) never stopped", tid: process.pid, errno: ETIMEDOUT)
                    }
                    continue
                }
                result = next
            }
            guard let thread = threads[result.tid], thread.process === process else {
                early[result.tid, default: []].append(result)
                continue
            }
            switch result {
            case .exited, .killed:
                if let ending = result.ending { threadEnded(result.tid, ending) }
                continue
            case .eventStop(_, .clone, _), .eventStop(_, .fork, _), .eventStop(_, .vfork, _):
                let child = pid_t(truncatingIfNeeded: try Ptrace.eventMessage(thread.tid))
                guard case .eventStop(_, let event, _) = result else { break }
                if event.madeThread(child, of: process.pid) {
                    registerAttaching(child, in: process)
                    replay += early.removeValue(forKey: child) ?? []
                } else {
                    try registerChildProcess(child, of: thread, event: event)
                }
            case .signalStop(let tid, let signal) where Engine.isGroupStop(signal):
                // A stop signal goes through at once (held, a later SIGCONT could not cancel it); the
                // group-stop it starts is this thread's stop.
                try proceed(tid, signal: signal)
                continue
            case .signalStop(let tid, let signal):
                // Keep the thread in this delivery-stop; the signal goes with its first resume.
                thread.heldSignals.append(try Ptrace.getSigInfo(tid))
                DebugLog.log("\(tid): \(signalName(signal)) arrived while attaching; held")
            case .syscallStop:
                try syscallStopped(thread)
            case .eventStop(_, .exec, _):
                // Nothing is armed yet: the new image is read when the breakpoints go in.
                for other in process.threads.values where other.tid != process.pid {
                    process.threads[other.tid] = nil
                    threads[other.tid] = nil
                }
                process.space = AddressSpace(memory: try TraceeMemory(pid: process.pid))
            case .eventStop:
                break
            }
            let stop: TraceeThread.Stop = { if case .signalStop = result { return .signalDelivery }; return .event }()
            if case .eventStop(_, .stop, let signal) = result, Engine.isGroupStop(signal) {
                thread.state = .held(stop, .groupStop(redo: nil))
            } else if case .eventStop(_, .vfork, _) = result {
                // Let go, it blocks until its child execs or exits.
                thread.state = .held(stop, .vforked)
            } else {
                thread.state = .held(stop, .stop)
            }
        }
        if processes[process.pid] == nil { throw TraceError("attach", tid: process.pid, errno: ESRCH) }
    }

    /// Starts a program under the tracer: fork, the child stops itself, PTRACE_SEIZE (with EXITKILL:
    /// a launched program does not outlive nstrace), then exec; the breakpoints go in at its entry.
    public func launch(_ arguments: [String]) throws(StartError) -> pid_t {
        guard let program = arguments.first else { throw .launchFailed("no program") }
        let path = try Engine.resolve(program)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .launchFailed(String(cString: strerror(errno))) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let cArgs = arguments.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let pid = nst_spawn_stopped(path, cArgs, fds[1])
        close(fds[1])
        defer { close(fds[0]) }
        guard pid > 0 else { throw .launchFailed(String(cString: strerror(errno))) }

        var status: Int32 = 0
        guard waitpid(pid, &status, WUNTRACED) == pid, nst_wifstopped(status) else {
            throw .launchFailed("the child did not stop before exec")
        }
        do {
            try Ptrace.seize(pid, options: Engine.options.union(.exitKill))
        } catch {
            kill(pid, SIGKILL)
            throw .launchFailed(String(describing: error))
        }
        kill(pid, SIGCONT)
        while true {
            let result: WaitResult
            do {
                guard let r = try Wait.next(pid) else { continue }
                result = r
            } catch {
                throw .launchFailed(String(describing: error))
            }
            switch result {
            case .eventStop(_, .exec, _):
                let memory: TraceeMemory
                do { memory = try TraceeMemory(pid: pid) } catch { throw .launchFailed(String(describing: error)) }
                let process = TracedProcess(pid: pid, space: AddressSpace(memory: memory), reportsEvents: true, launched: true)
                processes[pid] = process
                let thread = TraceeThread(tid: pid, process: process)
                thread.state = .held(.event, .stop)
                process.threads[pid] = thread
                threads[pid] = thread
                do {
                    try prepareEntry(process, using: thread)
                    try resume(thread)
                } catch {
                    kill(pid, SIGKILL)
                    throw .launchFailed(String(describing: error))
                }
                return pid
            case .exited, .killed:
                var code: Int32 = 0
                if read(fds[0], &code, 4) == 4 {
                    if code == ENOENT { throw .programNotFound(program) }
                    if code == EACCES { throw .programNotExecutable(program) }
                    throw .launchFailed(String(cString: strerror(code)))
                }
                throw .launchFailed("\(program) exited before it started")
            case .eventStop(_, _, _), .signalStop(_, SIGCONT), .signalStop(_, SIGSTOP), .syscallStop:
                try? Ptrace.cont(pid)
            case .signalStop(_, let signal):
                try? Ptrace.cont(pid, signal: signal)
            }
        }
    }

    /// The program as execvp would find it, so a missing one is a clear error before anything runs.
    public static func resolve(_ program: String) throws(StartError) -> String {
        if program.contains("/") {
            guard access(program, F_OK) == 0 else { throw .programNotFound(program) }
            guard access(program, X_OK) == 0 else { throw .programNotExecutable(program) }
            return program
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw .programNotFound(program)
    }
}

import CShim
import Glibc
import Symbols

extension Engine {
    /// Registers a thread the engine now traces and handles any stop it made before.
    @discardableResult
    func adopt(_ tid: pid_t, into process: TracedProcess, announce: Bool) throws(TraceError) -> TraceeThread {
        let thread = TraceeThread(tid: tid, process: process)
        process.threads[tid] = thread
        threads[tid] = thread
        if announce { emit(process, tid, .threadStart) }
        publishStatus()
        try replayEarlyStops(of: tid)
        return thread
    }

    /// A thread is gone. The leader's end (reported after every other thread's) is the process's. A
    /// thread's frames close, and its end is reported, after the last records it wrote.
    func threadEnded(_ tid: pid_t, _ status: ExitStatus) {
        guard let thread = threads.removeValue(forKey: tid) else { return }
        let process = thread.process
        process.threads[tid] = nil
        process.space.releaseSlot(of: tid)
        publishStatus()
        let end = monotonicNow()
        let trace = process.space.inline
        if tid != process.pid {
            trace?.departed[tid] = process
            afterRecords(of: process, tid: tid) { [unowned self] in
                unwindThread(process, tid, at: end)
                if case .exited(let code) = status { emit(process, tid, .threadExit(status: code)) }
                else { emit(process, tid, .threadExit(status: -1)) }
                trace?.departed[tid] = nil
            }
            return
        }
        DebugLog.log("\(process.pid): \(status)")
        if process.launched { launchedExit = status }
        for other in process.threads.values { threads[other.tid] = nil }
        processes[process.pid] = nil
        // Its frames close, and its end is told, after the last records it wrote — which may be
        // behind a record another process sharing the ring is writing right now.
        let ended = { [unowned self] in
            for other in Array(process.threadStacks.keys) { unwindThread(process, other, at: end) }
            unwindGoroutines(process, reportedAs: tid, at: end)
            emit(process, tid, .exit(status))
            trace?.departed[tid] = nil
        }
        guard let trace else { return ended() }
        trace.departed[tid] = process
        afterRecords(of: process, tid: tid, ended)
        retire(trace, leaving: process)
    }

    /// A process leaves a ring (it ended, or exec'd): everything it wrote is read; once no process
    /// writes to the ring any more, what was never published is counted lost and the ring dropped.
    func retire(_ trace: InlineTrace, leaving process: TracedProcess) {
        let stillUsed = processes.values.contains { $0 !== process && $0.space.inline === trace && processes[$0.pid] != nil }
        if stillUsed {
            drainRecords()
            return
        }
        finishRing(trace)
        inlineTraces.removeAll { $0 === trace }
    }

    /// PTRACE_EVENT_CLONE / FORK / VFORK: the new task is already traced and stopped.
    func newTask(from parent: TraceeThread, event: Ptrace.Event) throws(TraceError) {
        let child = pid_t(truncatingIfNeeded: try Ptrace.eventMessage(parent.tid))
        let process = parent.process
        if event.madeThread(child, of: process.pid) {
            DebugLog.log("\(process.pid): new thread \(child)")
            try adopt(child, into: process, announce: true)
            try resume(parent)
            return
        }
        try registerChildProcess(child, of: parent, event: event)
        try resume(parent)
        try replayEarlyStops(of: child)
    }

    /// A new process (fork, vfork, or a clone without CLONE_THREAD): followed with -f, otherwise let go
    /// clean. Its first stop is handled when it comes (or was already, in `early`).
    func registerChildProcess(_ child: pid_t, of parent: TraceeThread, event: Ptrace.Event) throws(TraceError) {
        let process = parent.process
        // A vfork child, or a clone(CLONE_VM) one, runs in the parent's memory: its breakpoints are
        // the parent's, and restoring bytes "in the child" would take them from the parent too.
        let sharesMemory = event == .vfork || nst_same_address_space(parent.tid, child) == 1
        // Let go, a vfork parent blocks in the kernel until its child execs or exits.
        if event == .vfork { parent.hold(at: .vforked) }
        let follow = configuration.followForks && process.reportsEvents
        let space: AddressSpace
        if sharesMemory {
            space = process.space
        } else {
            space = process.space.copy(for: try TraceeMemory(pid: child))
        }
        let childProcess = TracedProcess(pid: child, space: space, reportsEvents: follow, launched: false)
        childProcess.installed = process.installed
        childProcess.image = nil
        childProcess.followed = process.followed
        // A fork child not followed is cleaned of every int3 and let go at its first stop. A vfork
        // child shares the parent's memory, so it keeps the breakpoints (its hits are stepped past
        // silently) until its exec or exit.
        childProcess.cleanUpAndDetach = !follow && !sharesMemory
        processes[child] = childProcess
        emit(process, parent.tid, .fork(child: child))
        DebugLog.log("\(process.pid): \(event) child \(child) \(follow ? "followed" : "not followed")")
        let thread = TraceeThread(tid: child, process: childProcess)
        if follow {
            // The child goes on with the frames its parent had open when it forked.
            // Read behind the parent's records, perhaps after the child's first ones: underneath them.
            afterRecords(of: process, tid: parent.tid) { [unowned self] in
                guard let inherited = process.threadStacks[parent.tid]?.stack else { return }
                withShadowStack(childProcess, child, nil) { $0.putUnderneath(inherited) }
            }
        }
        if event == .vfork, let trace = process.space.inline {
            // Until vfork-done the parent is blocked, and records with its tid are the child's.
            afterRecords(of: process, tid: parent.tid) { trace.vforkChildren[parent.tid] = childProcess }
        }
        childProcess.threads[child] = thread
        threads[child] = thread
    }

    /// A fork child nstrace does not follow, at its first stop: every original byte back, then detach.
    func releaseChild(_ thread: TraceeThread) {
        let process = thread.process
        let restored = process.space.disarmAll() + process.space.restoreWindows()
        DebugLog.log("\(process.pid): restored \(restored) sites, detaching")
        try? Ptrace.detach(thread.tid)
        threads[thread.tid] = nil
        processes[process.pid] = nil
    }

    /// PTRACE_EVENT_EXEC: a new program image. Every other thread is gone, the breakpoints with the old
    /// address space; the exec'ing thread now has the leader's tid.
    func executed(_ thread: TraceeThread) throws(TraceError) {
        let process = thread.process
        let formerTid = pid_t(truncatingIfNeeded: (try? Ptrace.eventMessage(thread.tid)) ?? UInt(thread.tid))
        // Their step slots go back to the old address space — which lives on when it was a vfork
        // parent's, shared until this exec.
        for tid in Set(process.threads.keys).union([formerTid, thread.tid]) { process.space.releaseSlot(of: tid) }
        for other in process.threads.values where other.tid != thread.tid {
            threads[other.tid] = nil
        }
        threads[formerTid] = nil
        process.threads = [:]
        let leader = TraceeThread(tid: process.pid, process: process)
        process.threads[process.pid] = leader
        threads[process.pid] = leader
        leader.state = .held(.event, .stop)

        guard process.reportsEvents else {
            // An unfollowed vfork child: its new image has none of nstrace's breakpoints.
            try? Ptrace.detach(leader.tid)
            threads[leader.tid] = nil
            processes[process.pid] = nil
            return
        }
        if let trace = process.space.inline { retire(trace, leaving: process) }
        // The old image's open calls never return: closed as unwound (after its last records, read
        // above) before the exec is told. What was learnt about the old image goes with it.
        let now = monotonicNow()
        for tid in Array(process.threadStacks.keys) { unwindThread(process, tid, at: now) }
        unwindGoroutines(process, reportedAs: leader.tid, at: now)
        process.goRuntime = nil
        process.stacks.forget()
        // The old image's bytes are gone with it (unless the space was a vfork parent's, still in use).
        if process.space.memory.pid == process.pid { process.space.forgetGuarded() }
        process.space = AddressSpace(memory: try TraceeMemory(pid: process.pid))
        process.image = nil
        lastCallerModule = nil
        process.installedModules = []
        process.followed = FollowedCalls()
        process.installed = false
        emit(process, leader.tid, .exec(path: ProcFS.executable(of: process.pid)))
        try prepareEntry(process, using: leader)
        try resume(leader)
    }
}

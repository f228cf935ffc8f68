/// What one probe of a pad records: an id nstrace maps back to the function and the event, and the
/// values to copy.
public struct Probe: Sendable, Hashable {
    /// What a record is, for the bucket's lost counters: a call, a return, or something else.
    public enum Kind: Int, Sendable {
        case entry = 0, exit = 1, other = 2
    }

    /// How a probe takes part in following tail calls.
    public enum Gate: Sendable, Hashable {
        case none
        /// A traced function leaving by a tail call: after the record, its thread's count of tail calls
        /// in flight goes up.
        case countsTailCall
        /// A return of a tail-callee, watched only to see its tail-caller return: recorded only while
        /// the thread has a tail call in flight (the callee is called from everywhere else too).
        case whileTailCallPending
    }

    public let id: UInt32
    public let kind: Kind
    public let captures: [Capture]
    public let gate: Gate

    public init(id: UInt32, kind: Kind, captures: [Capture], gate: Gate = .none) {
        self.id = id
        self.kind = kind
        self.captures = captures
        self.gate = gate
    }

    /// Whether the pad waits, after publishing, until nstrace has seen the record (the dynamic
    /// linker's r_brk: new libraries get their windows before the program can call into them).
    public var waitsForAcknowledgement: Bool { captures.contains(.ticket) }

    var usesSystemCalls: Bool {
        captures.contains { if case .memory = $0 { return true }; return false }
    }
}

/// How a pad learns which thread runs it, and which bucket of the ring it writes to.
public struct PadEnvironment: Sendable, Hashable {
    public enum ThreadIdentity: Sendable, Hashable {
        /// glibc: the thread's tid in its TCB, at `fs:[offset]` (libthread_db's _thread_db_pthread_tid).
        case tcb(offset: Int32)
        /// Go: `g.m.procid`, through R14.
        case goM(mOffset: Int32, procidOffset: Int32)
        /// gettid(2): right for any thread, and the slowest.
        case syscall
    }

    public enum BucketKey: Sendable, Hashable {
        case thread
        /// Go: the goroutine's id (`[r14 + offset]`), so a goroutine's records stay in order when it
        /// moves between threads.
        case goroutine(goidOffset: Int32)
    }

    public let ringAddress: UInt64
    public let geometry: RingGeometry
    public let threadIdentity: ThreadIdentity
    public let bucketKey: BucketKey

    public init(ringAddress: UInt64, geometry: RingGeometry, threadIdentity: ThreadIdentity, bucketKey: BucketKey) {
        self.ringAddress = ringAddress
        self.geometry = geometry
        self.threadIdentity = threadIdentity
        self.bucketKey = bucketKey
    }
}

/// Writes the code of one probe: reserve a record in the thread's bucket, fill it, publish it, with
/// every register and flag the program had put back afterwards. The program's red zone (128 bytes
/// below RSP) is skipped first. Slow paths (a full bucket) are written later, out of line.
struct ProbeWriter {
    let environment: PadEnvironment
    /// Where the pad keeps the ring's address.
    let literal: UInt64

    /// Code to place after the pad's main path: what a probe does when its bucket is full.
    struct SlowPath {
        let full: X86Writer.Label
        let retry: X86Writer.Label
        let done: X86Writer.Label
        let lostCounter: Int32
    }

    private static let redZone: Int32 = 128

    /// The registers a probe saves: those it uses, and with system calls those the kernel clobbers or
    /// takes arguments in.
    private func saved(_ probe: Probe) -> [GPR] {
        var registers: [GPR] = [.rax, .rcx, .rdx, .rsi, .r11]
        if probe.usesSystemCalls || environment.threadIdentity == .syscall { registers += [.rdi, .r8, .r9, .r10] }
        return registers
    }

    /// `stackAdjust` turns the stack pointer at the probe into the one it reports.
    func emit(_ probe: Probe, stackAdjust: Int32, into w: inout X86Writer) -> SlowPath {
        let geometry = environment.geometry
        let savedRegisters = saved(probe)
        let frame = ProbeWriter.redZone + 8 + Int32(8 * savedRegisters.count)
        func slot(_ r: GPR) -> Int32? {
            savedRegisters.firstIndex(of: r).map { Int32(8 * (savedRegisters.count - 1 - $0)) }
        }

        w.putLea(.rsp, base: .rsp, displacement: -ProbeWriter.redZone)
        w.putPushfq()
        for r in savedRegisters { w.putPush(r) }

        // The thread id, in esi.
        switch environment.threadIdentity {
        case .tcb(let offset):
            w.putLoadFS32(.rsi, displacement: offset)
        case .goM(let m, let procid):
            w.putLoad(.rsi, base: .r14, displacement: m)
            w.putLoad32(.rsi, base: .rsi, displacement: procid)
        case .syscall:
            w.putMovImm64(.rax, 186)  // gettid
            w.putSyscall()
            w.putMov32(.rsi, .rax)
        }
        let retry = w.newLabel(), full = w.newLabel(), done = w.newLabel()
        if probe.gate == .whileTailCallPending {
            emitPendingTailCallSlot(w: &w)
            w.putCmpIndexedImm8(base: .rdx, index: .rax, displacement: Int32(RingGeometry.pendingTailCallsOffset), 0)
            w.putJcc(.e, done)
        }
        // The bucket, in r11.
        switch environment.bucketKey {
        case .thread: w.putMov32(.rax, .rsi)
        case .goroutine(let goid): w.putLoad(.rax, base: .r14, displacement: goid)
        }
        w.putAnd32(.rax, UInt32(geometry.bucketCount - 1))
        w.putShl(.rax, geometry.bucketShift)
        w.putLoadRIPRelative(.r11, address: literal)
        w.putLeaIndexed(.r11, base: .r11, index: .rax, displacement: Int32(RingGeometry.controlSize))

        // Reserve: head += slots, unless that would pass the tail by more than the bucket holds.
        let slots = Int32(max(1, RecordLayout.slots(for: probe.captures)))
        w.putLoad(.rax, base: .r11, displacement: Int32(RingGeometry.headOffset))
        w.bind(retry)
        w.putLea(.rdx, base: .rax, displacement: slots)
        w.putMov(.rcx, .rdx)
        w.putSubLoad(.rcx, base: .r11, displacement: Int32(RingGeometry.tailOffset))
        w.putCmpImm(.rcx, Int32(geometry.slotsPerBucket))
        w.putJcc(.a, full)
        w.putLockCmpxchg(base: .r11, displacement: Int32(RingGeometry.headOffset), .rdx)
        w.putJcc(.ne, retry)

        // rax = the position; rcx = the record; r11 = the position from here on.
        w.putMov(.rdx, .rax)
        w.putMov32(.rcx, .rax)
        w.putAnd32(.rcx, UInt32(geometry.slotsPerBucket - 1))
        w.putShl(.rcx, RingGeometry.slotShift)
        w.putLeaIndexed(.rcx, base: .r11, index: .rcx, displacement: Int32(RingGeometry.bucketHeaderSize))
        w.putMov(.r11, .rdx)

        w.putRdtsc()
        w.putShl(.rdx, 32)
        w.putOr(.rax, .rdx)
        w.putStore(.rax, base: .rcx, displacement: Int32(RecordLayout.tscOffset))
        w.putStoreImm32(probe.id, base: .rcx, displacement: Int32(RecordLayout.probeOffset))
        w.putStore32(.rsi, base: .rcx, displacement: Int32(RecordLayout.threadOffset))
        w.putLea(.rax, base: .rsp, displacement: frame + stackAdjust)
        w.putStore(.rax, base: .rcx, displacement: Int32(RecordLayout.stackPointerOffset))

        let offsets = RecordLayout.offsets(for: probe.captures).offsets
        var memory: [(MemoryCapture, Int32)] = []
        var ticketOffset: Int32?
        for (capture, offset32) in zip(probe.captures, offsets.map { Int32($0) }) {
            switch capture {
            case .register(let r):
                if r == .rsp {
                    w.putLea(.rax, base: .rsp, displacement: frame)
                    w.putStore(.rax, base: .rcx, displacement: offset32)
                } else if let s = slot(r) {
                    w.putLoad(.rax, base: .rsp, displacement: s)
                    w.putStore(.rax, base: .rcx, displacement: offset32)
                } else {
                    w.putStore(r, base: .rcx, displacement: offset32)
                }
            case .xmm(let i):
                w.putStoreXMM128(i, base: .rcx, displacement: offset32)
            case .x87(let count):
                // Stored by popping, then pushed back in reverse: the stack and its values as they were
                // (fstp/fld of the 80-bit format are exact). The 6 bytes after each value are not read.
                let n = max(0, min(count, 8))
                for i in 0..<n {
                    w.putStoreX87Pop(base: .rcx, displacement: offset32 + Int32(16 * i))
                }
                for i in (0..<n).reversed() { w.putLoadX87(base: .rcx, displacement: offset32 + Int32(16 * i)) }
            case .goroutineField(let field):
                w.putLoad(.rax, base: .r14, displacement: field)
                w.putStore(.rax, base: .rcx, displacement: offset32)
            case .stackWord(let o):
                w.putLoad(.rax, base: .rsp, displacement: frame + stackAdjust + o)
                w.putStore(.rax, base: .rcx, displacement: offset32)
            case .ticket:
                w.putLoadRIPRelative(.rdx, address: literal)
                w.putMovImm64(.rax, 1)
                w.putLockXadd(base: .rdx, displacement: Int32(RingGeometry.ticketOffset), .rax)
                w.putStore(.rax, base: .rcx, displacement: offset32)
                ticketOffset = offset32
            case .memory(let m):
                memory.append((m, offset32))
            }
        }
        if !memory.isEmpty {
            w.putPush(.rcx)
            w.putPush(.r11)
            for (m, offset) in memory {
                emitCopy(m, into: offset, frame: frame, stackAdjust: stackAdjust, slot: slot, w: &w)
            }
            w.putPop(.r11)
            w.putPop(.rcx)
        }

        // Publish: every store above is visible before this one (x86 keeps stores in order).
        w.putLea(.rax, base: .r11, displacement: 1)
        w.putStore(.rax, base: .rcx, displacement: Int32(RecordLayout.sequenceOffset))

        if let ticketOffset { emitWaitForAcknowledgement(ticketAt: ticketOffset, done: done, w: &w) }
        if probe.gate == .countsTailCall {
            emitPendingTailCallSlot(w: &w)
            w.putLockIncIndexed(base: .rdx, index: .rax, displacement: Int32(RingGeometry.pendingTailCallsOffset))
        }

        w.bind(done)
        for r in savedRegisters.reversed() { w.putPop(r) }
        w.putPopfq()
        w.putLea(.rsp, base: .rsp, displacement: ProbeWriter.redZone)
        return SlowPath(full: full, retry: retry, done: done,
                        lostCounter: Int32(RingGeometry.lostOffset + 8 * probe.kind.rawValue))
    }

    /// rdx = the ring, rax = this thread's slot in the table of tail calls in flight (tid in esi).
    private func emitPendingTailCallSlot(w: inout X86Writer) {
        w.putMov32(.rax, .rsi)
        w.putAnd32(.rax, UInt32(RingGeometry.pendingTailCallSlots - 1))
        w.putLoadRIPRelative(.rdx, address: literal)
    }

    /// A full bucket: in lossless mode wait for room while nstrace is alive (its heartbeat is recent);
    /// otherwise, or once it is not, count the record as lost. r11 still holds the bucket. The wait
    /// yields the CPU (sched_yield) rather than spin: on a machine with few CPUs the spinning threads
    /// would take them from the nstrace they wait for.
    func emitSlowPath(_ path: SlowPath, into w: inout X86Writer) {
        let lost = w.newLabel()
        w.bind(path.full)
        w.putLoadRIPRelative(.rcx, address: literal)
        w.putCmpByteImm(base: .rcx, displacement: Int32(RingGeometry.losslessOffset), 0)
        w.putJcc(.e, lost)
        emitHeartbeatIsStale(control: .rcx, then: lost, w: &w)
        // sched_yield. The kernel clobbers rcx and r11 (both saved for the program), and r11 holds the
        // bucket.
        w.putPush(.r11)
        w.putMovImm64(.rax, 24)
        w.putSyscall()
        w.putPop(.r11)
        w.putLoad(.rax, base: .r11, displacement: Int32(RingGeometry.headOffset))
        w.putJmp(path.retry)
        w.bind(lost)
        w.putLockInc(base: .r11, displacement: path.lostCounter)
        w.putJmp(path.done)
    }

    /// Jumps to `then` when nstrace's heartbeat is older than it allows (it is gone, or stuck).
    /// Signed: the heartbeat is stamped on another CPU, whose TSC may run a little ahead of this one's.
    /// Clobbers rax and rdx.
    private func emitHeartbeatIsStale(control: GPR, then: X86Writer.Label, w: inout X86Writer) {
        w.putRdtsc()
        w.putShl(.rdx, 32)
        w.putOr(.rax, .rdx)
        w.putSubLoad(.rax, base: control, displacement: Int32(RingGeometry.heartbeatOffset))
        w.putCmpLoad(.rax, base: control, displacement: Int32(RingGeometry.staleTicksOffset))
        w.putJcc(.g, then)
    }

    /// Spins until nstrace acknowledges the ticket in the record (rcx), or its heartbeat goes stale.
    private func emitWaitForAcknowledgement(ticketAt offset: Int32, done: X86Writer.Label, w: inout X86Writer) {
        let wait = w.newLabel()
        w.putLoad(.rsi, base: .rcx, displacement: offset)
        w.putLoadRIPRelative(.r11, address: literal)
        w.bind(wait)
        w.putCmpLoad(.rsi, base: .r11, displacement: Int32(RingGeometry.acknowledgedOffset))
        w.putJcc(.b, done)
        emitHeartbeatIsStale(control: .r11, then: done, w: &w)
        w.putMovImm64(.rax, 24)  // sched_yield
        w.putSyscall()
        w.putLoadRIPRelative(.r11, address: literal)
        w.putJmp(wait)
    }

    /// process_vm_readv on the process itself: a read the kernel checks, so a bad pointer costs a
    /// negative count, never a fault. The remote range is split at its first page boundary, since a
    /// partial read stops at an iovec that faults (a string that ends just before unmapped memory
    /// still reads up to there). The record and position are on the stack (pushed last).
    private func emitCopy(_ m: MemoryCapture, into offset: Int32, frame: Int32, stackAdjust: Int32,
                          slot: (GPR) -> Int32?, w: inout X86Writer) {
        let iovecs: Int32 = 48
        let below = 16 + iovecs  // the record and position, then the iovecs
        w.putLea(.rsp, base: .rsp, displacement: -iovecs)
        func load(_ dst: GPR, _ r: GPR) {
            if let s = slot(r) { w.putLoad(dst, base: .rsp, displacement: below + s) } else { w.putMov(dst, r) }
        }
        switch m.base {
        case .register(let r): load(.rsi, r)
        case .stackPointer: w.putLea(.rsi, base: .rsp, displacement: below + frame + stackAdjust)
        case .stackWord(let o): w.putLoad(.rsi, base: .rsp, displacement: below + frame + stackAdjust + o)
        }
        if m.offset != 0 { w.putLea(.rsi, base: .rsi, displacement: m.offset) }
        w.putMovImm64(.rdx, UInt64(m.maxBytes))
        if let lengthRegister = m.length {
            let keep = w.newLabel()
            load(.rax, lengthRegister)
            w.putCmpImm(.rax, Int32(m.maxBytes))
            w.putJcc(.ae, keep)
            w.putMov(.rdx, .rax)
            w.bind(keep)
        }
        // local = {record + offset + 8, rdx}
        w.putLoad(.rax, base: .rsp, displacement: iovecs + 8)
        w.putLea(.rax, base: .rax, displacement: offset + 8)
        w.putStore(.rax, base: .rsp, displacement: 0)
        w.putStore(.rdx, base: .rsp, displacement: 8)
        // remote[0] = {rsi, min(rdx, 4096 - rsi % 4096)}, remote[1] = the rest
        w.putStore(.rsi, base: .rsp, displacement: 16)
        w.putMov32(.rcx, .rsi)
        w.putAnd32(.rcx, 4095)
        w.putMovImm64(.rax, 4096)
        w.putSub(.rax, .rcx)
        let shorter = w.newLabel()
        w.putCmp(.rax, .rdx)
        w.putJcc(.be, shorter)
        w.putMov(.rax, .rdx)
        w.bind(shorter)
        w.putStore(.rax, base: .rsp, displacement: 24)
        w.putLeaIndexed(.rcx, base: .rsi, index: .rax, displacement: 0)
        w.putStore(.rcx, base: .rsp, displacement: 32)
        w.putMov(.rcx, .rdx)
        w.putSub(.rcx, .rax)
        w.putStore(.rcx, base: .rsp, displacement: 40)

        w.putMovImm64(.rax, 39)  // getpid: a forked child copies into itself, not its parent
        w.putSyscall()
        w.putMov(.rdi, .rax)
        w.putMov(.rsi, .rsp)
        w.putMovImm64(.rdx, 1)
        w.putLea(.r10, base: .rsp, displacement: 16)
        w.putMovImm64(.r8, 2)
        w.putMovImm64(.r9, 0)
        w.putMovImm64(.rax, 310)  // process_vm_readv
        w.putSyscall()
        w.putLoad(.rcx, base: .rsp, displacement: iovecs + 8)
        w.putStore(.rax, base: .rcx, displacement: offset)
        w.putLea(.rsp, base: .rsp, displacement: iovecs)
    }
}

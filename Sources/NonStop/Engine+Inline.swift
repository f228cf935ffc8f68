import Glibc
import Relocator
import Symbols

/// A window whose pad is written, waiting for every thread to be stopped to be patched in; and what to
/// do instead if it cannot be (an int3 where the window would have been).
struct PendingWindow {
    let window: InlineWindow
    let pad: any WindowTarget
    let function: TracedFunction
    /// Where the entry is (the function's, or after Go's stack check): the int3 goes there if the
    /// entry window cannot be written.
    let entry: UInt64
    /// nstrace's own site (r_brk) rather than a traced function's.
    var internalRole: Site.InternalRole? = nil
    /// A return window of a function watched for the traced functions that tail-call it (its address).
    var watches: UInt64? = nil
    /// The watched functions a tail call's window counts on: if one of them cannot be watched after all,
    /// the tail call keeps an int3.
    var dependsOn: Set<UInt64> = []
    /// A trap pad (jump strategy) and its int3s, recorded once the window is written.
    var trapPad: TrapPad? = nil
    var traps: [TrapSite] = []
}

extension Engine {
    /// The inline strategy's sites for these functions: pads written now, windows patched in with every
    /// thread stopped, int3s where no window is sound.
    func installInline(_ functions: [Function], in process: TracedProcess, image: ProcessImage,
                       using thread: TraceeThread) throws(TraceError) {
        let space = process.space
        guard let trace = try inlineTrace(for: process, using: thread) else {
            for function in functions { try installClassic(function, in: process, image: image, using: thread) }
            return
        }
        var pending: [PendingWindow] = []
        var fullyInline = 0, withFallbacks = 0
        let traced = Set(functions.map(\.address))
        for function in functions where !space.inlineFunctions.contains(function.address) {
            space.inlineFunctions.insert(function.address)
            let go = image.goRuntime(in: function.module)
            if go != nil, process.goRuntime == nil { process.goRuntime = go }
            let entry = InlineSites.entry(of: function, in: image, decoder: decoder)
            let memory = process.space.memory
            let decision = InlineSites.decide(for: function, in: image, decoder: decoder) { address, count in
                try? memory.read(address, count: count)
            }
            let plan = decision.plan
            guard plan.returnsSeenAtExits else {
                DebugLog.log("\(function.name): \(plan.fallbacks.map(\.reason).joined(separator: "; "))")
                try installClassic(function, in: process, image: image, using: thread)
                withFallbacks += 1
                continue
            }
            let tracedFunction = self.traced(function, signature: image.signature(of: function), returnsSeenAtExits: true)
            let environment = padEnvironment(trace, process: process, image: image, go: go)
            let captures = CapturePlan(maxString: configuration.maxStringLength,
                                       copiesMemory: ProcFS.statusField("Seccomp", of: process.pid) != "2", go: go,
                                       capturesValues: configuration.decodesValues,
                                       capturesReturnAddress: configuration.callerModule != nil, derefs: configuration.derefPointers)
            var fallbacks = plan.fallbacks
            // The callees of its tail calls (that are not traced themselves) get return windows first.
            let watched = Set(decision.tailCallees.map(\.address)).subtracting(traced)
            for callee in decision.tailCallees where watched.contains(callee.address) && !space.watchedFunctions.contains(callee.address) {
                space.watchedFunctions.insert(callee.address)
                pending += try watchWindows(of: callee, image: image, trace: trace, in: process, using: thread)
            }
            for window in plan.windows {
                let entryProbe = window.recordsEntry
                    ? probe(.entry(tracedFunction), .entry, captures.entry(tracedFunction.signature), go: go, in: trace) : nil
                var returnProbe: Probe?
                if window.recordsReturn {
                    returnProbe = probe(.exit(tracedFunction), .exit, captures.exit(tracedFunction.signature), go: go, in: trace)
                } else if window.tailCallTarget != nil {
                    returnProbe = probe(.tailCall(tracedFunction), .exit, [], go: go, in: trace, gate: .countsTailCall)
                }
                guard let pad = try buildPad(window, entryProbe, returnProbe, environment, in: process, using: thread) else {
                    fallbacks += fallbackSites(of: window, entry: entry, reason: "no pad could be placed within ±2 GiB")
                    continue
                }
                pending.append(PendingWindow(window: window, pad: pad, function: tracedFunction, entry: entry,
                                             dependsOn: window.tailCallTarget != nil ? watched : []))
            }
            if fallbacks.isEmpty { fullyInline += 1 } else { withFallbacks += 1 }
            for fallback in fallbacks {
                DebugLog.log("\(function.name): int3 at \(hex(fallback.address)) (\(fallback.kind.rawValue)): \(fallback.reason)")
                try armFallback(fallback, of: tracedFunction, in: process, using: thread)
            }
        }
        if !pending.isEmpty { try patchWindows(pending, in: process, using: thread) }
        // Quietly, as strace is: `nstrace list` says which sites keep an int3 and why.
        if fullyInline + withFallbacks > 0 {
            DebugLog.log("\(process.pid): inline: \(fullyInline) functions fully inline, \(withFallbacks) with int3s")
        }
    }

    /// A function traced as the jump strategy does: an int3 at its entry, its return watched at the
    /// caller's return address.
    func installClassic(_ function: Function, in process: TracedProcess, image: ProcessImage,
                        using thread: TraceeThread) throws(TraceError) {
        process.space.inlineFunctions.insert(function.address)
        let go = image.goRuntime(in: function.module)
        if go != nil, process.goRuntime == nil { process.goRuntime = go }
        let entry = InlineSites.entry(of: function, in: image, decoder: decoder)
        if let existing = process.space.site(at: entry) {
            if existing.entryOf == nil { existing.entryOf = traced(function, image) }
            return
        }
        try makeSite(at: entry, in: process, using: thread, entryOf: traced(function, image))
    }

    func probe(_ role: InlineProbe.Role, _ kind: Probe.Kind, _ captures: [Capture], go: GoRuntime?, in trace: InlineTrace,
               gate: Probe.Gate = .none) -> Probe {
        let id = trace.register(InlineProbe(role: role, captures: captures, go: go, derefs: configuration.derefPointers))
        return Probe(id: id, kind: kind, captures: captures, gate: gate)
    }

    /// Windows at every `ret` of a function a traced function tail-calls: they record (only while the
    /// thread has a tail call in flight) so that the tail-caller's return is seen.
    private func watchWindows(of callee: Function, image: ProcessImage, trace: InlineTrace, in process: TracedProcess,
                              using thread: TraceeThread) throws(TraceError) -> [PendingWindow] {
        let go = image.goRuntime(in: callee.module)
        let plan = InlineSites.returnSites(of: callee, in: image, decoder: decoder)
        let environment = padEnvironment(trace, process: process, image: image, go: go)
        let captures = CapturePlan(maxString: configuration.maxStringLength, copiesMemory: false, go: go,
                                   capturesValues: configuration.decodesValues)
        let watchedFunction = traced(callee, signature: nil)
        var windows: [PendingWindow] = []
        for window in plan.windows where window.recordsReturn {
            let returnProbe = probe(.watchedReturn, .other, captures.watchedReturn(), go: go, in: trace, gate: .whileTailCallPending)
            guard let pad = try buildPad(window, nil, returnProbe, environment, in: process, using: thread) else {
                // Not watched after all: its tail-callers keep int3s (patchWindows sees it).
                process.space.watchedFunctions.remove(callee.address)
                return []
            }
            windows.append(PendingWindow(window: window, pad: pad, function: watchedFunction, entry: callee.address,
                                         watches: callee.address))
        }
        return windows
    }

    /// The pad for a window, in scratch memory near it; nil when none can be had.
    func buildPad(_ window: InlineWindow, _ entryProbe: Probe?, _ returnProbe: Probe?, _ environment: PadEnvironment,
                          in process: TracedProcess, using thread: TraceeThread) throws(TraceError) -> InlinePad? {
        // Its size first (branch forms depend a little on the distance), with room for a longer form.
        guard case .success(let draft) = InlinePad.build(window: window, entryProbe: entryProbe, returnProbe: returnProbe,
                                                         environment: environment, at: window.start &+ 0x1000)
        else { return nil }
        guard let address = try scratch(draft.code.count + 64, near: window.start, in: process, using: thread) else { return nil }
        guard case .success(let pad) = InlinePad.build(window: window, entryProbe: entryProbe, returnProbe: returnProbe,
                                                       environment: environment, at: address),
              pad.code.count <= draft.code.count + 64
        else { return nil }
        try process.space.memory.write(pad.code, at: pad.address)
        return pad
    }

    /// The int3 sites that stand in for a window that cannot be written.
    private func fallbackSites(of window: InlineWindow, entry: UInt64, reason: String) -> [InlineFallback] {
        var sites: [InlineFallback] = []
        if window.recordsEntry { sites.append(InlineFallback(address: entry, kind: .entry, reason: reason)) }
        if window.recordsReturn, let ret = window.instructions.last {
            sites.append(InlineFallback(address: ret.address, kind: .exit, reason: reason))
        }
        return sites
    }

    func armFallback(_ fallback: InlineFallback, of function: TracedFunction, in process: TracedProcess,
                     using thread: TraceeThread) throws(TraceError) {
        let site: Site?
        if let existing = process.space.site(at: fallback.address) {
            site = existing
        } else {
            site = try makeSite(at: fallback.address, in: process, using: thread,
                                entryOf: fallback.kind == .entry ? function : nil)
        }
        guard let site else { return }
        switch fallback.kind {
        case .entry: if site.entryOf == nil { site.entryOf = function }
        case .exit: site.exitOf = function
        case .tailExit: site.tailExitOf = function
        }
    }

    // MARK: The ring

    /// The process's ring, made on first use (`sharedMemory`). nil (with a notice) when it cannot be made.
    func inlineTrace(for process: TracedProcess, using thread: TraceeThread) throws(TraceError) -> InlineTrace? {
        if let trace = process.space.inline { return trace }
        if ProcFS.statusField("Seccomp", of: process.pid) == "2" {
            notice(process, "process \(process.pid) runs under a seccomp filter: nstrace makes no system call in it for a ring; traced with int3s (jump strategy)")
            return nil
        }
        guard !process.space.regions.isEmpty else { return nil }
        let geometry = InlineTrace.geometry(megabytes: configuration.ringMegabytes)
        let size = UInt64(geometry.totalSize)
        guard let (mapped, ringFD) = try sharedMemory(size, in: process, using: thread) else {
            notice(process, "the inline ring could not be made in process \(process.pid): traced with int3s (jump strategy)")
            return nil
        }
        defer { close(ringFD) }
        let ring: EventRing
        do { ring = try EventRing(geometry: geometry, fd: ringFD) } catch {
            notice(process, "the inline ring could not be mapped (\(error)): traced with int3s (jump strategy)")
            return nil
        }
        // A lossless pad waits while nstrace's heartbeat is under a second old.
        ring.initialize(lossless: configuration.lossless, staleTicks: clock.ticks(in: 1_000_000_000))
        let trace = InlineTrace(ring: ring, ringAddress: mapped, owner: process)
        process.space.inline = trace
        inlineTraces.append(trace)
        if ticker == nil { ticker = DrainTicker() }
        ticker?.keepAlive(ring)
        DebugLog.log("\(process.pid): ring of \(size >> 20) MiB at \(hex(mapped))")
        return trace
    }

    /// Memory the tracee and nstrace share: a memfd the tracee creates and maps (MAP_SHARED, so a fork
    /// child writes into it too, and MAP_POPULATE, so no pad takes a page fault in it), which nstrace
    /// opens through /proc; the tracee's descriptor is closed again. The tracee's address and nstrace's
    /// descriptor (the caller closes it), or nil when it cannot be made.
    func sharedMemory(_ size: UInt64, in process: TracedProcess,
                      using thread: TraceeThread) throws(TraceError) -> (address: UInt64, fd: Int32)? {
        guard let region = process.space.regions.first else { return nil }
        var ours: Int32 = -1
        let mapped: UInt64? = try inject(in: process, using: thread) { (injection) throws(TraceError) -> UInt64? in
            let name = region.start + ScratchRegion.nameOffset  // "nstrace"
            let fd = try injection.call(SystemCall.memfdCreate, [name, 1 /* MFD_CLOEXEC */], gadget: region.syscallAddress)
            guard fd >= 0 else { return nil }
            defer { _ = try? injection.call(SystemCall.close, [UInt64(fd)], gadget: region.syscallAddress) }
            guard try injection.call(SystemCall.ftruncate, [UInt64(fd), size], gadget: region.syscallAddress) == 0 else { return nil }
            let flags = UInt64(MAP_SHARED) | 0x8000
            let address = try injection.call(SystemCall.mmap, [0, size, UInt64(PROT_READ | PROT_WRITE), flags, UInt64(fd), 0],
                                             gadget: region.syscallAddress)
            guard address > 0, address < 0x8000_0000_0000 else { return nil }
            ours = open("/proc/\(process.pid)/fd/\(fd)", O_RDWR | O_CLOEXEC)
            return UInt64(address)
        }
        guard let mapped, ours >= 0 else {
            if ours >= 0 { close(ours) }
            return nil
        }
        return (mapped, ours)
    }

    /// How pads in this module learn their thread and bucket: in Go code from the goroutine (R14), else
    /// from glibc's TCB when that can be verified for every thread, else by asking the kernel.
    func padEnvironment(_ trace: InlineTrace, process: TracedProcess, image: ProcessImage,
                                go: GoRuntime?) -> PadEnvironment {
        if let go, let m = go.mOffset.flatMap({ Int32(exactly: $0) }), let procid = go.procidOffset.flatMap({ Int32(exactly: $0) }),
           let goid = Int32(exactly: go.goidOffset) {
            return PadEnvironment(ringAddress: trace.ringAddress, geometry: trace.ring.geometry,
                                  threadIdentity: .goM(mOffset: m, procidOffset: procid), bucketKey: .goroutine(goidOffset: goid))
        }
        return PadEnvironment(ringAddress: trace.ringAddress, geometry: trace.ring.geometry,
                              threadIdentity: threadIdentity(of: process, image: image), bucketKey: .thread)
    }

    /// glibc keeps each thread's tid in its TCB, at the offset libthread_db reads from
    /// `_thread_db_pthread_tid` ({bits, count, offset}). Used only if every thread's TCB holds its tid
    /// there now; otherwise gettid(2) in every pad.
    func threadIdentity(of process: TracedProcess, image: ProcessImage) -> PadEnvironment.ThreadIdentity {
        if let known = process.space.threadIdentity { return known }
        var identity = PadEnvironment.ThreadIdentity.syscall
        defer { process.space.threadIdentity = identity }
        guard let libc = image.modules.first(where: { $0.name.hasPrefix("libc.so") }),
              let descriptor = image.address(ofSymbol: "_thread_db_pthread_tid", in: libc),
              let bytes = try? process.space.memory.read(descriptor, count: 12), bytes.count == 12
        else { return identity }
        let fields = (0..<3).map { i in UInt32(truncatingIfNeeded: littleEndianWord(bytes[(i * 4)..<(i * 4 + 4)])) }
        guard fields[0] == 32, fields[2] < 0x4000, let offset = Int32(exactly: fields[2]) else { return identity }
        for thread in process.threads.values {
            guard let regs = try? Ptrace.getRegs(thread.tid) else { continue }
            guard regs.fs_base != 0, let word = try? process.space.memory.read(regs.fs_base &+ UInt64(offset), count: 4),
                  word == withUnsafeBytes(of: thread.tid.littleEndian, { Array($0) })
            else {
                DebugLog.log("\(thread.tid): its TCB does not hold its tid at +\(hex(UInt64(offset))): pads call gettid")
                return identity
            }
        }
        identity = .tcb(offset: offset)
        return identity
    }
}

import Glibc
import Relocator
import Symbols

extension Engine {
    /// Puts breakpoints on every matching function of the process (and on the dynamic linker's
    /// r_brk, to follow dlopen), using `thread` (stopped) to map scratch memory.
    func install(_ process: TracedProcess, using thread: TraceeThread) throws(TraceError) {
        if ProcFS.usesShadowStack(process.pid) {
            // Emulated calls and returns would not update the shadow stack: the first return would
            // kill the process with a control-protection fault.
            notice(process, "process \(process.pid) runs with a CET shadow stack; nstrace leaves it untraced")
            process.installed = true
            return
        }
        let image: ProcessImage
        let firstInstall = process.image == nil
        do {
            if let existing = process.image {
                let before = Set(existing.modules)
                try existing.refresh()
                image = existing
                // A dlclose'd library took its sites with it.
                let vanished = before.subtracting(existing.modules).map { $0.start..<$0.end }
                process.space.vanishedModules += vanished
                process.followed.forget(vanished)
                process.unwinder = nil  // it reported the old set of modules
                lastCallerModule = nil
            } else {
                image = try ProcessImage(pid: process.pid)
                process.image = image
            }
        } catch {
            notice(process, "cannot read symbols: \(error)")
            process.installed = true
            return
        }
        let fresh = image.modules.filter { !process.installedModules.contains($0) }
        process.installedModules = Set(image.modules)
        let matched = !configuration.tracesFunctions ? [] : fresh.flatMap { module in
            image.functions(in: module).filter(configuration.pattern.matches)
        }
        // An indirect function is traced as the implementation its resolver chose, read from the GOT
        // slots the dynamic linker filled: at attach, at the program's entry point and after a dlopen
        // (r_brk), the modules present have been relocated.
        let memory = process.space.memory
        var (matching, unresolved) = image.traceTargets(matched, pattern: configuration.pattern) { address, count in
            try? memory.read(address, count: count)
        }
        for failure in unresolved {
            // No slot bound yet (lazy binding, or a dlopen'd module not relocated yet): ask the resolver.
            guard let target = try callResolver(of: failure.function, in: process, using: thread),
                  let implementation = image.implementation(of: failure.function, at: target)
            else {
                notice(process, "\(failure): it is not traced")
                continue
            }
            DebugLog.log("\(failure.function.name): its resolver, called, returned \(hex(target))")
            if !matching.contains(where: { $0.address == implementation.address }) { matching.append(implementation) }
        }
        DebugLog.log("\(process.pid): \(fresh.count) new modules, \(matching.count) matching functions")
        if firstInstall, process.launched, matching.isEmpty, configuration.tracesFunctions {
            // Attach refuses a pattern that matches nothing before touching anything; a launched program's
            // libraries are known only now, and some may come later with dlopen.
            notice(process, "no function matches '\(configuration.pattern.source)' in the program or the libraries it started with; "
                + "nstrace keeps watching libraries loaded later")
        }
        let followed = followCallees(from: matching.map { ($0, 0) }, in: process, image: image)
        matching += followed.callees
        try arm(matching, in: process, image: image, using: thread)
        try armIndirectCalls(followed.indirectCalls, in: process, using: thread)
        if !process.installed { try watchDynamicLinker(process, image, using: thread) }
        process.installed = true
    }

    /// Traces `functions` as the strategy says: inline windows, trap pads (jump), or an int3 at the
    /// entry (step, and a setjmp-like function under any strategy: its second returns come back to the
    /// caller's return address, which a longjmp reaches with no `ret` of it, so an int3 watches it).
    func arm(_ functions: [Function], in process: TracedProcess, image: ProcessImage, using thread: TraceeThread) throws(TraceError) {
        var inline: [Function] = [], trapped: [Function] = []
        for function in functions {
            if let resolver = function.selectedBy {
                DebugLog.log("\(function.name): indirect function at \(hex(resolver)) runs \(hex(function.address)) (\(function.aliases.joined(separator: ", ")))")
            }
            switch configuration.strategy {
            case .inline where !function.returnsTwice: inline.append(function)
            case .jump where !function.returnsTwice: trapped.append(function)
            default: try installClassic(function, in: process, image: image, using: thread)
            }
        }
        if !inline.isEmpty { try installInline(inline, in: process, image: image, using: thread) }
        if !trapped.isEmpty { try installTrapped(trapped, in: process, image: image, using: thread) }
    }

    /// What an indirect function's resolver returns, called in `thread` (stopped) with a return into an
    /// int3 in scratch; nil when it could not be called or did not come back.
    private func callResolver(of ifunc: Function, in process: TracedProcess,
                              using thread: TraceeThread) throws(TraceError) -> UInt64? {
        guard let trap = try scratch(1, near: ifunc.address, in: process, using: thread) else { return nil }
        do { try process.space.memory.write([0xcc], at: trap) } catch { return nil }
        do {
            return try inject(in: process, using: thread) { (injection) throws(TraceError) in
                try injection.callFunction(at: ifunc.address, returningTo: trap)
            }
        } catch {
            if error.threadGone { throw error }
            DebugLog.log("\(ifunc.name): calling its resolver failed: \(error)")
            return nil
        }
    }

    func traced(_ function: Function, _ image: ProcessImage) -> TracedFunction {
        traced(function, signature: image.signature(of: function))
    }

    /// `function` as events name it: shown demangled unless `--no-demangle`, with its symbol beside.
    func traced(_ function: Function, signature: Signature?, returnsSeenAtExits: Bool = false) -> TracedFunction {
        TracedFunction(name: function.shownName(demangling: configuration.demangles), symbol: function.name,
                       module: function.module.name, address: function.address, signature: signature,
                       returnsSeenAtExits: returnsSeenAtExits, returnsTwice: function.returnsTwice,
                       isCallee: configuration.followCalls != nil && !configuration.pattern.matches(function))
    }

    /// Decodes the instruction at `address`, plans how to run it elsewhere under the engine's
    /// strategy, and arms a breakpoint there. nil (said once, as a notice) when it cannot.
    @discardableResult
    func makeSite(at address: UInt64, in process: TracedProcess, using thread: TraceeThread,
                  entryOf function: TracedFunction? = nil) throws(TraceError) -> Site? {
        let space = process.space
        let bytes: [UInt8]
        do { bytes = try space.originalCode(at: address, count: 16) } catch {
            refuse(process, address, function, "its code cannot be read (\(error))")
            return nil
        }
        guard !bytes.isEmpty, let insn = decoder.decode(bytes, at: address) else {
            refuse(process, address, function, "the bytes there do not decode as an instruction")
            return nil
        }
        if bytes[0] == 0xcc, let file = process.image?.fileBytes(at: address, count: 1), file.first != 0xcc {
            // An int3 in memory that the file does not have and nstrace did not write: another tracer's.
            // The kernel gives a uprobe's traps to the uprobe alone, so a breakpoint here would see nothing.
            refuse(process, address, function, "another tracer's breakpoint is there (a uprobe: bpftrace, perf, SystemTap; or a "
                   + "debugger's int3); the inline and jump strategies can trace past it where a window starts at the next instruction")
            return nil
        }
        // What `nstrace list` says, decided in one place; then what only the live process can refuse.
        if let refusal = Traceability.refusal(of: insn, strategy: configuration.strategy) {
            refuse(process, address, function, refusal.reason)
            return nil
        }
        var jumpPlan: RelocationPlan?
        switch configuration.strategy {
        case .jump, .inline:
            var plan = Relocator.trampolinePlan(insn, at: address)  // emulated or refused: no trampoline
            if plan.kind == .trampoline || isPush(plan) {
                // The longest trampoline: a 15-byte instruction and a 5-byte jump back (it is near).
                guard let chunk = try scratchOrRefuse(32, near: address, in: process, using: thread, for: function) else {
                    refuse(process, address, function, "no scratch memory within ±2 GiB")
                    return nil
                }
                plan = Relocator.trampolinePlan(insn, at: chunk)
                if plan.code.count > 32 {
                    refuse(process, address, function, "its trampoline would not fit its scratch chunk")
                    return nil
                }
            }
            if let refusal = plan.refusal {
                refuse(process, address, function, refusal.reason)
                return nil
            }
            jumpPlan = plan
        case .step:
            break
        }
        let site = Site(address: address, originalByte: bytes[0], instruction: insn, jumpPlan: jumpPlan)
        site.entryOf = function
        do { try space.arm(site) } catch {
            // A MAP_SHARED mapping (a double-mapped JIT, say) refuses /proc/PID/mem writes.
            refuse(process, address, function, "a breakpoint cannot be written there (\(error))")
            return nil
        }
        statistics.sitesArmed += 1
        publishStatus()
        DebugLog.log("site \(hex(address)) \(insn) → \(jumpPlan?.description ?? "step")")
        return site
    }

    private func isPush(_ plan: RelocationPlan) -> Bool {
        if case .push? = plan.emulation { return true }
        return false
    }

    private func refuse(_ process: TracedProcess, _ address: UInt64, _ function: TracedFunction?, _ reason: String) {
        guard refusedSites.insert(address).inserted else { return }
        if let function, function.isCallee {
            // Found by --follow-calls, not named by the user: a notice for each of the runtime's
            // untraceable functions would bury the trace.
            DebugLog.log("\(function.name) (followed) is untraceable: \(reason)")
            return
        }
        let what = function.map { "\($0.name) is untraceable" } ?? "return site \(hex(address)) is untraceable"
        notice(process, "\(what): \(reason)")
    }

    /// `count` bytes of scratch within reach of `address`, mapping a new region (through `thread`)
    /// when none near has room.
    func scratch(_ count: Int, near address: UInt64, in process: TracedProcess,
                 using thread: TraceeThread) throws(TraceError) -> UInt64? {
        if let chunk = process.space.allocate(count, near: address) { return chunk }
        guard process.space.syscallGadget != nil || allStopped(process) else { return nil }
        guard try inject(in: process, using: thread, { (injection) throws(TraceError) in
            try process.space.mapRegion(near: address, using: &injection)
        }) != nil else { return nil }
        DebugLog.log("\(process.pid): mapped scratch near \(hex(address))")
        return process.space.allocate(count, near: address)
    }

    /// Scratch for one site; a failure to get it makes that site untraceable, not the whole trace
    /// (unless the thread is gone).
    private func scratchOrRefuse(_ count: Int, near address: UInt64, in process: TracedProcess,
                                 using thread: TraceeThread, for function: TracedFunction?) throws(TraceError) -> UInt64? {
        do {
            return try scratch(count, near: address, in: process, using: thread)
        } catch {
            if error.threadGone { throw error }
            refuse(process, address, function, "no scratch memory could be mapped near it (\(error))")
            return nil
        }
    }

    /// Runs system calls in `thread` (stopped): signals that arrive meanwhile are held for it, the
    /// thread is left in the trap stop of the last step (a signal-delivery-stop), and a thread that
    /// ends meanwhile is taken off the books.
    func inject<T>(in process: TracedProcess, using thread: TraceeThread,
                   _ body: (inout SyscallInjection) throws(TraceError) -> T) throws(TraceError) -> T {
        var injection = SyscallInjection(tid: thread.tid, memory: process.space.memory)
        defer {
            thread.heldSignals += injection.held
            if injection.stepped { thread.holdStop(.signalDelivery) }
            if let end = injection.ended, let ending = end.ending { threadEnded(end.tid, ending) }
        }
        return try body(&injection)
    }

    /// Whether no thread of the process can run (borrowing bytes at a thread's RIP is safe then).
    /// A stepping thread counts as stopped: it runs nothing but its slot's one instruction.
    func allStopped(_ process: TracedProcess) -> Bool {
        process.threads.values.allSatisfy {
            switch $0.state {
            case .running, .interruptPending, .inVfork: false
            case .stepping, .groupStopped, .held, .exiting: true
            }
        }
    }

    /// A breakpoint on the return address of a traced call, so its return is seen.
    /// `continuationOf`: the setjmp-like function called from there, whose later returns arrive there.
    func ensureReturnSite(at address: UInt64, in process: TracedProcess, using thread: TraceeThread,
                          continuationOf: TracedFunction? = nil) throws(TraceError) -> Bool {
        if let site = process.space.site(at: address) {
            site.isReturnSite = true
            if site.continuationOf == nil { site.continuationOf = continuationOf }
            return true
        }
        // Only in a module's code: a return address in anonymous memory (JIT code, a trampoline of
        // someone else's) may be freed and reused, and an int3 there would outlive the code.
        if process.image == nil { process.image = try? ProcessImage(pid: process.pid) }  // a forked child
        guard let image = process.image, image.module(containing: address) != nil else {
            refuse(process, address, nil, "the caller's code is not in any module (JIT or anonymous memory); returns there are not seen")
            return false
        }
        guard let site = try makeSite(at: address, in: process, using: thread) else { return false }
        site.isReturnSite = true
        site.continuationOf = continuationOf
        return true
    }

    /// The dynamic linker calls r_brk (_dl_debug_state) around every dlopen and dlclose; a breakpoint
    /// there lets nstrace trace libraries loaded later.
    func watchDynamicLinker(_ process: TracedProcess, _ image: ProcessImage, using thread: TraceeThread) throws(TraceError) {
        guard let linker = image.modules.first(where: { $0.name.hasPrefix("ld-linux") || $0.name.hasPrefix("ld64") }),
              let rDebug = image.address(ofSymbol: "_r_debug", in: linker)
        else { return }
        guard let rBrk = try? process.space.memory.readWord(at: rDebug + 16), rBrk != 0 else { return }
        if configuration.strategy == .inline, try watchDynamicLinkerInline(process, image, rBrk: rBrk, rDebug: rDebug, using: thread) {
            return
        }
        var site = process.space.site(at: rBrk)
        if site == nil { site = try makeSite(at: rBrk, in: process, using: thread) }
        site?.internalRole = .dynamicLinker(rDebug: rDebug)
    }

    /// r_brk as an inline window whose pad records the change and waits until nstrace has put the new
    /// libraries' sites in: no int3 left behind if nstrace is killed. False when no window fits.
    private func watchDynamicLinkerInline(_ process: TracedProcess, _ image: ProcessImage, rBrk: UInt64, rDebug: UInt64,
                                          using thread: TraceeThread) throws(TraceError) -> Bool {
        guard let trace = try inlineTrace(for: process, using: thread),
              let function = image.function(containing: rBrk), function.address == rBrk
        else { return false }
        let plan = InlineSites.plan(for: function, in: image, decoder: decoder, isInternal: true)
        guard let window = plan.windows.first(where: { $0.recordsEntry && $0.start == rBrk }) else { return false }
        let probe = probe(.linkMap(rDebug: rDebug), .other, [.ticket], go: nil, in: trace)
        let environment = padEnvironment(trace, process: process, image: image, go: nil)
        guard let pad = try buildPad(window, probe, nil, environment, in: process, using: thread) else { return false }
        let watched = traced(function, signature: nil)
        try patchWindows([PendingWindow(window: window, pad: pad, function: watched, entry: rBrk,
                                        internalRole: .dynamicLinker(rDebug: rDebug))], in: process, using: thread)
        return true
    }

    /// The first scratch region of an address space, which also holds the `syscall` instruction later
    /// injections use. Only while no other thread of the address space can run.
    func mapFirstRegion(_ process: TracedProcess, near address: UInt64, using thread: TraceeThread) throws(TraceError) {
        guard process.space.regions.isEmpty else { return }
        guard try inject(in: process, using: thread, { (injection) throws(TraceError) in
            try process.space.mapRegion(near: address, using: &injection)
        }) != nil else {
            throw TraceError("map scratch memory", tid: thread.tid, errno: ENOMEM)
        }
    }

    /// After exec: a breakpoint on the program's entry point, where the libraries it was linked with
    /// are loaded and its functions can be found. Only this thread exists now.
    func prepareEntry(_ process: TracedProcess, using thread: TraceeThread) throws(TraceError) {
        let entryPoint = ProcFS.entryPoint(of: process.pid)
        let regs = try Ptrace.getRegs(thread.tid)
        try mapFirstRegion(process, near: entryPoint ?? regs.rip, using: thread)
        guard let entry = entryPoint else {
            try install(process, using: thread)
            return
        }
        var site = process.space.site(at: entry)
        if site == nil { site = try makeSite(at: entry, in: process, using: thread) }
        guard let site else {
            try install(process, using: thread)
            return
        }
        site.internalRole = .programEntry
    }
}

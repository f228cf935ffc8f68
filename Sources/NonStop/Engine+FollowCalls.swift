import Glibc
import Relocator
import Symbols

/// What `--follow-calls N` has followed in one process image.
///
/// The functions the pattern matches are roots (depth 0); whatever a function at depth d < N calls is
/// followed at depth d + 1: direct calls found by decoding the caller (`FunctionAnalysis`), calls
/// through the PLT or a GOT slot to the function the slot is bound to (in any module: libc's `strlen`
/// as its implementation, like any indirect function), and calls through a register or memory by a
/// breakpoint on the call instruction, whose hit reads where the call goes. Which of the followed
/// calls are shown — only inside a root's call, at most N below it — is the renderers' filter
/// (`TracedFunction.isCallee`): the engine traces a followed function everywhere.
struct FollowedCalls {
    /// Functions followed (their entry) → the fewest calls from a root to them.
    var depths: [UInt64: Int] = [:]
    /// Callees named by a slot whose symbol no loaded module defines yet → their depth: followed when a
    /// library that defines one is loaded.
    var pendingNames: [String: Int] = [:]
    /// Indirect calls that have their breakpoint.
    var callSites: Set<UInt64> = []

    /// A dlclose'd library's functions and calls went with it.
    mutating func forget(_ gone: [Range<UInt64>]) {
        guard !gone.isEmpty else { return }
        func vanished(_ address: UInt64) -> Bool { gone.contains { $0.contains(address) } }
        depths = depths.filter { !vanished($0.key) }
        callSites = callSites.filter { !vanished($0) }
    }
}

/// A call through a register or memory, in a followed function.
struct IndirectCall {
    let address: UInt64
    let caller: UInt64
}

/// Where a call goes, as far as it can be known before it runs.
enum Callee {
    case function(Function)
    /// Through a slot bound to a symbol no loaded module defines.
    case unloaded(String)
    /// Known only when the call runs.
    case atRunTime
    /// Into the middle of a function, or into code no module describes.
    case unknown
}

extension Engine {
    /// Follows the calls of `seeds` (functions at a depth) to `configuration.followCalls` deep, and
    /// of the callees of slots that names libraries loaded since. Returns the functions followed for
    /// the first time (to be traced), and the indirect calls of the followed functions that have no
    /// breakpoint yet.
    func followCallees(from seeds: [(Function, Int)], in process: TracedProcess,
                       image: ProcessImage) -> (callees: [Function], indirectCalls: [IndirectCall]) {
        guard let limit = configuration.followCalls else { return ([], []) }
        var followed = process.followed
        defer { process.followed = followed }
        var queue: [(Function, Int)] = [], fresh: [Function] = [], indirect: [IndirectCall] = []
        func visit(_ function: Function, _ depth: Int) {
            if let known = followed.depths[function.address], known <= depth { return }
            if followed.depths[function.address] == nil, depth > 0 { fresh.append(function) }
            followed.depths[function.address] = depth
            queue.append((function, depth))
        }
        for (function, depth) in seeds { visit(function, depth) }
        for (name, depth) in followed.pendingNames {
            guard let function = image.definition(of: name), case .function(let callee) = self.callee(function, image, process) else { continue }
            followed.pendingNames[name] = nil
            visit(callee, depth)
        }
        var next = 0
        while next < queue.count {
            let (function, depth) = queue[next]
            next += 1
            guard depth < limit, let bytes = image.fileBytes(of: function) else { continue }
            let analysis = FunctionAnalysis(bytes: bytes, at: function.address, size: function.size, decoder: decoder)
            for call in analysis.outgoingCalls {
                switch callee(of: call, image, process) {
                case .function(let callee):
                    visit(callee, depth &+ 1)
                case .unloaded(let name):
                    followed.pendingNames[name] = min(followed.pendingNames[name] ?? Int.max, depth &+ 1)
                case .atRunTime:
                    if !followed.callSites.contains(call.address) { indirect.append(IndirectCall(address: call.address, caller: function.address)) }
                case .unknown:
                    continue
                }
            }
        }
        DebugLog.log("\(process.pid): follow-calls: \(fresh.count) callees, \(indirect.count) indirect calls, \(followed.pendingNames.count) names not loaded")
        return (fresh, indirect)
    }

    /// Breakpoints on indirect calls: a hit follows where the call goes (`followIndirectCall`). A call
    /// inside an inline window's relocated code runs from the pad, where no breakpoint can be: it is not
    /// followed (said with `--debug`).
    func armIndirectCalls(_ calls: [IndirectCall], in process: TracedProcess, using thread: TraceeThread) throws(TraceError) {
        for call in calls where !process.followed.callSites.contains(call.address) {
            process.followed.callSites.insert(call.address)
            if process.space.window(covering: call.address) != nil {
                DebugLog.log("follow-calls: the call at \(hex(call.address)) runs from an inline window's pad; not followed")
                continue
            }
            var site = process.space.site(at: call.address)
            if site == nil { site = try makeSite(at: call.address, in: process, using: thread) }
            site?.indirectCallIn = call.caller
        }
    }

    /// A hit on an indirect call of a followed function: where the call goes, followed (and traced as
    /// the strategy traces any function) before the thread makes the call.
    func followIndirectCall(at site: Site, in caller: UInt64, _ thread: TraceeThread, regs: user_regs_struct) throws(TraceError) {
        let process = thread.process
        guard let limit = configuration.followCalls, let depth = process.followed.depths[caller], depth < limit else { return }
        if process.image == nil { process.image = try? ProcessImage(pid: process.pid) }  // a forked child
        guard let image = process.image, let call = OutgoingCall(site.instruction),
              let target = try? call.target.resolve(regs, process.space.memory)
        else { return }
        guard case .function(let function) = callee(at: target, image, process) else {
            DebugLog.log("follow-calls: the call at \(hex(site.address)) goes to \(hex(target)), the start of no function")
            return
        }
        let (callees, indirect) = followCallees(from: [(function, depth &+ 1)], in: process, image: image)
        try arm(callees, in: process, image: image, using: thread)
        try armIndirectCalls(indirect, in: process, using: thread)
    }

    private func callee(of call: OutgoingCall, _ image: ProcessImage, _ process: TracedProcess) -> Callee {
        switch call.staticTarget {
        case .address(let address)?: return callee(at: address, image, process)
        case .slot(let slot)?: return callee(throughSlot: slot, image, process)
        case nil: return .atRunTime
        }
    }

    /// The function a PLT entry at `address` leads to, or the function that starts there. The PLT is
    /// asked first: unwind information describes `.plt.sec` as one unnamed function starting at its
    /// first entry.
    private func callee(at address: UInt64, _ image: ProcessImage, _ process: TracedProcess) -> Callee {
        if let bytes = image.fileBytes(at: address, count: 16), let slot = PLTEntry.slot(bytes, at: address, decoder: decoder),
           image.symbolBound(toSlot: slot) != nil {
            return callee(throughSlot: slot, image, process)
        }
        guard let function = image.function(startingAt: address) else { return .unknown }
        return callee(function, image, process)
    }

    /// What a GOT slot leads to: the function its word points to once bound (under lazy binding it
    /// still points into the caller's PLT), else the definition of the symbol it is bound to.
    private func callee(throughSlot slot: UInt64, _ image: ProcessImage, _ process: TracedProcess) -> Callee {
        let name = image.symbolBound(toSlot: slot)
        let definition = name.flatMap(image.definition)
        if let word = try? process.space.memory.readWord(at: slot), let bound = image.function(startingAt: word) {
            // An indirect function's slot holds the implementation: named as the callers name it.
            if let definition, definition.isIndirect, case .function(let named) = callee(definition, image, process),
               named.address == bound.address {
                return .function(named)
            }
            return callee(bound, image, process)
        }
        if let definition { return callee(definition, image, process) }
        return name.map(Callee.unloaded) ?? .unknown
    }

    /// `function` as a callee: an indirect function is its implementation in this process; the cold
    /// part GCC splits off a function (`f.cold`) is a part of its caller, jumped to, not called.
    private func callee(_ function: Function, _ image: ProcessImage, _ process: TracedProcess) -> Callee {
        if function.name.hasSuffix(".cold") || function.name.contains(".cold.") { return .unknown }
        guard function.isIndirect else { return .function(function) }
        let memory = process.space.memory
        switch image.implementation(of: function, memory: { address, count in try? memory.read(address, count: count) }) {
        case .success(let implementation): return .function(implementation)
        case .failure(let failure):
            DebugLog.log("follow-calls: \(failure)")
            return .unknown
        }
    }
}

import Relocator
import Symbols

/// The inline strategy's sites for one function, decided from the module file's bytes (never from
/// memory, where another tracer's int3 may sit): the one decision both `nstrace list` and the engine
/// use.
public enum InlineSites {
    /// A function's sites, and the functions its tail calls go to (transitively), whose returns must
    /// be watched: the function returns when they do.
    public struct Decision {
        public let plan: InlinePlan
        public let tailCallees: [Function]
    }

    /// `memory` reads the live process (GOT slots, for tail calls through the PLT); nil for a file.
    public static func plan(for function: Function, in image: ProcessImage, decoder: Decoder, isInternal: Bool = false,
                            memory: ((UInt64, Int) -> [UInt8]?)? = nil) -> InlinePlan {
        decide(for: function, in: image, decoder: decoder, isInternal: isInternal, memory: memory).plan
    }

    /// A tail call's window is kept only when the callee's returns can all be watched by windows of
    /// their own (every `ret` a window, every tail call of its own to such a function, at most eight
    /// deep); else the tail call keeps an int3, and its return is seen at the caller's return address.
    public static func decide(for function: Function, in image: ProcessImage, decoder: Decoder,
                              isInternal: Bool = false, memory: ((UInt64, Int) -> [UInt8]?)? = nil) -> Decision {
        let plan = sites(for: function, in: image, decoder: decoder, isInternal: isInternal, tracesEntry: true)
        guard !plan.tailCallTargets.isEmpty else { return Decision(plan: plan, tailCallees: []) }
        var callees: [UInt64: Function] = [function.address: function]
        for target in plan.tailCallTargets.sorted() {
            if let reason = watch(target, in: image, decoder: decoder, memory: memory, depth: 0, into: &callees) {
                let entry = self.entry(of: function, in: image, decoder: decoder)
                return Decision(plan: plan.withoutTailCallWindows(entry: entry, because: "a tail call whose callee's returns cannot be watched (\(reason)): its return is seen at the caller's return address"),
                                tailCallees: [])
            }
        }
        callees[function.address] = nil
        return Decision(plan: plan, tailCallees: callees.values.sorted { $0.address < $1.address })
    }

    /// The sites of a function watched only for its returns (it is tail-called by a traced function).
    public static func returnSites(of function: Function, in image: ProcessImage, decoder: Decoder) -> InlinePlan {
        sites(for: function, in: image, decoder: decoder, isInternal: false, tracesEntry: false)
    }

    /// nil when every return of the function at `address` (and of what it tail-calls) has a window.
    private static func watch(_ address: UInt64, in image: ProcessImage, decoder: Decoder,
                              memory: ((UInt64, Int) -> [UInt8]?)?, depth: Int,
                              into callees: inout [UInt64: Function]) -> String? {
        if callees[address] != nil { return nil }
        guard depth < 8 else { return "tail calls more than eight deep" }
        guard let callee = image.unnamedFunction(at: address)
                ?? image.function(containing: address).flatMap({ $0.address == address ? $0 : nil })
        else {
            // A PLT stub (`jmp [rip+GOT]`): the callee is the function its GOT slot holds in the running
            // process (bound at load with BIND_NOW, or by a first call); a file says nothing of it.
            switch pltTarget(address, in: image, decoder: decoder, memory: memory) {
            case .success(let resolved):
                return watch(resolved, in: image, decoder: decoder, memory: memory, depth: depth + 1, into: &callees)
            case .failure(let reason):
                return reason.reason
            }
        }
        let plan = returnSites(of: callee, in: image, decoder: decoder)
        guard plan.returnsSeenAtExits else { return "the code of \(callee.name) cannot be analysed" }
        if let site = plan.fallbacks.first { return "\(callee.name): \(site.reason)" }
        callees[address] = callee
        for target in plan.tailCallTargets.sorted() {
            if let reason = watch(target, in: image, decoder: decoder, memory: memory, depth: depth + 1, into: &callees) {
                return reason
            }
        }
        return nil
    }

    /// Where the PLT stub at `address` jumps: the function its GOT slot holds now.
    private static func pltTarget(_ address: UInt64, in image: ProcessImage, decoder: Decoder,
                                  memory: ((UInt64, Int) -> [UInt8]?)?) -> Result<UInt64, Refusal> {
        guard let bytes = image.fileBytes(at: address, count: 16),
              var stub = decoder.decode(bytes, at: address)
        else { return .failure(Refusal(reason: "\(hex(address)) is code no symbol names (a stripped static function?): its extent is unknown")) }
        if stub.isEndBranch, let next = decoder.decode(Array(bytes.dropFirst(stub.length)), at: stub.next) { stub = next }
        guard stub.isJumpThroughMemory, let slot = stub.ripRelativeTarget else {
            return .failure(Refusal(reason: "\(hex(address)) is code no symbol names (a stripped static function?): its extent is unknown"))
        }
        guard let memory else { return .failure(Refusal(reason: "a call through the PLT, whose callee only a running process says")) }
        guard let word = memory(slot, 8), word.count == 8 else {
            return .failure(Refusal(reason: "the GOT slot of a PLT call cannot be read"))
        }
        let target = littleEndianWord(word)
        guard let function = image.function(containing: target), function.address == target else {
            return .failure(Refusal(reason: "a call through the PLT not bound yet (lazy binding)"))
        }
        return .success(target)
    }

    private static func sites(for function: Function, in image: ProcessImage, decoder: Decoder,
                              isInternal: Bool, tracesEntry: Bool) -> InlinePlan {
        let entry = self.entry(of: function, in: image, decoder: decoder)
        if image.goRuntime(in: function.module) != nil, entry == function.address {
            // No stack check (NOSPLIT, or assembly): nothing promises a pad the stack it uses, and R14
            // need not hold the goroutine.
            return InlinePlan(windows: [], fallbacks: [
                InlineFallback(address: entry, kind: .entry,
                               reason: "a Go function without a stack check: a pad could run past the stack the runtime promises"),
            ], returnsSeenAtExits: false)
        }
        guard function.size > 0, let body = image.fileBytes(of: function), body.count == Int(clamping: function.size) else {
            return InlinePlan(windows: [], fallbacks: [
                InlineFallback(address: entry, kind: .entry, reason: "its size is unknown (no symbol size): its code cannot be analysed"),
            ], returnsSeenAtExits: false)
        }
        let all = image.functions(in: function.module)
        var parts = [CodePart(start: function.address, bytes: body, padding: padding(after: function, among: all, in: image))]
        var landingPads = Set(image.landingPads(of: function))
        for cold in coldParts(of: function, among: all) {
            guard let bytes = image.fileBytes(of: cold) else { continue }
            parts.append(CodePart(start: cold.address, bytes: bytes, padding: padding(after: cold, among: all, in: image)))
            landingPads.formUnion(image.landingPads(of: cold))
        }
        if !image.isCompiledCode(function) {
            landingPads.formUnion(foreignEntryPoints(into: parts, of: function, in: image, decoder: decoder))
        }
        let table = image.landingPadTable(in: function.module)
        let incomplete = parts.allSatisfy { table.isComplete(in: $0.start..<$0.end) } ? nil
            : "its exception table could not be read to its end: a landing pad could be anywhere"
        let planner = InlinePlanner(decoder: decoder)
        let bias = function.module.bias
        let arguments = argumentRegisters(of: image.signature(of: function))
        return planner.plan(InlinePlanner.Function(start: function.address, entry: entry, parts: parts,
                                                   extraEntryPoints: landingPads, extraEntryPointsIncomplete: incomplete,
                                                   mayCoverStart: isInternal, tracesEntry: tracesEntry,
                                                   argumentRegisters: arguments.registers,
                                                   vectorArguments: arguments.vector)) { instructions, ranges in
            JumpTables.classify(instructions: instructions, ranges: ranges, bias: bias) { address, count in
                image.fileBytes(at: address, count: count)
            }
        }
    }

    /// How far around an assembly function other entries are looked for branches into it.
    static let neighbourhood: UInt64 = 8192

    /// Direct branches from other functions into the middle of this one: glibc's assembly enters one
    /// function's body from another entry (`__wmemset_avx2_unaligned` jumps into
    /// `__memset_avx2_unaligned_erms`, `__mempcpy_*` into `__memmove_*`), and a window there would
    /// be entered in its middle. The planner sees only the function's own branches. Compiled code
    /// never does this (its split-off `.cold` parts are parts of the function), so only code DWARF does
    /// not describe as compiled is checked, against the functions that start within 8 KiB of it — an
    /// assembly file's entries lie together. Symbols' and unwind information's starts both count (a
    /// stripped libc names none of its string implementations).
    static func foreignEntryPoints(into parts: [CodePart], of function: Function, in image: ProcessImage,
                                   decoder: Decoder) -> Set<UInt64> {
        let module = function.module
        let low = parts.map(\.start).min() ?? function.address, high = parts.map(\.end).max() ?? function.address
        let from = low > module.start &+ neighbourhood ? low &- neighbourhood : module.start
        let to = min(high &+ neighbourhood, module.end)
        let table = image.landingPadTable(in: module)
        var starts = Set(image.functions(in: module).lazy.filter { $0.address >= from && $0.address < to }.map(\.address))
        var cursor = from
        while let next = table.nextFunctionStart(after: cursor), next < to {
            starts.insert(next)
            cursor = next
        }
        let inside = { (address: UInt64) in parts.contains { address >= $0.start && address < $0.end } }
        let sorted = starts.filter { !inside($0) }.sorted()
        var targets = Set<UInt64>()
        for (i, start) in sorted.enumerated() {
            // Up to the next entry (or this function), at most what a symbol or FDE says it spans.
            var end = i + 1 < sorted.count ? sorted[i + 1] : to
            if start < low { end = min(end, low) }
            if let range = table.functionRange(startingAt: start) { end = min(end, max(range.upperBound, start &+ 1)) }
            guard end > start, let bytes = image.fileBytes(at: start, count: Int(min(end - start, 65536))) else { continue }
            for insn in decoder.decodeAll(bytes, at: start) {
                if let target = insn.directTransferTarget, target != function.address, inside(target) { targets.insert(target) }
            }
        }
        return targets
    }

    /// The registers a function's arguments are in at entry, as DWARF says — which the entry record
    /// reads, and the first instruction (left in place before the entry window) must not change.
    /// Without DWARF nothing is read, so nothing need be kept.
    static func argumentRegisters(of signature: Signature?) -> (registers: Set<GPR>, vector: Bool) {
        guard let signature else { return ([], false) }
        var registers = Set<GPR>(), vector = false
        func add(_ r: Register) {
            if let gpr = r.gpr { registers.insert(gpr) } else { vector = true }
        }
        for parameter in signature.parameters {
            switch parameter.location {
            case .register(let r): add(r)
            case .pieces(let pieces): pieces.forEach { add($0.register) }
            case .indirect(let r): add(r)
            case .stack, .unknown: break
            }
        }
        // A variadic function's own arguments are followed by more, in the registers after them.
        if signature.isVariadic { return ([.rdi, .rsi, .rdx, .rcx, .r8, .r9, .rax], true) }
        return (registers, vector)
    }

    /// Where a function's entry is recorded: after the stack-growth check of a Go function (a call
    /// that grows the stack runs the check twice but passes this point once), at its start otherwise.
    public static func entry(of function: Function, in image: ProcessImage, decoder: Decoder) -> UInt64 {
        guard image.goRuntime(in: function.module) != nil,
              let bytes = image.fileBytes(of: function, limit: 64), !bytes.isEmpty
        else { return function.address }
        return FunctionAnalysis(bytes: bytes, at: function.address, size: function.size, decoder: decoder).prologueEnd
    }

    /// gcc moves a function's unlikely paths to `NAME.cold` (in .text.unlikely): part of the function,
    /// whose returns are the function's.
    static func coldParts(of function: Function, among all: [Function]) -> [Function] {
        let names = Set(function.names.map { $0 + ".cold" })
        return all.filter { candidate in candidate.name.hasSuffix(".cold") && candidate.names.contains { names.contains($0) } }
    }

    /// The alignment padding after a function: the bytes up to the next function (at most 32).
    static func padding(after function: Function, among all: [Function], in image: ProcessImage) -> [UInt8] {
        let end = function.address &+ function.size
        var low = 0, high = all.count
        while low < high {
            let mid = (low + high) / 2
            if all[mid].address < end { low = mid + 1 } else { high = mid }
        }
        var next = low < all.count ? all[low].address : end &+ 32
        // A function no symbol names may start sooner (its unwind information says where).
        if let unnamed = image.landingPadTable(in: function.module).nextFunctionStart(after: end &- 1), unnamed >= end {
            next = min(next, unnamed)
        }
        guard next > end else { return [] }
        return image.fileBytes(at: end, count: Int(min(next - end, 32))) ?? []
    }
}

/// GNU indirect functions (STT_GNU_IFUNC: glibc's `strcmp`, `memcpy`, `memset`…). The symbol's address
/// is a resolver the dynamic linker runs once, when it relocates the callers; every call then goes
/// straight to the implementation it returned (`__strcmp_avx2`): through the callers' GOT and PLT
/// slots, and inside libc through its own IRELATIVE slots. So the function a person means by `strcmp`
/// is that implementation, and its code is where every path's calls arrive.
public struct UnresolvedIndirectFunction: Error, CustomStringConvertible, Sendable {
    public let function: Function
    public let reason: String

    public var description: String { "\(function.name) is a GNU indirect function, but \(reason)" }
}

extension ProcessImage {
    /// The implementation `ifunc`'s resolver chose in this running process, read where the dynamic
    /// linker stored it: the defining module's IRELATIVE slots for that resolver (filled eagerly when
    /// the module is relocated), then any module's GOT slots bound to the symbol by name (skipped
    /// while lazy binding leaves them on a PLT). It comes named as `ifunc` (the name callers use), with
    /// the implementation's own names as aliases. `memory` reads the process.
    public func implementation(of ifunc: Function,
                               memory: (UInt64, Int) -> [UInt8]?) -> Result<Function, UnresolvedIndirectFunction> {
        let module = ifunc.module
        var slots = dynamicRelocations(in: module).irelative[ifunc.address &- module.bias] ?? []
        let names = Set(ifunc.indirectNames)
        for other in modules {
            for (name, found) in dynamicRelocations(in: other).named where names.contains(name) { slots += found }
        }
        guard !slots.isEmpty else {
            return .failure(UnresolvedIndirectFunction(function: ifunc, reason: "no relocation of any module binds it (nothing calls it through a GOT), so which implementation its resolver picks is unknown"))
        }
        for slot in slots {
            guard let word = memory(slot, 8), word.count == 8 else { continue }
            let target = littleEndianWord(word)
            // A slot not relocated yet holds a link-time value, or a PLT address in its own module.
            if let implementation = implementation(of: ifunc, at: target) { return .success(implementation) }
        }
        return .failure(UnresolvedIndirectFunction(function: ifunc, reason: "the dynamic linker has not bound it yet (lazy binding, or its module is not relocated yet)"))
    }

    /// The implementation at `target` (what `ifunc`'s resolver returned), named as `ifunc`; nil unless
    /// a function of the same module starts there.
    public func implementation(of ifunc: Function, at target: UInt64) -> Function? {
        let module = ifunc.module
        guard target != ifunc.address, module.contains(target), let implementation = function(startingAt: target) else { return nil }
        let aliases = ifunc.indirectNames.filter { $0 != ifunc.name } + implementation.names.filter { !ifunc.names.contains($0) }
        return Function(name: ifunc.name, aliases: aliases, module: module, address: implementation.address,
                        size: implementation.size, isIndirect: false, selectedBy: ifunc.address)
    }

    /// The function that starts at `address`: a symbol's, or one only unwind information describes (a
    /// stripped libc's `__strcmp_avx2`).
    public func function(startingAt address: UInt64) -> Function? {
        if let named = function(containing: address) { return named.address == address ? named : nil }
        return unnamedFunction(at: address)
    }

    /// What tracing the functions `pattern` matched means: an indirect function matched by a name its
    /// callers use is its implementation in this process (named as asked); matched by its resolver's
    /// own name (`strcmp_ifunc`), the resolver. One function per address: the implementation asked for
    /// by its public name takes the name over one matched by its own (`__strcmp_avx2`); two indirect
    /// functions with one implementation (`memcpy`, `memmove`) are one function with both names.
    /// `memory` reads the running process; without it (a file), an indirect function stays as it is.
    public func traceTargets(_ matched: [Function], pattern: NamePattern,
                             memory: ((UInt64, Int) -> [UInt8]?)?) -> (targets: [Function], unresolved: [UnresolvedIndirectFunction]) {
        var targets: [Function] = [], unresolved: [UnresolvedIndirectFunction] = []
        var at: [UInt64: Int] = [:]
        func add(_ function: Function) {
            guard let index = at[function.address] else {
                at[function.address] = targets.count
                targets.append(function)
                return
            }
            let kept = targets[index]
            if kept.selectedBy == nil, function.selectedBy != nil {
                targets[index] = Function(name: function.name, aliases: function.aliases + kept.names.filter { !function.names.contains($0) },
                                          module: function.module, address: function.address, size: function.size,
                                          isIndirect: false, selectedBy: function.selectedBy)
            } else if kept.selectedBy != nil, function.selectedBy != nil, !kept.names.contains(function.name) {
                targets[index] = Function(name: kept.name, aliases: kept.aliases + [function.name], module: kept.module,
                                          address: kept.address, size: kept.size, isIndirect: false, selectedBy: kept.selectedBy)
            }
        }
        for function in matched {
            guard function.isIndirect, let memory else {
                add(function)
                continue
            }
            if let resolverName = function.resolverNames.first(where: pattern.matches) {
                add(Function(name: resolverName, aliases: function.resolverNames.filter { $0 != resolverName },
                             module: function.module, address: function.address, size: function.size, isIndirect: false))
            }
            guard function.indirectNames.contains(where: pattern.matches) else { continue }
            switch implementation(of: function, memory: memory) {
            case .success(let implementation): add(implementation)
            case .failure(let failure): unresolved.append(failure)
            }
        }
        return (targets.sorted { $0.address < $1.address }, unresolved)
    }
}

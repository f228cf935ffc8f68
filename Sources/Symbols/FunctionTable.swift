import CElfutils

/// Reads a module's functions from whichever symbol table libdwfl found (.symtab, a separate
/// debuginfo file's, MiniDebugInfo, or .dynsym alone) and folds aliases into one entry per address.
enum FunctionTable {
    static func read(_ mod: OpaquePointer, module: Module) -> [Function] {
        var byAddress: [UInt64: (names: [SymbolName], size: UInt64, indirect: Bool, plain: Set<String>, ifunc: Set<String>)] = [:]
        forEachSymbol(mod) { name, sym, address, defined in
            let type = Int32(sym.st_info & 0xf)
            guard defined, address != 0, type == STT_FUNC || type == STT_GNU_IFUNC else { return }
            let binding: SymbolBinding
            switch Int32(sym.st_info >> 4) {
            case STB_GLOBAL: binding = .global
            case STB_WEAK: binding = .weak
            default: binding = .local
            }
            var entry = byAddress[address] ?? (names: [], size: 0, indirect: false, plain: [], ifunc: [])
            if !entry.names.contains(where: { $0.name == name }) {
                entry.names.append(SymbolName(name: name, binding: binding))
            }
            entry.size = max(entry.size, sym.st_size)
            entry.indirect = entry.indirect || type == STT_GNU_IFUNC
            if type == STT_FUNC { entry.plain.insert(name) } else { entry.ifunc.insert(name) }
            byAddress[address] = entry
        }
        return byAddress.map { address, entry in
            let names = entry.names.sorted(by: SymbolName.preferred).map(\.name)
            // At an indirect function's address, the plain function symbols name its resolver
            // (`strcmp_ifunc` beside the ifunc `strcmp`, in glibc's debuginfo); a name that is both
            // (a versioned alias) is the public one.
            let resolverNames = entry.indirect
                ? names.filter { entry.plain.contains($0) && !entry.ifunc.contains($0) } : []
            return Function(name: names[0], aliases: Array(names.dropFirst()), module: module,
                            address: address, size: entry.size, isIndirect: entry.indirect,
                            resolverNames: resolverNames)
        }.sorted { $0.address < $1.address }
    }

    static func address(ofSymbol wanted: String, in mod: OpaquePointer) -> UInt64? {
        var found: UInt64?
        forEachSymbol(mod) { name, _, address, defined in
            if found == nil, defined, name == wanted { found = address }
        }
        return found
    }

    /// Calls `body` with each named symbol, its runtime address (bias applied) and whether the module
    /// defines it (a section index other than SHN_UNDEF).
    private static func forEachSymbol(_ mod: OpaquePointer,
                                      _ body: (String, GElf_Sym, UInt64, Bool) -> Void) {
        let count = dwfl_module_getsymtab(mod)
        guard count > 0 else { return }
        for index in 1..<count {
            var sym = GElf_Sym()
            var address: GElf_Addr = 0
            var shndx: GElf_Word = 0
            guard let cName = dwfl_module_getsym_info(mod, index, &sym, &address, &shndx, nil, nil),
                  cName.pointee != 0
            else { continue }
            let defined = shndx != UInt32(SHN_UNDEF)
            // A separate debuginfo's .symtab spells versions into names (`aio_read@@GLIBC_2.34`);
            // .dynsym keeps them apart. A person names the function without one.
            var name = String(cString: cName)
            if let at = name.firstIndex(of: "@"), at != name.startIndex { name = String(name[..<at]) }
            body(name, sym, address, defined)
        }
    }
}

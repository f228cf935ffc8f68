import CElfutils

/// The slots a module's dynamic relocations make the dynamic linker fill: where a running process
/// keeps the address it bound each symbol to. For an indirect function that address is the
/// implementation its resolver chose, which is how nstrace finds it (as GDB's
/// `elf_gnu_ifunc_resolve_by_got` does) without calling the resolver.
struct DynamicRelocations {
    /// R_X86_64_IRELATIVE: the resolver's link-time address (the addend) → the slots it fills, at
    /// runtime addresses. The dynamic linker applies these eagerly, even under lazy binding, when it
    /// relocates the module: before the program's entry point, and for a dlopen'd library after r_brk.
    let irelative: [UInt64: [UInt64]]
    /// R_X86_64_JUMP_SLOT, GLOB_DAT and 64 by symbol name → slots (runtime addresses). A JUMP_SLOT
    /// under lazy binding holds the module's own PLT until the first call.
    let named: [String: [UInt64]]
    /// The same slots the other way round: slot → the symbol it is bound to.
    let slotNames: [UInt64: String]

    init(irelative: [UInt64: [UInt64]], named: [String: [UInt64]]) {
        self.irelative = irelative
        self.named = named
        var slotNames: [UInt64: String] = [:]
        for (name, slots) in named { for slot in slots { slotNames[slot] = name } }
        self.slotNames = slotNames
    }

    static let empty = DynamicRelocations(irelative: [:], named: [:])

    static func read(_ mod: OpaquePointer) -> DynamicRelocations {
        var bias: GElf_Addr = 0
        guard let elf = dwfl_module_getelf(mod, &bias) else { return .empty }
        var irelative: [UInt64: [UInt64]] = [:], named: [String: [UInt64]] = [:]
        var section: OpaquePointer? = elf_nextscn(elf, nil)
        while let scn = section {
            defer { section = elf_nextscn(elf, scn) }
            var header = GElf_Shdr()
            guard gelf_getshdr(scn, &header) != nil, header.sh_type == SHT_RELA,
                  header.sh_entsize > 0, let data = elf_getdata(scn, nil)
            else { continue }
            // The symbol table these relocations index (.dynsym), and its string table.
            let symbols = elf_getscn(elf, Int(header.sh_link))
            var symbolHeader = GElf_Shdr()
            let symbolData = symbols.flatMap { elf_getdata($0, nil) }
            let strings = symbols.flatMap { gelf_getshdr($0, &symbolHeader) } != nil ? Int(symbolHeader.sh_link) : 0
            let count = Int(header.sh_size / header.sh_entsize)
            for index in 0..<count {
                var rela = GElf_Rela()
                guard gelf_getrela(data, Int32(index), &rela) != nil else { continue }
                let type = UInt32(truncatingIfNeeded: rela.r_info & 0xffff_ffff)
                let slot = rela.r_offset &+ bias
                switch type {
                case UInt32(R_X86_64_IRELATIVE):
                    irelative[UInt64(bitPattern: rela.r_addend), default: []].append(slot)
                case UInt32(R_X86_64_JUMP_SLOT), UInt32(R_X86_64_GLOB_DAT), UInt32(R_X86_64_64):
                    let symbolIndex = Int32(truncatingIfNeeded: rela.r_info >> 32)
                    guard symbolIndex != 0, let symbolData, strings != 0 else { continue }
                    var sym = GElf_Sym()
                    guard gelf_getsym(symbolData, symbolIndex, &sym) != nil,
                          let cName = elf_strptr(elf, strings, Int(sym.st_name)), cName.pointee != 0
                    else { continue }
                    named[String(cString: cName), default: []].append(slot)
                default:
                    continue
                }
            }
        }
        return DynamicRelocations(irelative: irelative, named: named)
    }
}

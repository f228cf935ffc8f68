import CElfutils

/// Bytes of a module's file at a runtime address, through the section that holds them.
enum ELFBytes {
    static func read(_ mod: OpaquePointer, address: UInt64, count: Int) -> [UInt8]? {
        guard count > 0 else { return [] }
        var offset: Dwarf_Addr = address
        var bias: Dwarf_Addr = 0
        guard let section = dwfl_module_address_section(mod, &offset, &bias),
              let data = elf_getdata(section, nil), let buffer = data.pointee.d_buf,
              data.pointee.d_type == ELF_T_BYTE
        else { return nil }
        let size = Int(clamping: data.pointee.d_size)
        guard let start = Int(exactly: offset), start < size else { return nil }
        let n = min(count, size - start)
        let bytes = buffer.advanced(by: start).assumingMemoryBound(to: UInt8.self)
        return Array(UnsafeBufferPointer(start: bytes, count: n))
    }
}

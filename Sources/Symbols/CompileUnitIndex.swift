import CElfutils

/// Which compile unit covers an address, for modules libdw cannot answer through .debug_aranges
/// (Go binaries have none): every CU's ranges, read once, searched by binary search.
final class CompileUnitIndex {
    private var ranges: [(low: Dwarf_Addr, high: Dwarf_Addr, cu: Dwarf_Die)] = []
    /// The difference between the module's runtime addresses and DWARF's.
    let bias: Dwarf_Addr

    init(module mod: OpaquePointer) {
        var bias: Dwarf_Addr = 0
        var cu: UnsafeMutablePointer<Dwarf_Die>?
        var found: [(Dwarf_Addr, Dwarf_Addr, Dwarf_Die)] = []
        while let next = dwfl_module_nextcu(mod, cu, &bias) {
            var base: Dwarf_Addr = 0, start: Dwarf_Addr = 0, end: Dwarf_Addr = 0
            var offset = dwarf_ranges(next, 0, &base, &start, &end)
            while offset > 0 {
                found.append((start, end, next.pointee))
                offset = dwarf_ranges(next, offset, &base, &start, &end)
            }
            cu = next
        }
        self.bias = bias
        ranges = found.sorted { $0.0 < $1.0 }
    }

    /// The CU whose ranges hold `address` (a DWARF address, bias removed).
    func unit(containing address: Dwarf_Addr) -> Dwarf_Die? {
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].low <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let candidate = ranges[low - 1]
        return address < candidate.high ? candidate.cu : nil
    }
}

import CElfutils

/// Where a Go program keeps what a tracer needs in its goroutine descriptor (runtime.g), from the
/// program's own DWARF: under the register ABI (Go 1.17+) R14 points at the running goroutine's g.
public struct GoRuntime: Sendable, Equatable {
    /// Offset of g.goid (int64).
    public let goidOffset: Int
    /// Offsets of g.stack.lo and g.stack.hi: the goroutine's stack bounds. An offset from the top of
    /// the stack survives the runtime copying a growing stack elsewhere; a raw stack pointer does not.
    public let stackLowOffset: Int
    public let stackHighOffset: Int
    /// Offset of g.m (the thread running the goroutine) and of m.procid (that thread's tid): how
    /// code running in a goroutine learns its thread id without a system call. nil when DWARF lacks
    /// them.
    public let mOffset: Int?
    public let procidOffset: Int?

    public init(goidOffset: Int, stackLowOffset: Int, stackHighOffset: Int, mOffset: Int? = nil, procidOffset: Int? = nil) {
        self.goidOffset = goidOffset
        self.stackLowOffset = stackLowOffset
        self.stackHighOffset = stackHighOffset
        self.mOffset = mOffset
        self.procidOffset = procidOffset
    }

    /// runtime.g and runtime.m are a few hundred bytes: an offset past this is malformed DWARF, and
    /// the engine reads that many bytes of the tracee at R14 (CallContext) and adds them to addresses.
    static let maxOffset: UInt64 = 1 << 16

    /// Reads runtime.g's layout from a module's DWARF; nil for a module that is not a Go program.
    static func read(module mod: OpaquePointer) -> GoRuntime? {
        var bias: Dwarf_Addr = 0
        var cu: UnsafeMutablePointer<Dwarf_Die>?
        while let next = dwfl_module_nextcu(mod, cu, &bias) {
            cu = next
            guard Int(dwarf_srclang(next)) == DW_LANG_Go, dwarf_diename(next).map({ String(cString: $0) }) == "runtime"
            else { continue }
            var found: GoRuntime?
            var procid: Int?
            SignatureReader.forEachChild(&next.pointee) { die in
                guard dwarf_tag(&die) == DW_TAG_structure_type else { return }
                switch dwarf_diename(&die).map({ String(cString: $0) }) {
                case "runtime.g" where found == nil: found = layout(of: &die)
                case "runtime.m" where procid == nil: procid = memberOffsets(of: &die)["procid"]
                default: break
                }
            }
            if let found {
                return GoRuntime(goidOffset: found.goidOffset, stackLowOffset: found.stackLowOffset,
                                 stackHighOffset: found.stackHighOffset, mOffset: found.mOffset, procidOffset: procid)
            }
        }
        return nil
    }

    private static func layout(of g: inout Dwarf_Die) -> GoRuntime? {
        var members: [String: (offset: Int, type: Dwarf_Die?)] = [:]
        SignatureReader.forEachChild(&g) { member in
            guard dwarf_tag(&member) == DW_TAG_member, let name = dwarf_diename(&member).map({ String(cString: $0) }),
                  let offset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location)
            else { return }
            guard offset < maxOffset else { return }
            members[name] = (Int(offset), SignatureReader.typeOf(&member))
        }
        guard let goid = members["goid"], let stack = members["stack"], let stackTypedef = stack.type else { return nil }
        var stackType = TypeReader.peeled(stackTypedef)
        var low: Int?, high: Int?
        SignatureReader.forEachChild(&stackType) { member in
            guard let name = dwarf_diename(&member).map({ String(cString: $0) }),
                  let offset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location)
            else { return }
            guard offset < maxOffset else { return }
            if name == "lo" { low = Int(offset) }
            if name == "hi" { high = Int(offset) }
        }
        guard let low, let high else { return nil }
        return GoRuntime(goidOffset: goid.offset, stackLowOffset: stack.offset + low, stackHighOffset: stack.offset + high,
                         mOffset: members["m"]?.offset)
    }

    private static func memberOffsets(of structure: inout Dwarf_Die) -> [String: Int] {
        var offsets: [String: Int] = [:]
        SignatureReader.forEachChild(&structure) { member in
            guard dwarf_tag(&member) == DW_TAG_member, let name = dwarf_diename(&member).map({ String(cString: $0) }),
                  let offset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location),
                  offset < maxOffset
            else { return }
            offsets[name] = Int(offset)
        }
        return offsets
    }
}

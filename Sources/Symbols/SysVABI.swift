import CElfutils

/// Where the System V x86-64 psABI (§3.2.3) puts each argument at a function's first instruction, and
/// where it puts the result at return: arguments are classified by eightbyte (INTEGER, SSE, MEMORY),
/// INTEGER ones take rdi, rsi, rdx, rcx, r8, r9 and SSE ones xmm0–7 while they last, and the rest go on
/// the stack above the return address. A result of class MEMORY is written through a hidden pointer
/// that takes rdi and comes back in rax.
enum SysVABI {
    enum EightbyteClass { case integer, sse, x87, x87up, none, memory }

    /// How a whole value travels (psABI §3.2.3, after the merge of its eightbytes' classes).
    enum Classification: Equatable {
        /// In general and vector registers, one per eightbyte (INTEGER, SSE).
        case registers([EightbyteClass])
        /// X87 (`long double`): on the stack as an argument, in st(0) as a result.
        case x87
        /// COMPLEX_X87 (`long double _Complex`): on the stack as an argument, st(0) and st(1) as a result.
        case complexX87
        /// MEMORY: on the stack as an argument, through the hidden pointer as a result.
        case memory
        /// A C++ class with a non-trivial copy constructor or destructor (DW_CC_pass_by_reference):
        /// the caller passes the address of a copy, in an INTEGER register; returned as MEMORY.
        case reference
    }

    static let integerRegisters: [Register] = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]

    static func assign(parameterTypes: [Dwarf_Die?], returnType: Dwarf_Die?)
        -> (parameters: [ParameterLocation], result: ParameterLocation)
    {
        var nextInteger = 0, nextSSE = 0, nextStack = 8
        var result = ParameterLocation.unknown
        if let returnType {
            switch classification(returnType) {
            case .registers(let classes):
                var ints: [Register] = [.rax, .rdx], sses: [Register] = [.xmm(0), .xmm(1)]
                let regs = classes.map { $0 == .sse ? sses.removeFirst() : ints.removeFirst() }
                result = pieces(regs, size: size(returnType))
            case .x87:
                result = .register(.st(0))
            case .complexX87:
                result = .pieces([RegisterPiece(register: .st(0), size: 16), RegisterPiece(register: .st(1), size: 16)])
            case .memory, .reference:
                // The caller passes where the result goes in rdi, which shifts every integer argument
                // by one register; the callee hands the same address back in rax.
                nextInteger = 1
                result = .indirect(.rax)
            }
        }
        var locations: [ParameterLocation] = []
        for type in parameterTypes {
            guard let type else {
                locations.append(.unknown)
                continue
            }
            let byteSize = size(type)
            let classified = classification(type)
            if classified == .reference {
                // Its address is an INTEGER argument; past the registers it is a stack word, which
                // nstrace does not follow.
                if nextInteger < integerRegisters.count {
                    locations.append(.indirect(integerRegisters[nextInteger]))
                    nextInteger += 1
                } else {
                    locations.append(.unknown)
                    nextStack += 8
                }
                continue
            }
            if case .registers(let classes) = classified {
                let ints = classes.filter { $0 == .integer }.count
                let sses = classes.filter { $0 == .sse }.count
                // A value that does not fit whole goes on the stack whole; the registers left stay
                // free for the arguments after it.
                if nextInteger + ints <= integerRegisters.count, nextSSE + sses <= 8 {
                    let regs = classes.map { cls -> Register in
                        if cls == .sse { defer { nextSSE += 1 }; return .xmm(nextSSE) }
                        defer { nextInteger += 1 }
                        return integerRegisters[nextInteger]
                    }
                    locations.append(pieces(regs, size: byteSize))
                    continue
                }
            }
            // The stack argument area starts 16-aligned at the call (8 at entry, above the return
            // address); a 16-aligned type (`long double`, `__int128`) starts at the next 16 bytes.
            if alignment(type, depth: 0) >= 16, (nextStack - 8) % 16 != 0 { nextStack += 8 }
            locations.append(.stack(offset: nextStack))
            nextStack += max(8, (min(byteSize, 1 << 20) + 7) & ~7)
        }
        return (locations, result)
    }

    private static func pieces(_ regs: [Register], size: Int) -> ParameterLocation {
        if regs.count == 1 { return .register(regs[0]) }
        return .pieces(regs.enumerated().map { i, r in
            RegisterPiece(register: r, size: i == regs.count - 1 ? max(1, size - 8 * i) : 8)
        })
    }

    private static func size(_ die: Dwarf_Die) -> Int {
        var die = die
        return TypeReader.size(&die)
    }

    /// The classes of a value's eightbytes, or nil when it does not go in general or vector registers.
    static func classify(_ type: Dwarf_Die) -> [EightbyteClass]? {
        if case .registers(let classes) = classification(type) { return classes }
        return nil
    }

    static func classification(_ type: Dwarf_Die) -> Classification {
        let byteSize = size(type)
        guard byteSize > 0 else { return .memory }
        var peeled = TypeReader.peeled(type)
        if passedByReference(peeled, depth: 0) { return .reference }
        if dwarf_tag(&peeled) == DW_TAG_base_type,
           SignatureReader.unsignedAttribute(&peeled, DW_AT_encoding).map(Int.init) == DW_ATE_complex_float,
           byteSize == 32 {
            return .complexX87
        }
        guard byteSize <= 16 else { return .memory }
        var classes = [EightbyteClass](repeating: .none, count: (byteSize + 7) / 8)
        guard classifyFields(type, offset: 0, into: &classes, depth: 0) else { return .memory }
        if classes.contains(.memory) { return .memory }
        // X87 only as a whole `long double` (alone, or the one field of a struct): X87UP after X87.
        if classes.contains(.x87) || classes.contains(.x87up) {
            return classes == [.x87, .x87up] ? .x87 : .memory
        }
        // An all-padding eightbyte still takes a register of its neighbour's class.
        for i in classes.indices where classes[i] == .none { classes[i] = i > 0 ? classes[i - 1] : .integer }
        return .registers(classes)
    }

    /// Whether the C++ ABI passes a class by invisible reference: DWARF 5 says so when the compiler
    /// writes DW_AT_calling_convention (clang does); GCC 12 does not, so the Itanium ABI's rule is
    /// applied to what DWARF shows — a user-provided copy or move constructor or destructor (not
    /// `= default` in the class), virtual functions (a `_vptr` member) or bases, or a member or base
    /// of such a class.
    static func passedByReference(_ type: Dwarf_Die, depth: Int) -> Bool {
        guard depth < 8 else { return false }
        var die = type
        let tag = Int(dwarf_tag(&die))
        guard tag == DW_TAG_structure_type || tag == DW_TAG_class_type || tag == DW_TAG_union_type else { return false }
        if let convention = SignatureReader.unsignedAttribute(&die, DW_AT_calling_convention) {
            return convention == UInt64(DW_CC_pass_by_reference)
        }
        let own = dwarf_diename(&die).map { String(cString: $0) }
        var byReference = false
        SignatureReader.forEachChild(&die) { child in
            guard !byReference else { return }
            let name = dwarf_diename(&child).map { String(cString: $0) } ?? ""
            switch Int(dwarf_tag(&child)) {
            case DW_TAG_subprogram:
                guard let own, !SignatureReader.isFlagSet(&child, DW_AT_artificial),
                      SignatureReader.unsignedAttribute(&child, DW_AT_defaulted) != UInt64(DW_DEFAULTED_in_class)
                else { return }
                if name == "~" + own || SignatureReader.isFlagSet(&child, DW_AT_virtuality)
                    || SignatureReader.unsignedAttribute(&child, DW_AT_virtuality).map({ $0 != 0 }) == true {
                    byReference = true
                    return
                }
                // A constructor whose first parameter after `this` is a reference to the class.
                guard name == own else { return }
                var checked = false
                SignatureReader.forEachChild(&child) { param in
                    guard !byReference, !checked, dwarf_tag(&param) == DW_TAG_formal_parameter,
                          !SignatureReader.isFlagSet(&param, DW_AT_artificial) else { return }
                    checked = true
                    guard var reference = SignatureReader.typeOf(&param) else { return }
                    let referenceTag = Int(dwarf_tag(&reference))
                    if referenceTag == DW_TAG_reference_type || referenceTag == DW_TAG_rvalue_reference_type,
                       let target = SignatureReader.typeOf(&reference) {
                        var peeledTarget = TypeReader.peeled(target)
                        if dwarf_diename(&peeledTarget).map({ String(cString: $0) }) == own { byReference = true }
                    }
                }
            case DW_TAG_member, DW_TAG_inheritance:
                if name.hasPrefix("_vptr") || SignatureReader.unsignedAttribute(&child, DW_AT_virtuality).map({ $0 != 0 }) == true {
                    byReference = true
                    return
                }
                if let memberType = SignatureReader.typeOf(&child), dwarf_hasattr(&child, UInt32(DW_AT_bit_size)) == 0 {
                    byReference = passedByReference(TypeReader.peeled(memberType), depth: depth + 1)
                }
            default:
                break
            }
        }
        return byReference
    }

    private static func merge(_ a: EightbyteClass, _ b: EightbyteClass) -> EightbyteClass {
        if a == b { return a }
        if a == .none { return b }
        if b == .none { return a }
        if a == .memory || b == .memory { return .memory }
        if a == .integer || b == .integer { return .integer }
        // X87 with anything else.
        return .memory
    }

    /// The type's alignment as C lays it out (DW_AT_alignment when given), for the stack argument area.
    private static func alignment(_ type: Dwarf_Die, depth: Int) -> Int {
        guard depth < 16 else { return 8 }
        var die = TypeReader.peeled(type)
        if let explicit = SignatureReader.unsignedAttribute(&die, DW_AT_alignment) { return Int(clamping: explicit) }
        switch Int(dwarf_tag(&die)) {
        case DW_TAG_base_type:
            let byteSize = TypeReader.size(&die)
            let encoding = SignatureReader.unsignedAttribute(&die, DW_AT_encoding).map(Int.init) ?? 0
            // A complex number aligns as its parts.
            return encoding == DW_ATE_complex_float ? max(1, byteSize / 2) : max(1, min(byteSize, 16))
        case DW_TAG_structure_type, DW_TAG_class_type, DW_TAG_union_type:
            var widest = 1
            SignatureReader.forEachChild(&die) { member in
                guard dwarf_tag(&member) == DW_TAG_member, let t = SignatureReader.typeOf(&member) else { return }
                widest = max(widest, alignment(t, depth: depth + 1))
            }
            return widest
        case DW_TAG_array_type:
            return SignatureReader.typeOf(&die).map { alignment($0, depth: depth + 1) } ?? 8
        default:
            return 8
        }
    }

    /// Merges the classes of a value's parts into `classes`; false when it must go to memory
    /// (unaligned fields, unknown layouts).
    private static func classifyFields(_ type: Dwarf_Die, offset: Int, into classes: inout [EightbyteClass],
                                       depth: Int) -> Bool {
        guard depth < 32, offset >= 0 else { return false }
        var die = TypeReader.peeled(type)
        let byteSize = TypeReader.size(&die)
        switch Int(dwarf_tag(&die)) {
        case DW_TAG_base_type:
            let encoding = SignatureReader.unsignedAttribute(&die, DW_AT_encoding).map(Int.init(clamping:)) ?? 0
            if encoding == DW_ATE_float, byteSize == 16 {
                // long double: its 10 bytes and padding are X87 and X87UP.
                guard offset % 16 == 0, offset / 8 + 1 < classes.count else { return false }
                classes[offset / 8] = merge(classes[offset / 8], .x87)
                classes[offset / 8 + 1] = merge(classes[offset / 8 + 1], .x87up)
                return true
            }
            if encoding == DW_ATE_complex_float {
                // float _Complex and double _Complex: two floats of half the size, one after the other.
                let part = byteSize / 2
                guard part == 4 || part == 8, offset % part == 0 else { return false }
                for p in [offset, offset + part] {
                    guard p / 8 < classes.count else { return false }
                    classes[p / 8] = merge(classes[p / 8], .sse)
                }
                return true
            }
            let cls: EightbyteClass
            switch encoding {
            case DW_ATE_float where byteSize <= 8: cls = .sse
            case DW_ATE_float: return false
            default: cls = .integer  // __int128 too: INTEGER, INTEGER
            }
            guard offset % max(1, min(byteSize, 8)) == 0 else { return false }
            for eb in stride(from: offset / 8, through: (offset + max(byteSize, 1) - 1) / 8, by: 1) {
                guard eb < classes.count else { return false }
                classes[eb] = merge(classes[eb], cls)
            }
            return true
        case DW_TAG_pointer_type, DW_TAG_reference_type, DW_TAG_rvalue_reference_type,
             DW_TAG_enumeration_type, DW_TAG_ptr_to_member_type:
            let eb = offset / 8
            guard offset % 8 == 0 || byteSize < 8, eb < classes.count else { return false }
            classes[eb] = merge(classes[eb], .integer)
            return true
        case DW_TAG_structure_type, DW_TAG_class_type, DW_TAG_union_type:
            var ok = true
            var anyMember = false
            SignatureReader.forEachChild(&die) { member in
                guard ok, dwarf_tag(&member) == DW_TAG_member else { return }
                if dwarf_hasattr_integrate(&member, UInt32(DW_AT_bit_size)) != 0 {
                    // A bit-field is integer data wherever it sits.
                    let bit = SignatureReader.unsignedAttribute(&member, DW_AT_data_bit_offset).map(DwarfNumber.clamped)
                        ?? 8 * (SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location).map(DwarfNumber.clamped) ?? 0)
                    let eb = (offset + bit / 8) / 8
                    if eb >= 0, eb < classes.count { classes[eb] = merge(classes[eb], .integer) } else { ok = false }
                    anyMember = true
                    return
                }
                guard let memberType = SignatureReader.typeOf(&member) else { ok = false; return }
                let memberOffset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location)
                    .map(DwarfNumber.clamped) ?? 0
                anyMember = true
                let (at, overflow) = offset.addingReportingOverflow(memberOffset)
                ok = !overflow && classifyFields(memberType, offset: at, into: &classes, depth: depth + 1)
            }
            if !anyMember, byteSize > 0 {
                guard offset < 8 * classes.count else { return false }  // malformed: past the value's end
                for eb in (offset / 8)..<min(classes.count, (offset + byteSize + 7) / 8) {
                    classes[eb] = merge(classes[eb], .integer)
                }
            }
            return ok
        case DW_TAG_array_type:
            guard let element = SignatureReader.typeOf(&die) else { return false }
            var elementDie = element
            let elementSize = TypeReader.size(&elementDie)
            guard elementSize > 0, byteSize / elementSize <= 16 else { return false }
            for i in 0..<(byteSize / elementSize) {
                guard offset + i * elementSize < 8 * classes.count,
                      classifyFields(element, offset: offset + i * elementSize, into: &classes, depth: depth + 1)
                else { return false }
            }
            return true
        default:
            return false
        }
    }
}

/// Go's internal register ABI (Go 1.17+): results come back in RAX, RBX, RCX, RDI, RSI, R8–R11 for
/// integers and pointers and X0–X14 for floats, each multi-word value (string: 2, slice: 3,
/// interface: 2) taking consecutive registers, in order; a result that does not fit goes to memory,
/// which nstrace does not read.
enum GoABI {
    static let integerRegisters: [Register] = [.rax, .rbx, .rcx, .rdi, .rsi, .r8, .r9, .r10, .r11]

    static func resultLocations(_ results: [ValueType]) -> [ParameterLocation] {
        var nextInteger = 0, nextFloat = 0
        return results.map { type in
            if type.kind == .float {
                guard nextFloat < 15 else { return .unknown }
                defer { nextFloat += 1 }
                return .register(.xmm(nextFloat))
            }
            let words: Int
            switch type.kind {
            case .goString: words = 2
            case .goSlice: words = 3
            case .aggregate, .other: words = type.byteSize > 0 && type.byteSize <= 16 && type.byteSize % 8 == 0 ? type.byteSize / 8 : 0
            default: words = 1
            }
            guard words > 0, nextInteger + words <= integerRegisters.count else {
                nextInteger = integerRegisters.count
                return .unknown
            }
            defer { nextInteger += words }
            if words == 1 { return .register(integerRegisters[nextInteger]) }
            return .pieces((0..<words).map { RegisterPiece(register: integerRegisters[nextInteger + $0], size: 8) })
        }
    }
}

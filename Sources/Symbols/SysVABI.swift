import CElfutils

/// Where the System V x86-64 psABI (§3.2.3) puts each argument at a function's first instruction, and
/// where it puts the result at return: arguments are classified by eightbyte (INTEGER, SSE, MEMORY),
/// INTEGER ones take rdi, rsi, rdx, rcx, r8, r9 and SSE ones xmm0–7 while they last, and the rest go on
/// the stack above the return address. A result of class MEMORY is written through a hidden pointer
/// that takes rdi and comes back in rax.
enum SysVABI {
    enum EightbyteClass { case integer, sse, none }

    static let integerRegisters: [Register] = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]

    static func assign(parameterTypes: [Dwarf_Die?], returnType: Dwarf_Die?)
        -> (parameters: [ParameterLocation], result: ParameterLocation)
    {
        var nextInteger = 0, nextSSE = 0, nextStack = 8
        var result = ParameterLocation.unknown
        if let returnType {
            if let classes = classify(returnType) {
                var ints: [Register] = [.rax, .rdx], sses: [Register] = [.xmm(0), .xmm(1)]
                let regs = classes.map { $0 == .sse ? sses.removeFirst() : ints.removeFirst() }
                result = pieces(regs, size: size(returnType))
            } else {
                nextInteger = 1  // the hidden result pointer
                result = .register(.rax)
            }
        }
        var locations: [ParameterLocation] = []
        for type in parameterTypes {
            guard let type else {
                locations.append(.unknown)
                continue
            }
            let byteSize = size(type)
            if let classes = classify(type) {
                let ints = classes.filter { $0 == .integer }.count
                let sses = classes.filter { $0 == .sse }.count
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
            locations.append(.stack(offset: nextStack))
            nextStack += max(8, (byteSize + 7) & ~7)
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

    /// The classes of a value's eightbytes, or nil for MEMORY (passed on the stack).
    static func classify(_ type: Dwarf_Die) -> [EightbyteClass]? {
        let byteSize = size(type)
        guard byteSize > 0 else { return nil }
        guard byteSize <= 16 else { return nil }
        var classes = [EightbyteClass](repeating: .none, count: (byteSize + 7) / 8)
        guard classifyFields(type, offset: 0, into: &classes, depth: 0) else { return nil }
        // A lone SSEUP-style tail or an all-padding eightbyte still takes a register of its neighbour's class.
        for i in classes.indices where classes[i] == .none { classes[i] = i > 0 ? classes[i - 1] : .integer }
        return classes
    }

    private static func merge(_ a: EightbyteClass, _ b: EightbyteClass) -> EightbyteClass {
        if a == b { return a }
        if a == .none { return b }
        if b == .none { return a }
        return .integer
    }

    /// Returns false when the value must go to memory (x87 types, unaligned fields, unknown layouts).
    private static func classifyFields(_ type: Dwarf_Die, offset: Int, into classes: inout [EightbyteClass],
                                       depth: Int) -> Bool {
        guard depth < 32 else { return false }
        var die = TypeReader.peeled(type)
        let byteSize = TypeReader.size(&die)
        switch Int(dwarf_tag(&die)) {
        case DW_TAG_base_type:
            let encoding = SignatureReader.unsignedAttribute(&die, DW_AT_encoding).map(Int.init(clamping:)) ?? 0
            let cls: EightbyteClass
            switch encoding {
            case DW_ATE_float where byteSize <= 8: cls = .sse
            case DW_ATE_float, DW_ATE_complex_float: return false  // long double, complex: x87 or memory
            default: cls = .integer
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
                    if eb < classes.count { classes[eb] = merge(classes[eb], .integer) } else { ok = false }
                    anyMember = true
                    return
                }
                guard let memberType = SignatureReader.typeOf(&member) else { ok = false; return }
                let memberOffset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location)
                    .map(DwarfNumber.clamped) ?? 0
                anyMember = true
                ok = classifyFields(memberType, offset: offset + memberOffset, into: &classes, depth: depth + 1)
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
            guard elementSize > 0 else { return false }
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

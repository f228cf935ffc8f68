import CElfutils

/// Names and classifies DWARF types the way a C or Go programmer writes them.
enum TypeReader {
    static let unknown = ValueType(name: "?", kind: .other, byteSize: 0)

    /// How much of a type's structure nstrace reads, since DWARF is untrusted input: nesting (a struct
    /// in a struct in an array…), fields per struct, array elements shown, and nodes in all.
    static let maxDepth = 6
    static let maxMembers = 64
    static let maxElements = ValueType.maxShownElements
    static let maxNodes = 256

    static func describe(_ die: Dwarf_Die) -> ValueType {
        var budget = maxNodes
        return describe(die, depth: 0, pointee: true, budget: &budget)
    }

    /// `pointee`: whether a pointer's target is described too (one level: never for the target's own
    /// pointers, so a linked list is not followed).
    private static func describe(_ die: Dwarf_Die, depth: Int, pointee: Bool, budget: inout Int) -> ValueType {
        var die = die
        budget -= 1
        let kind = kind(&die, depth: 0)
        let name = name(&die, depth: 0), byteSize = size(&die)
        switch kind {
        case .goSlice:
            return ValueType(name: name, kind: kind, byteSize: byteSize, element: sliceElement(die))
        case .aggregate where depth < maxDepth && budget > 0 && !isGoUnit(&die):
            return structure(die, name: name, byteSize: byteSize, depth: depth, budget: &budget)
        case .pointer where pointee && depth == 0:
            guard var target = SignatureReader.typeOf(&die) else { break }
            var peeledTarget = peeled(target)
            let tag = Int(dwarf_tag(&peeledTarget))
            guard tag == DW_TAG_base_type || tag == DW_TAG_structure_type || tag == DW_TAG_union_type
                    || tag == DW_TAG_class_type || tag == DW_TAG_enumeration_type || tag == DW_TAG_pointer_type,
                  size(&target) > 0, !isGoUnit(&target)
            else { break }
            let described = describe(target, depth: depth + 1, pointee: false, budget: &budget)
            return ValueType(name: name, kind: kind, byteSize: byteSize, pointee: described)
        default:
            break
        }
        return ValueType(name: name, kind: kind, byteSize: byteSize)
    }

    /// A struct's or union's members, an array's element type, a complex number's two parts.
    private static func structure(_ type: Dwarf_Die, name: String, byteSize: Int, depth: Int,
                                  budget: inout Int) -> ValueType {
        var die = peeled(type)
        switch Int(dwarf_tag(&die)) {
        case DW_TAG_base_type:
            // `_Complex`: DWARF has one base type; C has two floats of half the size, real first.
            guard byteSize == 8 || byteSize == 16 || byteSize == 32 else { break }
            let partSize = byteSize / 2
            let part = ValueType(name: partSize == 16 ? "long double" : partSize == 8 ? "double" : "float",
                                 kind: .float, byteSize: partSize)
            return ValueType(name: name, kind: .aggregate, byteSize: byteSize,
                             members: [.init(name: "real", offset: 0, type: part), .init(name: "imag", offset: partSize, type: part)])
        case DW_TAG_array_type:
            guard var element = SignatureReader.typeOf(&die) else { break }
            let elementSize = size(&element)
            guard elementSize > 0 else { break }
            let described = describe(element, depth: depth + 1, pointee: false, budget: &budget)
            return ValueType(name: name, kind: .aggregate, byteSize: byteSize, element: described,
                             arrayCount: byteSize / elementSize)
        case DW_TAG_structure_type, DW_TAG_class_type, DW_TAG_union_type:
            var members: [ValueType.Member] = []
            let isUnion = dwarf_tag(&die) == DW_TAG_union_type
            SignatureReader.forEachChild(&die) { member in
                guard dwarf_tag(&member) == DW_TAG_member, members.count < maxMembers, budget > 0,
                      let memberType = SignatureReader.typeOf(&member) else { return }
                let memberName = dwarf_diename(&member).map { String(cString: $0) } ?? "_"
                let described = describe(memberType, depth: depth + 1, pointee: false, budget: &budget)
                let byteOffset = SignatureReader.unsignedAttribute(&member, DW_AT_data_member_location)
                    .map { Int(clamping: $0) } ?? 0
                if let bits = SignatureReader.unsignedAttribute(&member, DW_AT_bit_size).map({ Int(clamping: $0) }) {
                    // DWARF 5's DW_AT_data_bit_offset counts from the struct's start; DWARF 4's
                    // DW_AT_bit_offset counts from the storage unit's most significant bit.
                    var bitOffset = SignatureReader.unsignedAttribute(&member, DW_AT_data_bit_offset).map { Int(clamping: $0) }
                    if bitOffset == nil, let old = SignatureReader.unsignedAttribute(&member, DW_AT_bit_offset).map({ Int(clamping: $0) }) {
                        let storage = SignatureReader.unsignedAttribute(&member, DW_AT_byte_size).map { Int(clamping: $0) }
                            ?? described.byteSize
                        bitOffset = byteOffset.multipliedReportingOverflow(by: 8).partialValue &+ storage &* 8 &- old &- bits
                    }
                    let start = bitOffset ?? byteOffset &* 8
                    members.append(.init(name: memberName, offset: start / 8, type: described, bitOffset: start, bitSize: bits))
                } else {
                    members.append(.init(name: memberName, offset: byteOffset, type: described))
                }
            }
            guard !members.isEmpty else { break }
            return ValueType(name: name, kind: .aggregate, byteSize: byteSize, members: members, isUnion: isUnion)
        default:
            break
        }
        return ValueType(name: name, kind: .aggregate, byteSize: byteSize)
    }

    /// A Go slice is a struct { array *T; len int; cap int }: T is the element type.
    private static func sliceElement(_ slice: Dwarf_Die) -> ValueType? {
        var die = peeled(slice)
        var element: ValueType?
        SignatureReader.forEachChild(&die) { member in
            guard element == nil, dwarf_diename(&member).map({ String(cString: $0) }) == "array",
                  var pointer = SignatureReader.typeOf(&member), let pointee = SignatureReader.typeOf(&pointer)
            else { return }
            var target = pointee
            // One level only: a slice of slices shows its elements' headers, not their contents.
            element = ValueType(name: name(&target, depth: 0), kind: kind(&target, depth: 1), byteSize: size(&target))
        }
        return element
    }

    static func size(_ die: inout Dwarf_Die) -> Int {
        var size: Dwarf_Word = 0
        return dwarf_aggregate_size(&die, &size) == 0 && size <= DwarfNumber.limit ? Int(size) : 0
    }

    /// The type with typedefs and qualifiers removed.
    static func peeled(_ die: Dwarf_Die) -> Dwarf_Die {
        var die = die
        var result = Dwarf_Die()
        return dwarf_peel_type(&die, &result) == 0 ? result : die
    }

    private static func ownName(_ die: inout Dwarf_Die) -> String? {
        dwarf_diename(&die).map { String(cString: $0) }
    }

    static func name(_ die: inout Dwarf_Die, depth: Int) -> String {
        guard depth < 16 else { return "…" }
        let tag = Int(dwarf_tag(&die))
        // Go names every type, pointers and slices included ("*main.T", "[]int"); so do C typedefs.
        if tag != DW_TAG_const_type, tag != DW_TAG_volatile_type, let own = ownName(&die) {
            switch tag {
            case DW_TAG_structure_type where !isGoUnit(&die): return "struct \(own)"
            case DW_TAG_union_type: return "union \(own)"
            case DW_TAG_enumeration_type where !isGoUnit(&die): return "enum \(own)"
            default: return own
            }
        }
        let target = SignatureReader.typeOf(&die)
        func inner() -> String {
            guard var t = target else { return "void" }
            return name(&t, depth: depth + 1)
        }
        switch tag {
        case DW_TAG_pointer_type:
            if var t = target, dwarf_tag(&t) == DW_TAG_subroutine_type { return "\(name(&t, depth: depth + 1))" }
            return pointerName(inner())
        case DW_TAG_reference_type: return inner() + " &"
        case DW_TAG_rvalue_reference_type: return inner() + " &&"
        case DW_TAG_const_type: return qualified("const", inner())
        case DW_TAG_volatile_type: return qualified("volatile", inner())
        case DW_TAG_restrict_type, DW_TAG_atomic_type: return inner()
        case DW_TAG_array_type: return inner() + "[]"
        case DW_TAG_subroutine_type: return inner() + " (*)(…)"
        case DW_TAG_structure_type: return "struct {…}"
        case DW_TAG_union_type: return "union {…}"
        case DW_TAG_enumeration_type: return "enum {…}"
        default: return "?"
        }
    }

    private static func pointerName(_ pointee: String) -> String {
        pointee.hasSuffix("*") ? pointee + "*" : pointee + " *"
    }

    /// `const char` rather than `char const`, but `char *const` for a const pointer.
    private static func qualified(_ qualifier: String, _ inner: String) -> String {
        inner.hasSuffix("*") ? "\(inner)\(qualifier)" : "\(qualifier) \(inner)"
    }

    static func kind(_ die: inout Dwarf_Die, depth: Int) -> ValueType.Kind {
        var base = peeled(die)
        switch Int(dwarf_tag(&base)) {
        case DW_TAG_base_type:
            let encoding = SignatureReader.unsignedAttribute(&base, DW_AT_encoding).map(Int.init(clamping:)) ?? 0
            switch encoding {
            case DW_ATE_signed: return .signed
            case DW_ATE_unsigned: return .unsigned
            case DW_ATE_signed_char, DW_ATE_unsigned_char: return .char
            case DW_ATE_float: return .float
            case DW_ATE_boolean: return .bool
            case DW_ATE_UTF: return .char
            case DW_ATE_complex_float: return .aggregate
            default: return .other
            }
        case DW_TAG_pointer_type, DW_TAG_reference_type, DW_TAG_rvalue_reference_type:
            guard var pointee = SignatureReader.typeOf(&base) else { return .pointer }
            var peeledPointee = peeled(pointee)
            if dwarf_tag(&peeledPointee) == DW_TAG_base_type,
               let enc = SignatureReader.unsignedAttribute(&peeledPointee, DW_AT_encoding).map(Int.init(clamping:)),
               enc == DW_ATE_signed_char || enc == DW_ATE_unsigned_char, size(&peeledPointee) == 1,
               !isGoUnit(&pointee) {
                return .cString
            }
            return .pointer
        case DW_TAG_enumeration_type: return .enumeration
        case DW_TAG_structure_type, DW_TAG_union_type, DW_TAG_class_type, DW_TAG_array_type:
            if isGoUnit(&base), let own = ownName(&base) {
                if own == "string" { return .goString }
                if own.hasPrefix("[]") { return .goSlice }
                if own == "runtime.iface" || own == "runtime.eface" { return .goInterface }
            }
            return .aggregate
        case DW_TAG_subroutine_type: return .pointer
        default: return .other
        }
    }

    static func isGoUnit(_ die: inout Dwarf_Die) -> Bool {
        var cu = Dwarf_Die()
        guard dwarf_diecu(&die, &cu, nil, nil) != nil else { return false }
        return Int(dwarf_srclang(&cu)) == DW_LANG_Go
    }
}

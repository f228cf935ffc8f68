import CElfutils
import Glibc

/// Reads a function's parameters and return type from DWARF (4 or 5) through libdw.
enum SignatureReader {
    static func signature(module mod: OpaquePointer, address: UInt64, units: () -> CompileUnitIndex) -> Signature? {
        var bias: Dwarf_Addr = 0
        var unit: Dwarf_Die
        if let cu = dwfl_module_addrdie(mod, address, &bias) {
            unit = cu.pointee
        } else {
            // No .debug_aranges (Go): find the unit by its own ranges.
            let index = units()
            bias = index.bias
            guard let cu = index.unit(containing: address &- bias) else { return nil }
            unit = cu
        }
        var scopes: UnsafeMutablePointer<Dwarf_Die>?
        let count = dwarf_getscopes(&unit, address &- bias, &scopes)
        guard count > 0, let scopes else { return nil }
        defer { free(scopes) }
        for i in 0..<Int(count) where dwarf_tag(&scopes[i]) == DW_TAG_subprogram {
            var subprogram = scopes[i]
            // A scope that starts elsewhere is a function containing this address, not starting at it.
            var low: Dwarf_Addr = 0
            if dwarf_entrypc(&subprogram, &low) == 0, low != address &- bias { return nil }
            let language = Int(dwarf_srclang(&unit))
            return read(&subprogram, isGo: language == DW_LANG_Go, entry: address &- bias)
        }
        return nil
    }

    private static func read(_ subprogram: inout Dwarf_Die, isGo: Bool, entry: Dwarf_Addr) -> Signature {
        var inputs: [(name: String, type: ValueType, die: Dwarf_Die?, location: ParameterLocation?)] = []
        var goResults: [(type: ValueType, location: ParameterLocation?)] = []
        var variadic = false
        forEachChild(&subprogram) { child in
            switch dwarf_tag(&child) {
            case Int32(DW_TAG_formal_parameter):
                let name = dwarf_diename(&child).map { String(cString: $0) } ?? "arg\(inputs.count)"
                let typeDie = typeOf(&child)
                let type = typeDie.map(TypeReader.describe) ?? TypeReader.unknown
                let location = isGo ? DwarfLocation.atEntry(&child, pc: entry) : nil
                if isGo && isFlagSet(&child, DW_AT_variable_parameter) {
                    goResults.append((type, location))
                } else {
                    inputs.append((name, type, typeDie, location))
                }
            case Int32(DW_TAG_unspecified_parameters):
                variadic = true
            default:
                break
            }
        }
        let returnDie = typeOf(&subprogram)
        if isGo {
            // The Go compiler describes where each argument is on entry; its register ABI is not SysV's.
            let params = inputs.map { Parameter(name: $0.name, type: $0.type, location: $0.location ?? .unknown) }
            let locations = GoABI.resultLocations(goResults.map(\.type))
            let results = zip(goResults, locations).map { Parameter(name: "", type: $0.type, location: $1) }
            return Signature(parameters: params, results: results, isVariadic: variadic)
        }
        // For C and C++ the psABI fixes where each argument is at entry. DWARF's own locations
        // describe the body (at -O0, stack slots the prologue has not yet filled), so derive them.
        let abi = SysVABI.assign(parameterTypes: inputs.map(\.die), returnType: returnDie)
        let params = zip(inputs, abi.parameters).map { input, location in
            Parameter(name: input.name, type: input.type, location: location)
        }
        let results = returnDie.map { [Parameter(name: "", type: TypeReader.describe($0), location: abi.result)] } ?? []
        return Signature(parameters: params, results: results, isVariadic: variadic)
    }

    static func forEachChild(_ die: inout Dwarf_Die, _ body: (inout Dwarf_Die) -> Void) {
        var child = Dwarf_Die()
        guard dwarf_child(&die, &child) == 0 else { return }
        while true {
            body(&child)
            var next = Dwarf_Die()
            guard dwarf_siblingof(&child, &next) == 0 else { return }
            child = next
        }
    }

    /// The DIE named by DW_AT_type, following DW_AT_abstract_origin / DW_AT_specification.
    static func typeOf(_ die: inout Dwarf_Die) -> Dwarf_Die? {
        var attr = Dwarf_Attribute()
        guard dwarf_attr_integrate(&die, UInt32(DW_AT_type), &attr) != nil else { return nil }
        var type = Dwarf_Die()
        guard dwarf_formref_die(&attr, &type) != nil else { return nil }
        return type
    }

    static func isFlagSet(_ die: inout Dwarf_Die, _ name: Int) -> Bool {
        var attr = Dwarf_Attribute()
        var flag = false
        guard dwarf_attr_integrate(&die, UInt32(name), &attr) != nil, dwarf_formflag(&attr, &flag) == 0
        else { return false }
        return flag
    }

    static func unsignedAttribute(_ die: inout Dwarf_Die, _ name: Int) -> UInt64? {
        var attr = Dwarf_Attribute()
        var value: Dwarf_Word = 0
        guard dwarf_attr_integrate(&die, UInt32(name), &attr) != nil, dwarf_formudata(&attr, &value) == 0
        else { return nil }
        return value
    }
}

import CElfutils

/// Decodes the DWARF location of a value at one pc into a `ParameterLocation`, for the simple forms
/// compilers emit at a function's entry: a register, register pieces, or the stack above the return
/// address. Anything else (an expression nstrace would have to evaluate) is `.unknown`.
enum DwarfLocation {
    static func atEntry(_ die: inout Dwarf_Die, pc: Dwarf_Addr) -> ParameterLocation {
        var attr = Dwarf_Attribute()
        guard dwarf_attr(&die, UInt32(DW_AT_location), &attr) != nil else { return .unknown }
        var expr: UnsafeMutablePointer<Dwarf_Op>?
        var length = 0
        guard dwarf_getlocation_addr(&attr, pc, &expr, &length, 1) == 1, let expr, length > 0 else {
            return .unknown
        }
        return decode(Array(UnsafeBufferPointer(start: expr, count: length)))
    }

    static func decode(_ ops: [Dwarf_Op]) -> ParameterLocation {
        var pieces: [RegisterPiece] = []
        var pending: Register?
        var index = 0
        while index < ops.count {
            let op = ops[index]
            let atom = Int(op.atom)
            switch atom {
            case DW_OP_reg0...DW_OP_reg31:
                pending = Register(dwarfNumber: atom - DW_OP_reg0)
                if pending == nil { return .unknown }
            case DW_OP_regx:
                pending = Register(dwarfNumber: Int(clamping: op.number))
                if pending == nil { return .unknown }
            case DW_OP_breg7 where ops.count == 1:
                // rsp-relative at entry: the stack argument area.
                return .stack(offset: Int(Int64(bitPattern: op.number)))
            case DW_OP_call_frame_cfa where ops.count == 1:
                return .stack(offset: 8)
            case DW_OP_piece:
                guard let register = pending else { return .unknown }
                pieces.append(RegisterPiece(register: register, size: Int(clamping: op.number)))
                pending = nil
            default:
                return .unknown
            }
            index += 1
        }
        if pieces.isEmpty, let pending { return .register(pending) }
        if let pending { pieces.append(RegisterPiece(register: pending, size: 8)) }
        return pieces.isEmpty ? .unknown : .pieces(pieces)
    }
}

import CCapstone

/// How many entries a table can have, from the check that guards its index.
enum TableBound {
    case entries(Int)
    /// No check on every path: read while entries land in the function.
    case unbounded
    case failure(String)
}

/// A backward walk's view of the index: which register holds it there, and what the flags, once
/// compared, will say of it (from a conditional branch already passed on the way back).
struct BoundState: Hashable {
    enum Pending: Hashable { case atMost, below }
    var tracked: GPR
    var pending: Pending?
    /// A register compared in place of the index (`mov eax, edi; cmp edi, 7; ja; … [rax*4]`), with
    /// the largest value the check allows: the bound holds once a copy between the two is found.
    var alias: GPR?
    var aliasLimit: Int64 = 0
}

extension JumpResolver {
    /// The bound that `cmp index, N` and an unsigned branch (`ja` not taken, `jbe` taken: at most N;
    /// `jae` not taken, `jb` taken: below N), or an `and index, N`, put on the index on every path
    /// to the load, following copies of it (`mov`, `movzx`, `movsxd`, `cdqe`) back.
    mutating func bound(of index: GPR, before position: Int) -> TableBound {
        let walk = flow.walkBack(from: position, BoundState(tracked: index, pending: nil), Self.boundStep)
        guard walk.failure == nil, !walk.reachedEntry, !walk.ends.isEmpty else { return .unbounded }
        var most: Int64 = 0
        for end in walk.ends {
            guard let limit = Self.limit(flow.instructions[end.position], end.state) else { return .unbounded }
            most = max(most, limit)
        }
        guard most < JumpTables.maxEntries else { return .failure("its bounds check allows \(most) entries") }
        remember(walk.passed)
        return .entries(Int(most) + 1)
    }

    static func boundStep(_ insn: Instruction, _ edge: Edge, _ state: BoundState) -> WalkStep<BoundState> {
        var state = state
        var register: GPR?, immediate = false
        if insn.operands.count == 2, case .register(let r?, _) = insn.operands[0] { register = r }
        if insn.operands.count == 2, case .immediate = insn.operands[1] { immediate = true }
        let onIndex = register == state.tracked
        if insn.isInstruction(X86_INS_AND), onIndex, immediate { return .stop }
        if let pending = conditionalBound(insn, edge) {
            state.pending = pending
            return .pass(state)
        }
        if !insn.keepsFlags {
            if state.pending != nil, insn.isInstruction(X86_INS_CMP), immediate {
                if onIndex { return .stop }
                if let other = register, let limit = limit(insn, state) {
                    state.alias = other
                    state.aliasLimit = limit
                }
            }
            state.pending = nil
        }
        let clobbers = { (r: GPR) in
            insn.registersWritten.contains(r) || (insn.isInstruction(X86_INS_CALL) && callerSaved.contains(r))
        }
        if clobbers(state.tracked) {
            guard let source = copySource(insn) else { return .fail("the index is computed by `\(insn)`") }
            if source == state.alias { return .stop }
            state.tracked = source
        } else if let alias = state.alias, clobbers(alias) {
            if copySource(insn) == state.tracked { return .stop }
            state.alias = nil
        }
        return .pass(state)
    }

    static func conditionalBound(_ insn: Instruction, _ edge: Edge) -> BoundState.Pending? {
        switch (insn.id, edge) {
        case (X86_INS_JA.rawValue, .fellThrough), (X86_INS_JBE.rawValue, .taken): return .atMost
        case (X86_INS_JAE.rawValue, .fellThrough), (X86_INS_JB.rawValue, .taken): return .below
        default: return nil
        }
    }

    /// The copy an index value came from; nil for anything that computes a new value.
    static func copySource(_ insn: Instruction) -> GPR? {
        if insn.isInstruction(X86_INS_CDQE) { return .rax }
        let copies = [X86_INS_MOV, X86_INS_MOVZX, X86_INS_MOVSXD, X86_INS_MOVSX].map(\.rawValue)
        guard copies.contains(insn.id), insn.operands.count == 2, case .register(let source?, _) = insn.operands[1]
        else { return nil }
        return source
    }

    /// The largest index the check at the end of a path allows.
    static func limit(_ insn: Instruction, _ state: BoundState) -> Int64? {
        guard insn.isInstruction(X86_INS_AND) || insn.isInstruction(X86_INS_CMP) else {
            // The copy that joins an aliased compare to the index.
            return state.alias == nil ? nil : state.aliasLimit
        }
        guard case .immediate(let n)? = insn.operands.last, n >= 0 else { return nil }
        if insn.isInstruction(X86_INS_AND) { return n }
        switch state.pending {
        case .atMost?: return n
        case .below?: return n >= 1 ? n - 1 : nil
        case nil: return nil
        }
    }
}

extension Instruction {
    /// Instructions known to leave the flags alone; anything else is taken to write them, which only
    /// loses a bounds check, never invents one.
    var keepsFlags: Bool {
        mnemonic.hasPrefix("mov") || mnemonic.hasPrefix("cmov") || mnemonic.hasPrefix("set")
            || mnemonic.hasPrefix("vmov") || mnemonic.hasPrefix("nop")
            || ["lea", "push", "pop", "endbr64", "cdqe", "cdq", "cqo", "cwde", "bswap", "xchg"].contains(mnemonic)
            || (inGroup(Int32(X86_GRP_JUMP.rawValue)) && !isInstruction(X86_INS_JMP))
    }
}

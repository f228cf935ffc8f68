import CCapstone

/// What a linear sweep over a function's bytes tells the engine: its `ret`s, the return sites of the
/// calls it makes, the targets of its direct branches, and where its prologue ends.
public struct FunctionAnalysis: Sendable {
    public let start: UInt64
    public let instructions: [Instruction]
    /// Addresses of the function's `ret` instructions.
    public let returns: [UInt64]
    /// The instruction after each call the function makes: where its callees return to.
    public let returnSites: [UInt64]
    /// Targets of direct jumps and conditional jumps that land inside the function.
    public let branchTargets: Set<UInt64>
    /// The first address past the stack-growth check of a Go function (`cmp rsp, [r14+16]; jbe
    /// morestack`), where an entry breakpoint sees each call once even when the stack grows first;
    /// `start` for everything else.
    public let prologueEnd: UInt64
    /// False when the sweep stopped at bytes that do not decode before reaching the end.
    public let decodedToEnd: Bool

    /// `size`, when given, is the whole function's, of which `bytes` may be only the start (enough to
    /// find the prologue's end, whose branch goes to a tail past them).
    public init(bytes: [UInt8], at start: UInt64, size: UInt64? = nil, decoder: Decoder) {
        self.start = start
        let instructions = decoder.decodeAll(bytes, at: start)
        self.instructions = instructions
        let end = start &+ max(size ?? 0, UInt64(bytes.count))
        decodedToEnd = instructions.last.map { $0.next == start &+ UInt64(bytes.count) } ?? bytes.isEmpty
        returns = instructions.filter { $0.id == X86_INS_RET.rawValue }.map(\.address)
        returnSites = instructions.filter { $0.id == X86_INS_CALL.rawValue && $0.next < end }.map(\.next)
        var targets = Set<UInt64>()
        for insn in instructions where insn.inGroup(Int32(X86_GRP_BRANCH_RELATIVE.rawValue)) {
            if case .immediate(let t)? = insn.operands.first {
                let target = UInt64(bitPattern: t)
                if target >= start && target < end { targets.insert(target) }
            }
        }
        branchTargets = targets
        prologueEnd = FunctionAnalysis.goStackCheckEnd(instructions, start: start, end: end) ?? start
    }

    /// Go's prologue compares the stack pointer (or a register holding rsp minus the frame size) with
    /// the goroutine's stack guard, `[r14+0x10]` under the register ABI (or `[rcx+0x10]` after loading
    /// g from TLS under the older stack ABI), then branches forward to a tail that calls
    /// runtime.morestack and jumps back to the start.
    static func goStackCheckEnd(_ instructions: [Instruction], start: UInt64, end: UInt64) -> UInt64? {
        for (i, insn) in instructions.prefix(4).enumerated() where insn.id == X86_INS_CMP.rawValue {
            let comparesGuard = insn.operands.contains { operand in
                if case .memory(let m) = operand, m.base == .r14 || m.base == .rcx, m.index == nil,
                   m.displacement == 0x10 || m.displacement == 0x18 { return true }
                return false
            }
            guard comparesGuard, i + 1 < instructions.count else { continue }
            let branch = instructions[i + 1]
            guard branch.inGroup(Int32(X86_GRP_JUMP.rawValue)), branch.id != X86_INS_JMP.rawValue,
                  case .immediate(let t)? = branch.operands.first
            else { continue }
            let target = UInt64(bitPattern: t)
            if target > branch.address, target < end { return branch.next }
        }
        return nil
    }
}

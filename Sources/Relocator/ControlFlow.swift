import CCapstone

extension Instruction {
    func isInstruction(_ id: x86_insn) -> Bool { self.id == id.rawValue }

    var isIndirectJump: Bool {
        guard isInstruction(X86_INS_JMP) else { return false }
        if case .immediate? = operands.first { return false }
        return true
    }

    /// The target of a direct jmp or jcc.
    var directBranchTarget: UInt64? {
        guard inGroup(Int32(X86_GRP_JUMP.rawValue)), case .immediate(let t)? = operands.first else { return nil }
        return UInt64(bitPattern: t)
    }

    /// The target of a direct jmp, jcc or call: a place other code can enter.
    public var directTransferTarget: UInt64? {
        guard inGroup(Int32(X86_GRP_JUMP.rawValue)) || inGroup(Int32(X86_GRP_CALL.rawValue)),
              case .immediate(let t)? = operands.first else { return nil }
        return UInt64(bitPattern: t)
    }

    /// The fillers compilers and assemblers align code with.
    var isPaddingNop: Bool {
        mnemonic == "nop" || mnemonic == "int3"
            || (isInstruction(X86_INS_XCHG) && operandText == "ax, ax")
    }

    var fallsThrough: Bool {
        !(isInstruction(X86_INS_JMP) || isInstruction(X86_INS_RET) || isInstruction(X86_INS_UD2)
          || isInstruction(X86_INS_HLT))
    }
}

/// Registers a call may change (System V): a value in one does not survive it.
let callerSaved: Set<GPR> = [.rax, .rcx, .rdx, .rsi, .rdi, .r8, .r9, .r10, .r11]

/// Which edge of a predecessor a backward walk came along.
enum Edge: Hashable { case fellThrough, taken }

/// The control flow a linear sweep shows, for walking backward from a point along every path that
/// reaches it (the jump-table reader finds the definitions and checks behind an indirect jump so).
/// An instruction's predecessors: the one before it when it falls through, direct branches to it,
/// and the function's indirect jumps for code no direct branch reaches (a switch's cases) or that is
/// known to be a table target.
struct ControlFlow {
    let instructions: [Instruction]
    let ranges: [Range<UInt64>]
    let position: [UInt64: Int]
    /// Positions some indirect jump of the function is known to reach.
    var tableTargets = Set<Int>()
    private let incoming: [Int: [Int]]
    private let indirectJumps: [Int]
    /// Alignment nops no branch reaches: not a predecessor of the code after them, unless a table
    /// turns out to jump there.
    private let padding: Set<Int>
    private let entry: UInt64?

    init(_ instructions: [Instruction], ranges: [Range<UInt64>]) {
        self.instructions = instructions
        self.ranges = ranges
        position = Dictionary(instructions.enumerated().map { ($1.address, $0) }, uniquingKeysWith: { a, _ in a })
        var incoming: [Int: [Int]] = [:]
        for (i, insn) in instructions.enumerated() {
            if let target = insn.directBranchTarget, let t = position[target] { incoming[t, default: []].append(i) }
        }
        self.incoming = incoming
        indirectJumps = instructions.indices.filter { instructions[$0].isIndirectJump }
        var padding = Set<Int>()
        for (i, insn) in instructions.enumerated().dropFirst() where insn.isPaddingNop && incoming[i] == nil {
            let before = instructions[i - 1]
            if !before.fallsThrough || before.next != insn.address || padding.contains(i - 1) { padding.insert(i) }
        }
        self.padding = padding
        entry = ranges.first?.lowerBound
    }

    func contains(_ address: UInt64) -> Bool { ranges.contains { $0.contains(address) } }

    /// The function's entry: reached by calls, which the function does not show.
    func isEntry(_ i: Int) -> Bool { instructions[i].address == entry }

    func predecessors(of i: Int) -> [(Int, Edge)] {
        var out: [(Int, Edge)] = []
        if i > 0, instructions[i - 1].fallsThrough, instructions[i - 1].next == instructions[i].address,
           !padding.contains(i - 1) || tableTargets.contains(i - 1) {
            out.append((i - 1, .fellThrough))
        }
        for source in incoming[i] ?? [] { out.append((source, .taken)) }
        if (out.isEmpty && !isEntry(i)) || tableTargets.contains(i) {
            for jump in indirectJumps { out.append((jump, .taken)) }
        }
        return out
    }
}

/// What one backward walk step decides.
enum WalkStep<State> {
    case pass(State)
    case stop
    case fail(String)
}

struct WalkVisit<State: Hashable>: Hashable {
    let position: Int
    let edge: Edge
    let state: State
}

struct WalkResult<State> {
    var ends: [(position: Int, state: State)] = []
    var passed = Set<Int>()
    /// Whether some path went back past the function's entry: what it found there came from the caller.
    var reachedEntry = false
    var failure: String?
}

extension ControlFlow {
    static let walkLimit = 20_000

    /// Walks every path backward from `start` (exclusive), letting `step` decide at each instruction;
    /// a path ends where `step` stops, or at the function's entry. Any path that fails, or reaches
    /// code nothing in the function leads to, fails the walk.
    func walkBack<State: Hashable>(from start: Int, _ initial: State,
                                   _ step: (Instruction, Edge, State) -> WalkStep<State>) -> WalkResult<State> {
        var result = WalkResult<State>()
        var seen = Set<WalkVisit<State>>()
        var work: [WalkVisit<State>] = []
        func enqueue(_ from: Int, _ state: State) -> Bool {
            if isEntry(from) { result.reachedEntry = true }
            let preds = predecessors(of: from)
            for (p, edge) in preds { work.append(WalkVisit(position: p, edge: edge, state: state)) }
            return !preds.isEmpty || isEntry(from)
        }
        guard enqueue(start, initial) else {
            result.failure = "nothing in the function leads to \(hex(instructions[start].address))"
            return result
        }
        while let visit = work.popLast() {
            guard seen.insert(visit).inserted else { continue }
            guard seen.count < Self.walkLimit else {
                result.failure = "too many paths lead to it"
                return result
            }
            switch step(instructions[visit.position], visit.edge, visit.state) {
            case .stop:
                result.ends.append((visit.position, visit.state))
            case .fail(let why):
                result.failure = why
                return result
            case .pass(let next):
                result.passed.insert(visit.position)
                guard enqueue(visit.position, next) else {
                    result.failure = "nothing in the function leads to \(hex(instructions[visit.position].address))"
                    return result
                }
            }
        }
        return result
    }
}

import CCapstone

/// Where each indirect `jmp` of a function can go, from the instructions that compute its target:
/// a switch's jump table (gcc's and clang's x86-64 forms, PIC and not), a call in tail position
/// through memory, or unresolved. A missed table target could put an inline window where a thread
/// lands in its middle, so every doubt ends in `.unresolved`; an extra target only costs a window.
///
/// Limits the caller must know: pass every part of the function (its `.cold` part too), or a jump
/// from that part into a dispatch sequence, and a table entry landing there, go unseen; landing pads
/// are not treated as predecessors (they start blocks, never a dispatch sequence); a label address
/// stored in memory (GNU C `&&label`) and jumped to through a pointer is taken for a tail call.
public enum JumpTables {
    /// A larger bound is not a compiler's switch.
    static let maxEntries = 1 << 16
    /// Without a bounds check, entries are read while they land inside the function, up to this many.
    static let unboundedLimit = 4096

    /// `instructions`: the function's, decoded, in address order; `ranges`: its body first, then any
    /// split-off parts; `bias`: what to add to an absolute address stored in the file; `read`: the
    /// module file's bytes at a runtime address.
    public static func classify(instructions: [Instruction], ranges: [Range<UInt64>], bias: UInt64 = 0,
                                read: (UInt64, Int) -> [UInt8]?) -> [UInt64: IndirectJumpTarget] {
        var flow = ControlFlow(instructions, ranges: ranges)
        var found: [UInt64: (target: IndirectJumpTarget, assumes: Set<UInt64>)] = [:]
        var allTargets = Set<UInt64>()
        // Each round walks back through the table targets the last one found, as entered from the
        // indirect jumps, until no new target appears.
        var entered = Set<Int>()
        for _ in 0..<4 {
            flow.tableTargets = entered
            withoutActuallyEscaping(read) { read in
                for (position, insn) in instructions.enumerated() where insn.isIndirectJump {
                    var resolver = JumpResolver(flow: flow, bias: bias, read: read)
                    let target = resolver.resolve(position)
                    found[insn.address] = (target, resolver.passed)
                }
            }
            for case .table(let targets) in found.values.map(\.target) { allTargets.formUnion(targets) }
            entered = Set(allTargets.compactMap { flow.position[$0] })
            if entered.isSubset(of: flow.tableTargets) { break }
        }
        // Still a new target after the last round: where it lands inside another jump's dispatch
        // sequence, that sequence's definitions or bounds check may be skipped.
        allTargets = allTargets.filter { flow.position[$0].map { !flow.tableTargets.contains($0) } ?? true }
        return found.mapValues { entry in
            guard case .table = entry.target, let entered = allTargets.first(where: entry.assumes.contains) else {
                return entry.target
            }
            return .unresolved("a table target (\(hex(entered))) enters its dispatch sequence")
        }
    }
}

/// What a register holds at a point, as far as the instructions that define it tell.
indirect enum SymbolicValue {
    case constant(UInt64)
    case sum(SymbolicValue, SymbolicValue)
    /// `size` bytes at `table + index * size`, sign-extended or not; `at` is the loading instruction.
    case tableEntry(TableLoad)
    /// A pointer to code elsewhere: loaded from one memory slot (no index register: a GOT entry, a
    /// vtable slot), possibly demangled (glibc's PTR_DEMANGLE: ror 0x11, xor fs:[0x30]), or passed
    /// in by the caller in an argument register.
    case functionPointer
    case unknown(String)
}

struct TableLoad {
    let table: UInt64
    /// nil for an entry the compiler knew the index of (a switch with one case left): one entry.
    let index: GPR?
    let size: Int
    let signed: Bool
    let at: Int
}

/// Resolves one indirect jump: evaluates its target backward through the definitions that reach it,
/// then reads the table it names with the bound its dominating check gives.
struct JumpResolver {
    let flow: ControlFlow
    let bias: UInt64
    let read: (UInt64, Int) -> [UInt8]?
    /// Addresses the reasoning assumed are entered only from where the walks came (the jump itself,
    /// and everything between it and the definitions and checks it rests on).
    private(set) var passed = Set<UInt64>()

    init(flow: ControlFlow, bias: UInt64, read: @escaping (UInt64, Int) -> [UInt8]?) {
        self.flow = flow
        self.bias = bias
        self.read = read
    }

    static let arguments: Set<GPR> = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]

    /// The reasoning allows a few reaching definitions per register and a few levels of them.
    static let maxValues = 32, maxDepth = 6

    mutating func resolve(_ position: Int) -> IndirectJumpTarget {
        let jump = flow.instructions[position]
        passed.insert(jump.address)
        let values: [SymbolicValue]
        switch jump.operands.first {
        case .register(let r?, _)?:
            values = evaluate(r, before: position, depth: 0)
        case .memory(let m)?:
            values = load(m, size: 8, signed: false, at: position, depth: 0)
        default:
            return .unresolved("its operand is not a register or memory")
        }
        var targets = Set<UInt64>()
        var leaves = false
        for value in values {
            switch destinations(of: value) {
            case .unresolved(let why): return .unresolved(why)
            case .tailCall: leaves = true
            case .table(let found): targets.formUnion(found)
            }
        }
        if leaves { return targets.isEmpty ? .tailCall : .unresolved("some paths leave the function, others stay") }
        return .table(targets)
    }

    private mutating func destinations(of value: SymbolicValue) -> IndirectJumpTarget {
        switch value {
        case .functionPointer:
            return .tailCall
        case .constant(let c):
            if !flow.contains(c) { return .tailCall }
            return flow.position[c] != nil ? .table([c]) : .unresolved("it jumps to \(hex(c)), inside an instruction")
        case .tableEntry(let entry) where !entry.signed:
            // Absolute addresses, as the file holds them before the dynamic linker relocates them.
            let bias = self.bias
            return readTable(entry) { $0 &+ bias }
        case .sum(.constant(let base), .tableEntry(let entry)), .sum(.tableEntry(let entry), .constant(let base)):
            guard entry.size == 4, entry.signed else { return .unresolved("entries of \(entry.size) bytes added to a base") }
            return readTable(entry) { base &+ $0 }
        case .unknown(let why):
            return .unresolved("its target is \(why)")
        default:
            return .unresolved("its target is computed in a way no compiler's switch is")
        }
    }

    /// Every entry of a table, each turned into a target; all must be instructions of the function.
    private mutating func readTable(_ entry: TableLoad, _ target: (UInt64) -> UInt64) -> IndirectJumpTarget {
        let bound = entry.index.map { self.bound(of: $0, before: entry.at) } ?? .entries(1)
        if case .failure(let why) = bound { return .unresolved(why) }
        let count: Int
        if case .entries(let n) = bound { count = n } else { count = JumpTables.unboundedLimit }
        var targets = Set<UInt64>()
        var readBytes: [UInt8] = []
        if let bytes = read(entry.table, count &* entry.size) { readBytes = bytes }
        let available = readBytes.count / entry.size
        if case .entries = bound, available < count {
            return .unresolved("its table at \(hex(entry.table)) of \(count) entries is not all in the file")
        }
        var outside = 0
        for i in 0..<min(count, available) {
            var raw: UInt64 = 0
            for b in 0..<entry.size { raw |= UInt64(readBytes[i * entry.size + b]) << (8 * b) }
            if entry.signed { raw = UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: raw))) }
            let t = target(raw)
            let lands = flow.contains(t) && flow.position[t] != nil
            // Without a bound the table ends where its entries stop landing on the function's code.
            if case .unbounded = bound, !lands { break }
            if !flow.contains(t) {
                outside += 1
            } else if !lands {
                return .unresolved("entry \(i) of its table at \(hex(entry.table)) lands inside an instruction (\(hex(t)))")
            } else {
                targets.insert(t)
            }
        }
        // A bounded table of pointers that all leave the function is a call table in tail position
        // (`svcauthsw[flavor].authenticate`); a switch's offsets that all leave it mean the function's
        // range is wrong.
        if outside > 0, targets.isEmpty, entry.size == 8, !entry.signed { return .tailCall }
        if outside > 0 { return .unresolved("\(outside) entries of its table at \(hex(entry.table)) leave the function") }
        return targets.isEmpty ? .unresolved("its table at \(hex(entry.table)) has no entry in the function") : .table(targets)
    }

    // MARK: Values

    /// What `register` may hold just before the instruction at `position`: one value per reaching
    /// definition.
    mutating func evaluate(_ register: GPR, before position: Int, depth: Int) -> [SymbolicValue] {
        guard depth < Self.maxDepth else { return [.unknown("computed through too many steps")] }
        if register == .rip { return [.constant(flow.instructions[position].next)] }
        let walk = flow.walkBack(from: position, register) { insn, _, r in
            insn.registersWritten.contains(r) || (insn.isInstruction(X86_INS_CALL) && callerSaved.contains(r))
                ? .stop : .pass(r)
        }
        if let failure = walk.failure { return [.unknown("unknown where \(register) is set (\(failure))")] }
        remember(walk.passed)
        let definitions = Set(walk.ends.map(\.position))
        guard definitions.count <= Self.maxValues else { return [.unknown("set in too many places")] }
        var values: [SymbolicValue] = []
        if walk.reachedEntry {
            values.append(Self.arguments.contains(register)
                ? .functionPointer : .unknown("\(register) as the caller left it"))
        }
        for position in definitions.sorted() { values += define(register, at: position, depth: depth + 1) }
        return values.count <= Self.maxValues ? values : [.unknown("made of too many combinations")]
    }

    /// The value the instruction at `position` leaves in `register`.
    private mutating func define(_ register: GPR, at position: Int, depth: Int) -> [SymbolicValue] {
        let insn = flow.instructions[position]
        let ops = insn.operands
        guard case .register(let dest?, let size)? = ops.first, dest == register, ops.count == 2 else {
            if insn.isInstruction(X86_INS_CALL) { return [.unknown("returned by the call at \(hex(insn.address))")] }
            return [.unknown("set by `\(insn)` at \(hex(insn.address))")]
        }
        switch (insn.id, ops[1]) {
        case (X86_INS_LEA.rawValue, .memory(let m)) where size == 8:
            return address(m, at: position, depth: depth)
        case (X86_INS_MOV.rawValue, .immediate(let v)), (X86_INS_MOVABS.rawValue, .immediate(let v)):
            let value = UInt64(bitPattern: v)
            return [.constant(size == 8 ? value : value & 0xffff_ffff)]
        case (X86_INS_MOV.rawValue, .register(let source?, 8)) where size == 8:
            return evaluate(source, before: position, depth: depth)
        case (X86_INS_MOV.rawValue, .memory(let m)) where size == 8 || size == 4:
            return load(m, size: size, signed: false, at: position, depth: depth)
        case (X86_INS_MOVSXD.rawValue, .memory(let m)) where size == 8 && m.size == 4:
            return load(m, size: 4, signed: true, at: position, depth: depth)
        case (X86_INS_ADD.rawValue, _) where size == 8:
            return combine(evaluate(register, before: position, depth: depth), operand(ops[1], at: position, depth: depth))
        case (X86_INS_ROR.rawValue, .immediate(0x11)):
            return demangled(register, at: position, depth: depth)
        case (X86_INS_XOR.rawValue, .memory) where insn.isPointerGuardXor:
            return demangled(register, at: position, depth: depth)
        default:
            return [.unknown("set by `\(insn)` at \(hex(insn.address))")]
        }
    }

    /// glibc's PTR_DEMANGLE of a pointer it loaded is still that pointer.
    private mutating func demangled(_ register: GPR, at position: Int, depth: Int) -> [SymbolicValue] {
        let inner = evaluate(register, before: position, depth: depth)
        return inner.allSatisfy { if case .functionPointer = $0 { return true }; return false }
            ? [.functionPointer] : [.unknown("a mangled value not loaded from memory")]
    }

    private mutating func operand(_ op: Operand, at position: Int, depth: Int) -> [SymbolicValue] {
        switch op {
        case .register(let r?, 8): return evaluate(r, before: position, depth: depth)
        case .immediate(let v): return [.constant(UInt64(bitPattern: v))]
        default: return [.unknown("an operand that is not a register or a constant")]
        }
    }

    /// `[base + index * scale + displacement]` as lea computes it.
    private mutating func address(_ m: MemoryOperand, at position: Int, depth: Int) -> [SymbolicValue] {
        guard m.segment == nil else { return [.unknown("a segment-relative address")] }
        var parts: [SymbolicValue] = [.constant(UInt64(bitPattern: m.displacement))]
        if let base = m.base { parts = combine(parts, evaluate(base, before: position, depth: depth)) }
        if let index = m.index {
            guard m.scale == 1 else { return [.unknown("a scaled sum")] }
            parts = combine(parts, evaluate(index, before: position, depth: depth))
        }
        return parts
    }

    /// A load through a memory operand: a table entry when it has an index over a constant base, a
    /// pointer from one slot when it has none.
    private mutating func load(_ m: MemoryOperand, size: Int, signed: Bool, at position: Int,
                               depth: Int) -> [SymbolicValue] {
        guard let index = m.index else {
            let slot = flow.instructions[position].next &+ UInt64(bitPattern: m.displacement)
            if m.base == .rip, flow.contains(slot) { return [.unknown("loaded from inside the function")] }
            if m.base == .rip, size == 4, signed, m.segment == nil {
                return [.tableEntry(TableLoad(table: slot, index: nil, size: 4, signed: true, at: position))]
            }
            return size == 8 ? [.functionPointer] : [.unknown("a 4-byte value loaded from memory")]
        }
        guard m.scale == size, m.segment == nil else {
            return [.unknown("a load scaled by \(m.scale) of \(size)-byte entries")]
        }
        let bases = m.base.map { evaluate($0, before: position, depth: depth) } ?? [.constant(0)]
        return bases.map { base in
            guard case .constant(let b) = base else { return .unknown("a table whose base is not a constant") }
            return .tableEntry(TableLoad(table: b &+ UInt64(bitPattern: m.displacement), index: index,
                                         size: size, signed: signed, at: position))
        }
    }

    /// Every sum of one value from each side, constants folded.
    private func combine(_ a: [SymbolicValue], _ b: [SymbolicValue]) -> [SymbolicValue] {
        guard a.count * b.count <= Self.maxValues else { return [.unknown("made of too many combinations")] }
        return a.flatMap { x in
            b.map { y -> SymbolicValue in
                switch (x, y) {
                case (.constant(let p), .constant(let q)): return .constant(p &+ q)
                case (.unknown(let why), _), (_, .unknown(let why)): return .unknown(why)
                default: return .sum(x, y)
                }
            }
        }
    }

    mutating func remember(_ positions: Set<Int>) {
        for p in positions { passed.insert(flow.instructions[p].address) }
    }
}

extension Instruction {
    /// `xor reg, fs:[0x30]`: glibc's pointer guard.
    var isPointerGuardXor: Bool {
        guard isInstruction(X86_INS_XOR), case .memory(let m)? = operands.last else { return false }
        return m.segment == .fs && m.base == nil && m.index == nil && m.displacement == 0x30
    }
}

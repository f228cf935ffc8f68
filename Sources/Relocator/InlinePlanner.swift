import CCapstone

/// Decides a function's inline windows. A window is sound only when nothing can enter it except at its
/// first byte: no direct branch target, jump-table target, landing pad or call return point inside
/// it, no call (its return point would be inside) and no `syscall` (a restart moves RIP back onto it).
/// The function's first instruction is never in a window of a traced function: a uprobe (bpftrace,
/// perf) writes its int3 there, and the kernel would run the original instruction and come back into
/// the middle of nstrace's jump.
public struct InlinePlanner {
    let decoder: Decoder

    public init(decoder: Decoder) {
        self.decoder = decoder
    }

    /// What the planner knows of the function.
    public struct Function {
        public let start: UInt64
        /// Where its entry is recorded in Go (after the stack check); `start` elsewhere.
        public let entry: UInt64
        /// Its body first, then any split-off parts.
        public let parts: [CodePart]
        /// Entry points its own branches do not show: landing pads.
        public let extraEntryPoints: Set<UInt64>
        /// Why those may be incomplete (an exception table that could not be read to its end), if so.
        public let extraEntryPointsIncomplete: String?
        /// Whether a window may cover the first instruction (nstrace's own sites: the dynamic linker's
        /// r_brk, which no uprobe user probes).
        public let mayCoverStart: Bool
        /// Whether the entry is recorded at all (false: only its returns matter).
        public let tracesEntry: Bool
        /// The registers the entry record must see as they were at the call: those the function's
        /// arguments are in (all six of the ABI's when nothing says; none when nothing is recorded).
        public let argumentRegisters: Set<GPR>
        /// Whether an argument is in an XMM register (or nothing says).
        public let vectorArguments: Bool

        public init(start: UInt64, entry: UInt64, parts: [CodePart], extraEntryPoints: Set<UInt64> = [],
                    extraEntryPointsIncomplete: String? = nil, mayCoverStart: Bool = false, tracesEntry: Bool = true,
                    argumentRegisters: Set<GPR> = [.rdi, .rsi, .rdx, .rcx, .r8, .r9], vectorArguments: Bool = true) {
            self.argumentRegisters = argumentRegisters
            self.vectorArguments = vectorArguments
            self.start = start
            self.entry = entry
            self.parts = parts
            self.extraEntryPoints = extraEntryPoints
            self.extraEntryPointsIncomplete = extraEntryPointsIncomplete
            self.mayCoverStart = mayCoverStart
            self.tracesEntry = tracesEntry
        }

        func contains(_ address: UInt64) -> Bool {
            parts.contains { address >= $0.start && address < $0.end }
        }
    }

    /// `indirectJumps` classifies the function's indirect jumps, given all its instructions in address
    /// order and its parts' ranges (JumpTables.classify).
    public func plan(_ function: Function,
                     indirectJumps: ([Instruction], [Range<UInt64>]) -> [UInt64: IndirectJumpTarget]) -> InlinePlan {
        var parts: [[Instruction]] = []
        for part in function.parts {
            let instructions = decoder.decodeAll(part.bytes, at: part.start)
            guard instructions.last?.next == part.end, !instructions.isEmpty else {
                let at = instructions.last?.next ?? part.start
                return InlinePlan(windows: [], fallbacks: [
                    InlineFallback(address: function.entry, kind: .entry,
                                   reason: "its code does not decode at \(hex(at)): its branch targets and returns are unknown"),
                ], returnsSeenAtExits: false)
            }
            parts.append(instructions)
        }
        let all = parts.joined().sorted { $0.address < $1.address }
        let indirect = indirectJumps(all, function.parts.map { $0.start..<$0.end })
        var analysis = InlineAnalysis(function: function, parts: parts, indirectJumps: indirect)
        analysis.planEntry()
        analysis.planExits()
        return InlinePlan(windows: analysis.windows, fallbacks: analysis.fallbacks)
    }

    static func isCall(_ insn: Instruction) -> Bool { insn.inGroup(Int32(X86_GRP_CALL.rawValue)) }

    static func isUnconditionalTransfer(_ insn: Instruction) -> Bool {
        insn.id == X86_INS_RET.rawValue || insn.id == X86_INS_JMP.rawValue || insn.id == X86_INS_UD2.rawValue
            || insn.id == X86_INS_HLT.rawValue
    }
}

/// The planner's working state for one function (its entry and exits here; the never-executed holes
/// it borrows and the windows it builds in InlinePlanner+Windows.swift).
struct InlineAnalysis {
    let function: InlinePlanner.Function
    let parts: [[Instruction]]
    let indirectJumps: [UInt64: IndirectJumpTarget]
    /// Addresses reached other than by falling through, with how many ways.
    var entryPoints: [UInt64: Int] = [:]
    /// Jumps that leave the function for places unknown: indirect tail calls, and indirect jumps that
    /// cannot be resolved.
    var leavingJumps: [(Instruction, String)] = []
    /// Direct jumps to other functions: tail calls whose callee is known.
    var tailCalls: [Instruction] = []
    /// An indirect jump whose targets are unknown could land anywhere: no window for an exit then.
    var unresolved: String?
    var windows: [InlineWindow] = []
    var fallbacks: [InlineFallback] = []
    /// Instructions already inside a window.
    var covered: Set<UInt64> = []
    /// Never-executed bytes windows may use.
    var holes: [Hole] = []

    init(function: InlinePlanner.Function, parts: [[Instruction]], indirectJumps: [UInt64: IndirectJumpTarget]) {
        self.function = function
        self.parts = parts
        self.indirectJumps = indirectJumps
        findEntryPoints()
        findHoles()
    }

    private mutating func findEntryPoints() {
        for point in function.extraEntryPoints { entryPoints[point, default: 0] += 1 }
        for part in function.parts.dropFirst() { entryPoints[part.start, default: 0] += 0 }
        for insn in parts.joined() {
            if insn.inGroup(Int32(X86_GRP_CALL.rawValue)) {
                entryPoints[insn.next, default: 0] += 1
                continue
            }
            guard insn.inGroup(Int32(X86_GRP_JUMP.rawValue)) else { continue }
            if case .immediate(let raw)? = insn.operands.first {
                let target = UInt64(bitPattern: raw)
                if function.contains(target) {
                    entryPoints[target, default: 0] += 1
                } else if insn.id == X86_INS_JMP.rawValue {
                    tailCalls.append(insn)
                }
                continue
            }
            guard insn.id == X86_INS_JMP.rawValue else { continue }
            switch indirectJumps[insn.address] ?? .unresolved("not classified") {
            case .table(let targets):
                for target in targets { entryPoints[target, default: 0] += 1 }
            case .tailCall:
                leavingJumps.append((insn, "an indirect tail call: its return is seen at the caller's return address"))
            case .unresolved(let why):
                unresolved = "an indirect jump at \(hex(insn.address)) nstrace cannot resolve (\(why))"
                leavingJumps.append((insn, "an indirect jump nstrace cannot resolve (\(why)): the call's return is seen at the caller's return address"))
            }
        }
        // The start is entered by every call; branches back to it are new calls as far as any
        // breakpoint there can tell.
        entryPoints[function.start, default: 0] += 1
        if unresolved == nil, let incomplete = function.extraEntryPointsIncomplete { unresolved = incomplete }
    }

    // MARK: Entry

    mutating func planEntry() {
        guard function.tracesEntry else { return }
        let entry = function.entry
        guard let (first, index) = locate(entry) else {
            fallbacks.append(InlineFallback(address: entry, kind: .entry, reason: "no instruction at \(hex(entry))"))
            return
        }
        if entry != function.start || function.mayCoverStart {
            // Go (after the stack check) or an internal site: the window starts right here.
            if let window = window(from: (first, index), recordsEntry: true, stackAdjust: 0) {
                add(window)
            } else {
                fallbacks.append(InlineFallback(address: entry, kind: .entry, reason: "no window of 5 bytes fits there"))
            }
            return
        }
        let i0 = parts[first][index]
        if let reason = firstInstructionBlocksWindow(i0) {
            fallbacks.append(InlineFallback(address: entry, kind: .entry, reason: reason))
            return
        }
        // Where execution goes after the first instruction, entered once per call.
        var next: (Int, Int)?
        if i0.id == X86_INS_JMP.rawValue, case .immediate(let raw)? = i0.operands.first {
            let target = UInt64(bitPattern: raw)
            if function.contains(target), entryPoints[target] == 1 { next = locate(target) }
        } else if !InlinePlanner.isUnconditionalTransfer(i0), !RefusalTable.isControlFlow(i0),
                  index + 1 < parts[first].count, entryPoints[i0.next] == nil {
            next = (first, index + 1)
        }
        guard let start = next else {
            let reason: String
            if i0.id == X86_INS_JMP.rawValue || i0.id == X86_INS_RET.rawValue {
                reason = "its first instruction (\(i0)) already leaves: no instruction follows it on every call"
            } else if index + 1 >= parts[first].count {
                reason = "it is one instruction long"
            } else {
                reason = "the instruction after the first is also a branch target (a loop back to the start)"
            }
            fallbacks.append(InlineFallback(address: entry, kind: .entry, reason: reason))
            return
        }
        guard let adjust = stackEffect(of: i0) else {
            fallbacks.append(InlineFallback(address: entry, kind: .entry,
                                            reason: "its first instruction (\(i0)) moves the stack pointer by an unknown amount"))
            return
        }
        if let window = window(from: start, recordsEntry: true, stackAdjust: -adjust) {
            add(window)
        } else {
            fallbacks.append(InlineFallback(address: entry, kind: .entry,
                                            reason: "no 5-byte window of straight-line code after its first instruction"))
        }
    }

    /// The first instruction stays where it is; the entry is recorded after it, so it must leave the
    /// arguments as they were.
    private func firstInstructionBlocksWindow(_ insn: Instruction) -> String? {
        if !insn.registersWritten.isDisjoint(with: function.argumentRegisters)
            || (function.vectorArguments && insn.writesVectorRegisters) {
            return "its first instruction (\(insn)) changes an argument register before the entry could be recorded"
        }
        if insn.id == X86_INS_CALL.rawValue || insn.id == X86_INS_SYSCALL.rawValue {
            return "its first instruction is \(insn)"
        }
        return nil
    }

    /// How the instruction moves RSP, or nil when it cannot be known from the instruction alone — or
    /// is 1 GiB or more, which no real frame reserves: the entry probe adds the amount to its own
    /// displacements, which must not overflow (nor negating -2^31 trap).
    private func stackEffect(of insn: Instruction) -> Int32? {
        guard insn.registersWritten.contains(.rsp) else { return 0 }
        let id = insn.id
        if id == X86_INS_PUSH.rawValue, !insn.hasOperandSizePrefix { return -8 }
        if id == X86_INS_SUB.rawValue || id == X86_INS_ADD.rawValue,
           case .register(.rsp?, 8)? = insn.operands.first, insn.operands.count == 2,
           case .immediate(let n) = insn.operands[1], n.magnitude < 1 << 30, let n32 = Int32(exactly: n) {
            return id == X86_INS_SUB.rawValue ? -n32 : n32
        }
        if id == X86_INS_LEA.rawValue, case .register(.rsp?, 8)? = insn.operands.first, insn.operands.count == 2,
           case .memory(let m) = insn.operands[1], m.base == .rsp, m.index == nil, m.displacement.magnitude < 1 << 30,
           let d = Int32(exactly: m.displacement) {
            return d
        }
        return nil
    }

    // MARK: Exits

    mutating func planExits() {
        for (jump, reason) in leavingJumps {
            fallbacks.append(InlineFallback(address: jump.address, kind: .tailExit, reason: reason))
        }
        let tailCallAt = Set(tailCalls.map(\.address))
        for (p, instructions) in parts.enumerated() {
            for (k, insn) in instructions.enumerated() where insn.id == X86_INS_RET.rawValue || tailCallAt.contains(insn.address) {
                if covered.contains(insn.address) { continue }
                if insn.id != X86_INS_RET.rawValue {
                    // A tail call: its window records that the call goes on in the callee.
                    if let window = exitWindow(part: p, ret: k) {
                        add(window)
                    } else {
                        fallbacks.append(InlineFallback(address: insn.address, kind: .tailExit,
                                                        reason: "a tail call with no room for a window: its return is seen at the caller's return address"))
                    }
                    continue
                }
                if let unresolved {
                    fallbacks.append(InlineFallback(address: insn.address, kind: .exit,
                                                    reason: "\(unresolved): it could land inside any window"))
                    continue
                }
                if let window = exitWindow(part: p, ret: k) {
                    add(window)
                } else {
                    fallbacks.append(InlineFallback(address: insn.address, kind: .exit, reason: exitReason(part: p, ret: k)))
                }
            }
        }
    }

    /// The shortest straight-line run ending with the `ret` (or tail call) that spans 5 bytes (or
    /// reaches padding).
    private mutating func exitWindow(part p: Int, ret k: Int) -> InlineWindow? {
        let instructions = parts[p]
        var j = k
        var bytes = instructions[k].length
        while bytes < 5, j > 0 {
            let previous = instructions[j - 1]
            // A conditional branch may stay in the window (it leaves from the pad); a jump or ret means the
            // ret is reached only by branches.
            guard entryPoints[instructions[j].address] == nil, mayHold(previous), !covered.contains(previous.address),
                  !InlinePlanner.isUnconditionalTransfer(previous)
            else { break }
            if previous.address == function.start, !function.mayCoverStart { break }
            j -= 1
            bytes += previous.length
        }
        // Never over the function's first byte, where uprobes write (a function that is one ret or one jmp).
        if instructions[j].address == function.start, !function.mayCoverStart { return nil }
        return finishWindow(Array(instructions[j...k]), bytes: bytes, entry: false, adjust: 0)
    }

    private func exitReason(part p: Int, ret k: Int) -> String {
        let instructions = parts[p]
        if k > 0, entryPoints[instructions[k].address] != nil {
            return "the ret is itself a branch target, with no room for a 5-byte jump before it or padding after it"
        }
        return "less than 5 bytes of straight-line code end with this ret, and no padding within reach"
    }
}

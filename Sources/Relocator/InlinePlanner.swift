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

        public init(start: UInt64, entry: UInt64, parts: [CodePart], extraEntryPoints: Set<UInt64> = [],
                    extraEntryPointsIncomplete: String? = nil, mayCoverStart: Bool = false, tracesEntry: Bool = true) {
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
        var analysis = Analysis(function: function, parts: parts, indirectJumps: indirect)
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

/// The planner's working state for one function.
private struct Analysis {
    let function: InlinePlanner.Function
    let parts: [[Instruction]]
    let indirectJumps: [UInt64: IndirectJumpTarget]
    /// Addresses reached other than by falling through, with how many ways.
    var entryPoints: [UInt64: Int] = [:]
    /// Jumps that leave the function: tail calls, and indirect jumps that cannot be resolved.
    var leavingJumps: [(Instruction, String)] = []
    /// An indirect jump whose targets are unknown could land anywhere: no window for an exit then.
    var unresolved: String?
    var windows: [InlineWindow] = []
    var fallbacks: [InlineFallback] = []
    /// Instructions already inside a window.
    var covered: Set<UInt64> = []
    /// Padding bytes already taken, per part.
    var paddingUsed: [Int]

    init(function: InlinePlanner.Function, parts: [[Instruction]], indirectJumps: [UInt64: IndirectJumpTarget]) {
        self.function = function
        self.parts = parts
        self.indirectJumps = indirectJumps
        paddingUsed = Array(repeating: 0, count: parts.count)
        findEntryPoints()
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
                    leavingJumps.append((insn, "a tail call to \(hex(target)): its return is seen at the caller's return address"))
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
        let arguments: Set<GPR> = [.rdi, .rsi, .rdx, .rcx, .r8, .r9]
        if !insn.registersWritten.isDisjoint(with: arguments) || insn.writesVectorRegisters {
            return "its first instruction (\(insn)) changes an argument register before the entry could be recorded"
        }
        if insn.id == X86_INS_CALL.rawValue || insn.id == X86_INS_SYSCALL.rawValue {
            return "its first instruction is \(insn)"
        }
        return nil
    }

    /// How the instruction moves RSP, or nil when it cannot be known from the instruction alone.
    private func stackEffect(of insn: Instruction) -> Int32? {
        guard insn.registersWritten.contains(.rsp) else { return 0 }
        let id = insn.id
        if id == X86_INS_PUSH.rawValue, !insn.hasOperandSizePrefix { return -8 }
        if id == X86_INS_SUB.rawValue || id == X86_INS_ADD.rawValue,
           case .register(.rsp?, 8)? = insn.operands.first, insn.operands.count == 2,
           case .immediate(let n) = insn.operands[1], let n32 = Int32(exactly: n) {
            return id == X86_INS_SUB.rawValue ? -n32 : n32
        }
        if id == X86_INS_LEA.rawValue, case .register(.rsp?, 8)? = insn.operands.first, insn.operands.count == 2,
           case .memory(let m) = insn.operands[1], m.base == .rsp, m.index == nil, let d = Int32(exactly: m.displacement) {
            return d
        }
        return nil
    }

    // MARK: Exits

    mutating func planExits() {
        for (jump, reason) in leavingJumps {
            fallbacks.append(InlineFallback(address: jump.address, kind: .tailExit, reason: reason))
        }
        for (p, instructions) in parts.enumerated() {
            for (k, insn) in instructions.enumerated() where insn.id == X86_INS_RET.rawValue {
                if covered.contains(insn.address) { continue }
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

    /// The shortest straight-line run ending with the `ret` that spans 5 bytes (or reaches padding).
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
        let run = Array(instructions[j...k])
        if bytes >= 5 { return makeWindow(run, patch: bytes, entry: false, adjust: 0, slot: nil) }
        // The ret ends its part: the padding after it is never executed and can take the jump's tail.
        let part = function.parts[p]
        if k == instructions.count - 1, paddingUsed[p] == 0, isFiller(part.padding), part.padding.count >= 5 - bytes {
            paddingUsed[p] = 5 - bytes
            return makeWindow(run, patch: 5, entry: false, adjust: 0, slot: nil)
        }
        // A short jump from the window into padding, where the long jump fits.
        if bytes >= 2, let slot = paddingSlot(part: p, reachableFrom: run[0].address &+ 2) {
            return makeWindow(run, patch: bytes, entry: false, adjust: 0, slot: slot)
        }
        return nil
    }

    private func exitReason(part p: Int, ret k: Int) -> String {
        let instructions = parts[p]
        if k > 0, entryPoints[instructions[k].address] != nil {
            return "the ret is itself a branch target, with no room for a 5-byte jump before it or padding after it"
        }
        return "less than 5 bytes of straight-line code end with this ret, and no padding within reach"
    }

    /// Five bytes of never-executed padding within a rel8 of `from`, if the part has them.
    private mutating func paddingSlot(part p: Int, reachableFrom from: UInt64) -> UInt64? {
        let part = function.parts[p]
        guard isFiller(part.padding), parts[p].last.map(InlinePlanner.isUnconditionalTransfer) == true else { return nil }
        let offset = paddingUsed[p]
        guard part.padding.count - offset >= 5 else { return nil }
        let slot = part.end &+ UInt64(offset)
        let distance = Int64(bitPattern: slot &- from)
        guard distance >= -128, distance <= 127 else { return nil }
        paddingUsed[p] = offset + 5
        return slot
    }

    /// Alignment padding: nops and int3s, nothing else.
    private func isFiller(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty else { return false }
        return bytes.allSatisfy { [0x90, 0xcc, 0x66, 0x2e, 0x0f, 0x1f, 0x00, 0x40, 0x44, 0x80, 0x84].contains($0) }
    }

    // MARK: Windows

    /// A window from `start` forward, long enough for the jump (5 bytes, or into padding after a final
    /// transfer), holding nothing that could be entered but its first instruction.
    private mutating func window(from start: (Int, Int), recordsEntry: Bool, stackAdjust: Int32) -> InlineWindow? {
        let (p, i) = start
        let instructions = parts[p]
        var run: [Instruction] = []
        var bytes = 0
        var k = i
        while k < instructions.count, bytes < 5 {
            let insn = instructions[k]
            if !run.isEmpty, entryPoints[insn.address] != nil { return nil }
            // A call may end the window: the pad pushes the original return address, the window's end.
            if InlinePlanner.isCall(insn), bytes + insn.length >= 5, !covered.contains(insn.address),
               RefusalTable.reason(for: insn) == nil, WindowRelocator.refusedAsLast(insn) == nil {
                run.append(insn)
                return makeWindow(run, patch: bytes + insn.length, entry: recordsEntry, adjust: stackAdjust, slot: nil)
            }
            guard mayHold(insn), !covered.contains(insn.address) else { return nil }
            if insn.id == X86_INS_JMP.rawValue, !isInternalJump(insn) { return nil }  // a tail call keeps its int3
            run.append(insn)
            bytes += insn.length
            if InlinePlanner.isUnconditionalTransfer(insn) { break }
            k += 1
        }
        if bytes >= 5 {
            if let last = run.last, !InlinePlanner.isUnconditionalTransfer(last) {
                run += straightLineToReturn(part: p, from: k)
            }
            return makeWindow(run, patch: bytes, entry: recordsEntry, adjust: stackAdjust, slot: nil)
        }
        guard let last = run.last, InlinePlanner.isUnconditionalTransfer(last), k == instructions.count - 1,
              paddingUsed[p] == 0, isFiller(function.parts[p].padding), function.parts[p].padding.count >= 5 - bytes
        else { return nil }
        paddingUsed[p] = 5 - bytes
        return makeWindow(run, patch: 5, entry: recordsEntry, adjust: stackAdjust, slot: nil)
    }

    /// The instructions from `k` up to and including a `ret` a few instructions on, when nothing else
    /// can enter them: an entry window that takes them in records the return too, where the `ret`
    /// alone would have no room for its own window. Empty when there is no such `ret`.
    private func straightLineToReturn(part p: Int, from k: Int) -> [Instruction] {
        let instructions = parts[p]
        var tail: [Instruction] = []
        var i = k
        while i < instructions.count, tail.count < 8 {
            let insn = instructions[i]
            guard entryPoints[insn.address] == nil, mayHold(insn), !covered.contains(insn.address) else { return [] }
            tail.append(insn)
            if insn.id == X86_INS_RET.rawValue { return tail }
            if InlinePlanner.isUnconditionalTransfer(insn) { return [] }
            i += 1
        }
        return []
    }

    private func isInternalJump(_ insn: Instruction) -> Bool {
        guard case .immediate(let raw)? = insn.operands.first else { return false }
        return function.contains(UInt64(bitPattern: raw))
    }

    /// What a window may hold: anything the relocator can move, but a call or a system call.
    private func mayHold(_ insn: Instruction) -> Bool {
        RefusalTable.reason(for: insn) == nil && WindowRelocator.refusedInWindow(insn) == nil
            && insn.id != X86_INS_UD2.rawValue && insn.id != X86_INS_HLT.rawValue
    }

    private func makeWindow(_ run: [Instruction], patch: Int, entry: Bool, adjust: Int32, slot: UInt64?) -> InlineWindow {
        let last = run[run.count - 1]
        return InlineWindow(start: run[0].address, instructions: run, patchLength: patch, recordsEntry: entry,
                            entryStackAdjust: adjust, recordsReturn: last.id == X86_INS_RET.rawValue, shortJumpSlot: slot)
    }

    private mutating func add(_ window: InlineWindow) {
        windows.append(window)
        for insn in window.instructions { covered.insert(insn.address) }
    }

    private func locate(_ address: UInt64) -> (Int, Int)? {
        for (p, instructions) in parts.enumerated() {
            if let i = instructions.firstIndex(where: { $0.address == address }) { return (p, i) }
        }
        return nil
    }
}

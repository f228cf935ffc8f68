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

    /// A run of instructions made a window if it can be: 5 bytes or more as it is; or ending in a
    /// transfer with the padding right after it taking the jump's tail; or, 2 bytes or more, a short
    /// jump to padding within reach that holds the long one (E9Patch's and Dyninst's answer to short
    /// code).
    private mutating func finishWindow(_ run: [Instruction], bytes: Int, entry: Bool, adjust: Int32) -> InlineWindow? {
        guard let last = run.last else { return nil }
        if bytes >= 5 { return makeWindow(run, patch: bytes, entry: entry, adjust: adjust, slot: nil) }
        if InlinePlanner.isUnconditionalTransfer(last), extendIntoHole(after: last, needing: 5 - bytes) {
            return makeWindow(run, patch: 5, entry: entry, adjust: adjust, slot: nil)
        }
        if bytes >= 2, let slot = holeSlot(reachableFrom: run[0].address &+ 2) {
            return makeWindow(run, patch: bytes, entry: entry, adjust: adjust, slot: slot)
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

    /// Never-executed bytes: alignment padding after a part that ends in an unconditional transfer, and
    /// nops (or int3s) after a transfer inside a part up to the next instruction something enters.
    /// Windows take the start of a hole (the tail of a jump that runs on into it) and short jumps'
    /// slots come from its end.
    struct Hole {
        let start: UInt64
        let length: Int
        var front = 0
        var back = 0
    }

    private mutating func findHoles() {
        for (p, instructions) in parts.enumerated() {
            var i = 0
            while i < instructions.count {
                guard InlinePlanner.isUnconditionalTransfer(instructions[i]) else { i += 1; continue }
                var j = i + 1, length = 0
                while j < instructions.count, isFillerInstruction(instructions[j]), entryPoints[instructions[j].address] == nil {
                    length += instructions[j].length
                    j += 1
                }
                if length > 0 { holes.append(Hole(start: instructions[i].next, length: length)) }
                i = j
            }
            let part = function.parts[p]
            guard isFiller(part.padding), let last = instructions.last else { continue }
            if let h = holes.indices.last, holes[h].start &+ UInt64(holes[h].length) == part.end {
                holes[h] = Hole(start: holes[h].start, length: holes[h].length + part.padding.count)
            } else if InlinePlanner.isUnconditionalTransfer(last) {
                holes.append(Hole(start: part.end, length: part.padding.count))
            }
        }
    }

    private func isFillerInstruction(_ insn: Instruction) -> Bool {
        insn.id == X86_INS_NOP.rawValue || insn.id == X86_INS_INT3.rawValue
    }

    /// The hole right after `last`, if `n` bytes of it are free for a window's jump to run on into.
    private mutating func extendIntoHole(after last: Instruction, needing n: Int) -> Bool {
        guard let h = holes.firstIndex(where: { $0.start == last.next }), holes[h].front == 0,
              holes[h].length - holes[h].back >= n
        else { return false }
        holes[h].front = n
        return true
    }

    /// Five free bytes of a hole within a rel8 of `from`.
    private mutating func holeSlot(reachableFrom from: UInt64) -> UInt64? {
        for h in holes.indices where holes[h].length - holes[h].front - holes[h].back >= 5 {
            let slot = holes[h].start &+ UInt64(holes[h].length - holes[h].back - 5)
            let distance = Int64(bitPattern: slot &- from)
            guard distance >= -128, distance <= 127 else { continue }
            holes[h].back += 5
            return slot
        }
        return nil
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
        // Up to 5 bytes, or to the first thing a window may not hold (it then ends before it: the pad
        // jumps back there).
        while k < instructions.count, bytes < 5 {
            let insn = instructions[k]
            if !run.isEmpty, entryPoints[insn.address] != nil { break }
            if covered.contains(insn.address) { break }
            // A call may end the window: the pad pushes the original return address, the window's end.
            if InlinePlanner.isCall(insn), bytes + insn.length >= 5, RefusalTable.reason(for: insn) == nil,
               WindowRelocator.refusedAsLast(insn) == nil {
                run.append(insn)
                return makeWindow(run, patch: bytes + insn.length, entry: recordsEntry, adjust: stackAdjust, slot: nil)
            }
            guard mayHold(insn) else { break }
            // A jump out of the function may end the window only as a known tail call.
            if insn.id == X86_INS_JMP.rawValue, !isInternalJump(insn), tailCallTarget(insn) == nil { break }
            run.append(insn)
            bytes += insn.length
            if InlinePlanner.isUnconditionalTransfer(insn) { break }
            k += 1
        }
        if bytes >= 5, let last = run.last, !InlinePlanner.isUnconditionalTransfer(last) {
            run += straightLineToReturn(part: p, from: k)
        }
        return finishWindow(run, bytes: bytes, entry: recordsEntry, adjust: stackAdjust)
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
                            entryStackAdjust: adjust, recordsReturn: last.id == X86_INS_RET.rawValue,
                            tailCallTarget: tailCallTarget(last), shortJumpSlot: slot)
    }

    /// Where a direct jump out of the function goes (a tail call), or nil.
    private func tailCallTarget(_ insn: Instruction) -> UInt64? {
        guard insn.id == X86_INS_JMP.rawValue, case .immediate(let raw)? = insn.operands.first else { return nil }
        let target = UInt64(bitPattern: raw)
        return function.contains(target) ? nil : target
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

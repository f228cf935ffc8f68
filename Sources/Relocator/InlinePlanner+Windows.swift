import CCapstone

extension InlineAnalysis {
    /// A run of instructions made a window if it can be: 5 bytes or more as it is; or ending in a
    /// transfer with the padding right after it taking the jump's tail; or, 2 bytes or more, a short
    /// jump to padding within reach that holds the long one (E9Patch's and Dyninst's answer to short
    /// code).
    mutating func finishWindow(_ run: [Instruction], bytes: Int, entry: Bool, adjust: Int32) -> InlineWindow? {
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

    mutating func findHoles() {
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

    func isFillerInstruction(_ insn: Instruction) -> Bool {
        insn.id == X86_INS_NOP.rawValue || insn.id == X86_INS_INT3.rawValue
    }

    /// The hole right after `last`, if `n` bytes of it are free for a window's jump to run on into.
    mutating func extendIntoHole(after last: Instruction, needing n: Int) -> Bool {
        guard let h = holes.firstIndex(where: { $0.start == last.next }), holes[h].front == 0,
              holes[h].length - holes[h].back >= n
        else { return false }
        holes[h].front = n
        return true
    }

    /// Five free bytes of a hole within a rel8 of `from`.
    mutating func holeSlot(reachableFrom from: UInt64) -> UInt64? {
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
    func isFiller(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty else { return false }
        return bytes.allSatisfy { [0x90, 0xcc, 0x66, 0x2e, 0x0f, 0x1f, 0x00, 0x40, 0x44, 0x80, 0x84].contains($0) }
    }

    // MARK: Windows

    /// A window from `start` forward, long enough for the jump (5 bytes, or into padding after a final
    /// transfer), holding nothing that could be entered but its first instruction.
    mutating func window(from start: (Int, Int), recordsEntry: Bool, stackAdjust: Int32) -> InlineWindow? {
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
    func straightLineToReturn(part p: Int, from k: Int) -> [Instruction] {
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

    func isInternalJump(_ insn: Instruction) -> Bool {
        guard case .immediate(let raw)? = insn.operands.first else { return false }
        return function.contains(UInt64(bitPattern: raw))
    }

    /// What a window may hold: anything the relocator can move, but a call or a system call.
    func mayHold(_ insn: Instruction) -> Bool {
        RefusalTable.reason(for: insn) == nil && WindowRelocator.refusedInWindow(insn) == nil
            && insn.id != X86_INS_UD2.rawValue && insn.id != X86_INS_HLT.rawValue
    }

    func makeWindow(_ run: [Instruction], patch: Int, entry: Bool, adjust: Int32, slot: UInt64?) -> InlineWindow {
        let last = run[run.count - 1]
        return InlineWindow(start: run[0].address, instructions: run, patchLength: patch, recordsEntry: entry,
                            entryStackAdjust: adjust, recordsReturn: last.id == X86_INS_RET.rawValue,
                            tailCallTarget: tailCallTarget(last), shortJumpSlot: slot)
    }

    /// Where a direct jump out of the function goes (a tail call), or nil.
    func tailCallTarget(_ insn: Instruction) -> UInt64? {
        guard insn.id == X86_INS_JMP.rawValue, case .immediate(let raw)? = insn.operands.first else { return nil }
        let target = UInt64(bitPattern: raw)
        return function.contains(target) ? nil : target
    }

    mutating func add(_ window: InlineWindow) {
        windows.append(window)
        for insn in window.instructions { covered.insert(insn.address) }
    }

    func locate(_ address: UInt64) -> (Int, Int)? {
        for (p, instructions) in parts.enumerated() {
            if let i = instructions.firstIndex(where: { $0.address == address }) { return (p, i) }
        }
        return nil
    }
}

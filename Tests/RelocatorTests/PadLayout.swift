@testable import Relocator

/// Where things are in a pad: each window instruction's relocated copy and each probe. `InlinePad`
/// keeps only the bytes, so this writes the pad again with the writers `InlinePad.build` uses, in its
/// order, noting each address on the way; it exists only when the bytes come out the same as the
/// pad's, so it cannot drift from the real layout unseen. The oracle uses it to say which instruction
/// a fault in the pad belongs to.
struct PadLayout {
    /// The relocated copy of each window instruction, in order.
    let copies: [Range<UInt64>]
    /// The entry probe's code, when the pad records the entry.
    let entryProbe: Range<UInt64>?
    /// The code of the probe before the last instruction (a ret, or a tail call's jump), if any.
    let returnProbe: Range<UInt64>?

    init?(_ pad: InlinePad, window: InlineWindow, entryProbe: Probe?, returnProbe: Probe?, environment: PadEnvironment) {
        var w = X86Writer(base: pad.address)
        w.putBytes(withUnsafeBytes(of: environment.ringAddress.littleEndian) { Array($0) })
        let probes = ProbeWriter(environment: environment, literal: pad.address)
        var slowPaths: [ProbeWriter.SlowPath] = []
        var entryRange: Range<UInt64>?, returnRange: Range<UInt64>?
        if window.recordsEntry, let entryProbe {
            let start = w.pc
            slowPaths.append(probes.emit(entryProbe, stackAdjust: window.entryStackAdjust, into: &w))
            entryRange = start..<w.pc
        }
        var copies: [Range<UInt64>] = []
        for (i, insn) in window.instructions.enumerated() {
            let isLast = i == window.instructions.count - 1
            if isLast, window.probesBeforeLast, let returnProbe {
                let start = w.pc
                slowPaths.append(probes.emit(returnProbe, stackAdjust: 0, into: &w))
                returnRange = start..<w.pc
            }
            let start = w.pc
            guard WindowRelocator.relocate(insn, isLast: isLast, into: &w) == nil else { return nil }
            copies.append(start..<w.pc)
        }
        if !window.endsInTransfer { w.putJmpAddress(window.end) }
        for path in slowPaths { probes.emitSlowPath(path, into: &w) }
        guard let code = w.finish(), sameBytes(code, pad.code) else { return nil }
        self.copies = copies
        self.entryProbe = entryRange
        self.returnProbe = returnRange
    }

    /// The window instruction whose relocated copy holds `pc`.
    func instruction(at pc: UInt64) -> Int? {
        copies.firstIndex { $0.contains(pc) }
    }
}

extension InlineWindow {
    /// A probe runs before the last instruction: the return's before a `ret`, or the tail call's
    /// before its jump out of the function (InlinePad.build).
    var probesBeforeLast: Bool { recordsReturn || tailCallTarget != nil }
}

/// The code a window jumps to: probes that record the call or the return into the ring, the window's
/// instructions relocated, and the way back. Laid out as
///
/// ```
/// pad:      the ring's address (8 bytes)
/// pad + 8:  [entry probe]  relocated instructions  [return probe  ret] | jmp window end
///           slow paths (a full bucket), out of line
/// ```
public struct InlinePad: Sendable, WindowTarget {
    public let address: UInt64
    public let code: [UInt8]

    /// Where the window's jump goes.
    public var entry: UInt64 { address &+ 8 }

    /// The pad for `window` at `address` (8-byte aligned, within ±2 GiB of the window).
    public static func build(window: InlineWindow, entryProbe: Probe?, returnProbe: Probe?,
                             environment: PadEnvironment, at address: UInt64) -> Result<InlinePad, Refusal> {
        var w = X86Writer(base: address)
        w.putBytes(withUnsafeBytes(of: environment.ringAddress.littleEndian) { Array($0) })
        let probes = ProbeWriter(environment: environment, literal: address)
        var slowPaths: [ProbeWriter.SlowPath] = []
        if window.recordsEntry, let entryProbe {
            slowPaths.append(probes.emit(entryProbe, stackAdjust: window.entryStackAdjust, into: &w))
        }
        for (i, insn) in window.instructions.enumerated() {
            // The return probe: before the ret, or before the jump of a tail call.
            if i == window.instructions.count - 1, window.recordsReturn || window.tailCallTarget != nil, let returnProbe {
                slowPaths.append(probes.emit(returnProbe, stackAdjust: 0, into: &w))
            }
            let isLast = i == window.instructions.count - 1
            if let refusal = WindowRelocator.relocate(insn, isLast: isLast, into: &w) { return .failure(refusal) }
        }
        if !window.endsInTransfer { w.putJmpAddress(window.end) }
        for path in slowPaths { probes.emitSlowPath(path, into: &w) }
        guard let code = w.finish() else { return .failure(Refusal(reason: "internal: a pad label was never bound")) }
        return .success(InlinePad(address: address, code: code))
    }
}

import Relocator

/// libFuzzer's entry: the Relocator's decode-and-plan on arbitrary bytes at arbitrary addresses. Every
/// public entry point that takes code runs on them: the per-instruction plans of both strategies, the
/// window relocator, the linear sweep, jump-table analysis and the inline planner, and the pads built
/// for the windows it finds. Any Swift trap is a finding.
///
/// Input: address (8 bytes, little-endian), a second address (8: step slot, trampoline, pad, cold
/// part), a flags byte, a size byte, then the code. Short inputs are padded with zeros.
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    RelocatorFuzz.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// SwiftPM links an executable's entry point as `fuzz_relocator_main` (so tests can import it); a harness
/// has none of its own, so that entry runs libFuzzer's driver on the function above.
@_cdecl("fuzz_relocator_main")
public func fuzzRelocatorMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc, argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        guard let data else { return LLVMFuzzerTestOneInput(UnsafePointer(bitPattern: 1)!, 0) }
        return LLVMFuzzerTestOneInput(data, size)
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

enum RelocatorFuzz {
    nonisolated(unsafe) static let decoder = try! Decoder()

    static let entryProbe = Probe(id: 1, kind: .entry, captures: [
        .register(.rdi), .register(.rsi), .xmm(0), .memory(MemoryCapture(base: .stackPointer, offset: 8, maxBytes: 16)),
        .memory(MemoryCapture(base: .register(.rdi), maxBytes: 32)),
    ])
    static let exitProbe = Probe(id: 2, kind: .exit, captures: [.register(.rax), .xmm(0)], gate: .countsTailCall)

    static func word(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 where at + i < bytes.count { value |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        return value
    }

    static func run(_ input: [UInt8]) {
        let address = word(input, 0)
        let other = word(input, 8)
        let flags: UInt8 = input.count > 16 ? input[16] : 0
        let sizeByte: UInt8 = input.count > 17 ? input[17] : 0
        let code = input.count > 18 ? Array(input[18...]) : []
        let decoder = Self.decoder

        // Every instruction of the linear sweep, every plan.
        let instructions = decoder.decodeAll(code, at: address)
        for insn in instructions {
            _ = Relocator.emulation(for: insn)
            _ = Relocator.stepPlan(insn, slot: other)
            _ = Relocator.trampolinePlan(insn, at: other)
            _ = Relocator.allPlans(insn, near: insn.address &+ 0x1000, far: other)
            var writer = X86Writer(base: other)
            _ = WindowRelocator.relocate(insn, isLast: flags & 1 != 0, into: &writer)
            _ = writer.finish()
            _ = insn.ripRelativeTarget
            _ = insn.description
        }
        _ = Relocator.jump(from: address, to: other)

        // The linear sweep, with the whole function's size given or not.
        let declaredSize: UInt64? = flags & 2 != 0 ? UInt64(sizeByte) << (flags >> 4) : nil
        _ = FunctionAnalysis(bytes: code, at: address, size: declaredSize, decoder: decoder)

        // The inline planner over one or two parts (a `.cold` part at the second address), with the
        // part's trailing bytes as its padding and a few landing pads taken from the input.
        var parts: [CodePart] = []
        let padding = min(code.count, Int(sizeByte & 0x1f))
        let body = Array(code[..<(code.count - padding)])
        if flags & 4 != 0, body.count > 1 {
            let split = 1 + Int(sizeByte) % (body.count - 1)
            parts = [CodePart(start: address, bytes: Array(body[..<split]), padding: []),
                     CodePart(start: other, bytes: Array(body[split...]), padding: Array(code[(code.count - padding)...]))]
        } else {
            parts = [CodePart(start: address, bytes: body, padding: Array(code[(code.count - padding)...]))]
        }
        var landingPads = Set<UInt64>()
        if flags & 8 != 0 {
            for k in stride(from: 0, to: min(code.count, 24), by: 8) { landingPads.insert(address &+ UInt64(code[k])) }
        }
        let entry = flags & 0x20 != 0 && !instructions.isEmpty ? instructions[Int(sizeByte) % instructions.count].address : address
        let function = InlinePlanner.Function(
            start: address, entry: entry, parts: parts, extraEntryPoints: landingPads,
            extraEntryPointsIncomplete: flags & 0x40 != 0 ? "fuzz" : nil, mayCoverStart: flags & 0x80 != 0,
            tracesEntry: flags & 0x10 == 0,
            argumentRegisters: flags & 1 != 0 ? [] : [.rdi, .rsi, .rdx, .rcx, .r8, .r9], vectorArguments: flags & 1 == 0)
        let bias = flags & 2 != 0 ? other : 0
        let plan = InlinePlanner(decoder: decoder).plan(function) { instructions, ranges in
            JumpTables.classify(instructions: instructions, ranges: ranges, bias: bias) { at, count in
                // The "file" is the input itself, at both addresses.
                for (base, bytes) in [(address, code), (other, code)] {
                    let offset = at &- base
                    guard offset < UInt64(bytes.count) else { continue }
                    let start = Int(offset)
                    return Array(bytes[start..<min(bytes.count, start + max(0, min(count, bytes.count)))])
                }
                return nil
            }
        }
        _ = plan.isFullyInline
        _ = plan.tailCallTargets
        _ = plan.withoutTailCallWindows(entry: address, because: "fuzz")

        // The pads for every window the planner found: inline (with probes) and the jump strategy's.
        let environment = PadEnvironment(
            ringAddress: other ^ 0x5a5a_0000, geometry: RingGeometry(bucketCount: 64, slotsPerBucket: 1024, maxSlotsPerRecord: 8),
            threadIdentity: flags & 1 != 0 ? .tcb(offset: 0x2d0) : .syscall, bucketKey: .thread)
        for window in plan.windows {
            _ = window.interiorBoundaries
            let padAddress = (window.start &+ 0x10_0000) & ~7
            if case .success(let pad) = InlinePad.build(window: window, entryProbe: entryProbe, returnProbe: exitProbe,
                                                        environment: environment, at: padAddress) {
                _ = pad.patches(for: window)
            }
            if case .success(let pad) = TrapPad.build(window: window, at: other & ~7) {
                _ = pad.patches(for: window)
            }
        }
    }
}

@testable import Relocator
import Testing

/// Code bytes and their addresses come from files and processes nstrace does not control: planning
/// them must end in a plan or a refusal, never a trap (each case here trapped before, found by the
/// Relocator fuzzer, Fuzz/Relocator).
@Suite struct UntrustedCodeTests {
    let decoder = try! Decoder()

    func plan(_ bytes: [UInt8], at start: UInt64) -> InlinePlan {
        let function = InlinePlanner.Function(start: start, entry: start,
                                              parts: [CodePart(start: start, bytes: bytes, padding: [])])
        return InlinePlanner(decoder: decoder).plan(function) { instructions, ranges in
            JumpTables.classify(instructions: instructions, ranges: ranges) { _, _ in nil }
        }
    }

    /// A part whose bytes would run past the top of the address space made a range whose upper bound
    /// was below its lower one (`start..<end` with `end` wrapped).
    @Test func codeRunningPastTheTopOfTheAddressSpaceIsNotAnalysed() {
        let bytes: [UInt8] = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x90, 0x90, 0x90, 0x90]
        let start: UInt64 = 0xffff_ffff_ffff_fff8
        #expect(CodePart(start: start, bytes: bytes, padding: []).end == .max)
        let result = plan(bytes, at: start)
        #expect(!result.returnsSeenAtExits)
        #expect(result.windows.isEmpty)
        #expect(result.fallbacks.map(\.kind) == [.entry])
    }

    /// `sub rsp, imm32` with the largest immediates: negating -2^31 trapped in the planner, and an
    /// entry window after `sub rsp, 0x7fffffff` overflowed the probe's displacement in the pad.
    @Test(arguments: [
        [0x48, 0x81, 0xec, 0x00, 0x00, 0x00, 0x80],  // sub rsp, -0x80000000
        [0x48, 0x81, 0xec, 0xff, 0xff, 0xff, 0x7f],  // sub rsp, 0x7fffffff
        [0x48, 0x81, 0xc4, 0x00, 0x00, 0x00, 0x80],  // add rsp, -0x80000000
        [0x48, 0x8d, 0xa4, 0x24, 0x00, 0x00, 0x00, 0x80],  // lea rsp, [rsp - 0x80000000]
    ] as [[UInt8]])
    func aFirstInstructionMovingTheStackByGibibytesGetsNoEntryWindow(first: [UInt8]) {
        // Then `mov rax, rdi` twice and `ret`: room for an entry window, were the stack move known.
        let body = first + [0x48, 0x89, 0xf8, 0x48, 0x89, 0xf8, 0xc3]
        let result = plan(body, at: 0x40_1000)
        #expect(!result.windows.contains { $0.recordsEntry })
        #expect(result.fallbacks.contains {
            $0.kind == .entry && $0.reason.contains("moves the stack pointer by an unknown amount")
        })
    }
}

import Relocator
import Testing

/// What `--follow-calls` reads from a function's bytes: its calls and the jumps that leave it, and the
/// GOT slot a PLT entry jumps through.
@Suite struct OutgoingCalls {
    @Test func callsAndJumpsOutAreFoundAndJumpsInsideAreNot() throws {
        let decoder = try Decoder()
        let start: UInt64 = 0x1000
        let bytes: [UInt8] = [
            0xe8, 0xfb, 0x0f, 0x00, 0x00,              // 1000 call 0x2000
            0xff, 0xd0,                                // 1005 call rax
            0xff, 0x15, 0x10, 0x00, 0x00, 0x00,        // 1007 call [rip+0x10] → slot 0x101d
            0x41, 0xff, 0x54, 0x24, 0x08,              // 100d call [r12+8]
            0xeb, 0x00,                                // 1012 jmp 0x1014 (inside)
            0xff, 0xe0,                                // 1014 jmp rax (a jump table's: inside)
            0xe9, 0xe5, 0x1f, 0x00, 0x00,              // 1016 jmp 0x3000 (a tail call)
            0xc3,                                      // 101b ret
        ]
        let calls = FunctionAnalysis(bytes: bytes, at: start, decoder: decoder).outgoingCalls
        #expect(calls.map(\.address) == [0x1000, 0x1005, 0x1007, 0x100d, 0x1016])
        #expect(calls.map(\.staticTarget) == [.address(0x2000), nil, .slot(0x101d), nil, .address(0x3000)])
        #expect(calls.map(\.isJump) == [false, false, false, false, true])
    }

    @Test func aPLTEntryNamesItsSlot() throws {
        let decoder = try Decoder()
        // .plt.sec: endbr64; bnd jmp [rip+0x2fe2]
        let sec: [UInt8] = [0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xe2, 0x2f, 0x00, 0x00, 0x0f, 0x1f, 0x44, 0x00, 0x00]
        #expect(PLTEntry.slot(sec, at: 0x1030, decoder: decoder) == 0x1030 + 11 + 0x2fe2)
        // .plt: jmp [rip+0x2fe2]; push 0; jmp .plt0
        let lazy: [UInt8] = [0xff, 0x25, 0xe2, 0x2f, 0x00, 0x00, 0x68, 0x00, 0x00, 0x00, 0x00, 0xe9, 0xe0, 0xff, 0xff, 0xff]
        #expect(PLTEntry.slot(lazy, at: 0x1030, decoder: decoder) == 0x1030 + 6 + 0x2fe2)
        // A function's code is not a PLT entry.
        #expect(PLTEntry.slot([0x55, 0x48, 0x89, 0xe5, 0xc3], at: 0x1030, decoder: decoder) == nil)
    }
}

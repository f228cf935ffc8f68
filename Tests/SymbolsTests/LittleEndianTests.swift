import Symbols
import Testing

/// The one little-endian decoder that GOT slots, DWARF tables, Go's g and the scratch header are read with.
@Suite struct LittleEndianWords {
    @Test func leastSignificantByteComesFirstAndNarrowFieldsStayNarrow() {
        #expect(littleEndianWord([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11] as [UInt8]) == 0x1122_3344_5566_7788)
        #expect(littleEndianWord([0xfe, 0xff, 0xff, 0xff] as [UInt8]) == 0xffff_fffe, "a 4-byte field is not sign-extended")
        #expect(littleEndianWord([UInt8]()) == 0)
        let slice: ArraySlice<UInt8> = [0, 0, 0x34, 0x12][2...]
        #expect(littleEndianWord(slice) == 0x1234, "a slice is read from its own start")
    }

    @Test func bytesPastTheEighthAreNotRead() {
        #expect(littleEndianWord([1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] as [UInt8]) == 1)
    }
}

import Foundation
import Relocator
import Symbols
import Testing
import TestSupport

/// The landing pads the Symbols module reads from LSDAs, checked against the Relocator's decoder:
/// each starts an instruction of the code its FDE covers, as a place the unwinder jumps to must.
/// The FDE's range, not a symbol's, because a stripped library (libstdc++) names few of its
/// functions and none of its `.cold` parts.
@Suite struct LandingPadsAreInstructionBoundaries {
    @Test(arguments: ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"])
    func everyPadStartsAnInstructionOfItsFDEsCode(path: String) throws {
        let image = try ProcessImage(file: path)
        let module = try #require(image.modules.first)
        let table = image.landingPadTable(in: module)
        let decoder = try Decoder()
        var starts: [UInt64: Set<UInt64>] = [:]
        var outsideFDEs: [UInt64] = [], midInstruction: [UInt64] = []
        for pad in table.pads {
            guard let range = table.rangesWithLSDA.first(where: { $0.contains(pad) }) else {
                outsideFDEs.append(pad)
                continue
            }
            if starts[range.lowerBound] == nil {
                let bytes = image.fileBytes(at: range.lowerBound, count: Int(range.count)) ?? []
                starts[range.lowerBound] = Set(decoder.decodeAll(bytes, at: range.lowerBound).map(\.address))
            }
            if starts[range.lowerBound]?.contains(pad) != true { midInstruction.append(pad) }
        }
        print("\(module.name): \(table.pads.count) landing pads in the code of \(starts.count) FDEs")
        #expect(table.pads.count > 0)
        #expect(outsideFDEs.isEmpty, "pads in no FDE's code: \(outsideFDEs.prefix(5).map { String($0, radix: 16) })")
        #expect(midInstruction.isEmpty, "pads inside an instruction: \(midInstruction.prefix(5).map { String($0, radix: 16) })")
    }
}

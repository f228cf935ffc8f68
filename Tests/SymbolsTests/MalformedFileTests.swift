import Foundation
@testable import Symbols
import Testing
import TestSupport

/// Files whose symbols or DWARF trapped nstrace's Swift code, and the seeds they came from (the
/// Symbols fuzzer's corpus, Fuzz/Corpus/symbols; Fuzz/Seeds/findings.py says how each was made).
/// Whatever libelf and libdw return of a malformed file, reading it ends in values, never a trap.
@Suite struct MalformedFileTests {
    static let corpus = Paths.packageRoot.appendingPathComponent("Fuzz/Corpus/symbols")

    func image(_ name: String) throws -> ProcessImage {
        try ProcessImage(file: Self.corpus.appendingPathComponent(name).path, debuginfoPath: "/nonexistent")
    }

    /// `dispatch` claims 0x100 bytes at 0xffff_ffff_ffff_fff0, `sum` 0xffff_ffff_ffff_fff0 bytes:
    /// both run past the top of the address space.
    @Test func aSymbolRunningPastTheTopOfTheAddressSpaceIsReadWithoutATrap() throws {
        let image = try image("finding-symbol-at-top")
        let functions = try #require(image.modules.first.map(image.functions(in:)))
        let dispatch = try #require(functions.first { $0.name == "dispatch" })
        #expect(dispatch.end == .max)
        #expect(image.landingPads(of: dispatch) == [])
        let sum = try #require(functions.first { $0.name == "sum" })
        #expect(sum.end == .max)
        // Every address of the module past `sum` is in it, as its symbol says.
        #expect(image.function(containing: sum.address + 1)?.name == "sum")
        // The file holds the bytes from `sum` to the end of .text, not 2^64 of them.
        let bytes = try #require(image.fileBytes(of: sum))
        #expect(bytes.count > 0 && bytes.count < 4096)
        #expect(image.signature(of: sum)?.isVariadic == true)
    }

    /// `struct with_holey { int x; struct holey h; }` with `h` (a struct with no members, which
    /// DWARF gives no children) at offset 128 of its 8 bytes: the classifier must call it MEMORY.
    @Test func aMemberPastTheEndOfItsStructPassesTheStructInMemory() throws {
        let image = try image("finding-member-past-end")
        let functions = try #require(image.modules.first.map(image.functions(in:)))
        let takeHoley = try #require(functions.first { $0.name == "take_holey" })
        let signature = try #require(image.signature(of: takeHoley))
        #expect(signature.parameters.map(\.type.name) == ["struct with_holey"])
        #expect(signature.parameters.map(\.location) == [.stack(offset: 8)])
    }

    /// Every file of the corpus, malformed or not, through everything Symbols reads of it.
    @Test func everyFileOfTheFuzzCorpusIsReadWithoutATrap() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        #expect(names.count >= 7)
        for name in names {
            let image = try image(name)
            for module in image.modules {
                _ = image.goRuntime(in: module)
                let table = image.landingPadTable(in: module)
                for range in table.functionRanges { _ = image.unnamedFunction(at: range.lowerBound) }
                for function in image.functions(in: module) {
                    _ = image.function(containing: function.address &+ function.size)
                    _ = image.landingPads(of: function)
                    _ = image.signature(of: function)
                    _ = image.fileBytes(of: function)
                }
            }
        }
    }
}

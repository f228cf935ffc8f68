import Foundation
import Testing
import TestSupport

/// `nstrace list` of a C++ program: each function by its demangled name and its symbol.
@Suite struct DemangledList {
    func binary() throws -> String {
        try Fixtures.buildCxx("cxx_names", flags: ["-O1", "-g"], variant: "list")
    }

    @Test func textShowsTheDemangledNameThenTheSymbol() throws {
        let result = try nstrace(["list", try binary(), "^shop::total$"])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdoutLines
        #expect(lines.count == 2, "\(result)")
        let int = try #require(lines.first { $0.contains("  shop::total(int)") })
        #expect(int.contains("(symbol: _ZN4shop5totalEi)"), "\(int)")
        let double = try #require(lines.first { $0.contains("  shop::total(double)") })
        #expect(double.contains("(symbol: _ZN4shop5totalEd)"), "\(double)")
    }

    @Test func noDemangleShowsTheSymbolThenTheDemangledName() throws {
        let result = try nstrace(["list", "--no-demangle", try binary(), "^shop::check$"])
        #expect(result.status == 0, "\(result)")
        let line = try #require(result.stdoutLines.first)
        #expect(result.stdoutLines.count == 1)
        #expect(line.contains("  _ZN4shop5checkERKNS_5OrderE"), "\(line)")
        #expect(line.contains("(demangled: shop::check(shop::Order const&))"), "\(line)")
    }

    @Test func jsonCarriesFunctionAndSymbolAndLeavesCNamesAlone() throws {
        let result = try nstrace(["list", "--json", try binary(), "^(shop::check|main)$"])
        #expect(result.status == 0, "\(result)")
        let objects = try jsonLines(result.stdout)
        let byName = Dictionary(uniqueKeysWithValues: objects.map { ($0["function"] as? String ?? "?", $0) })
        #expect(Set(byName.keys) == ["shop::check(shop::Order const&)", "main"])
        #expect(byName["shop::check(shop::Order const&)"]?["symbol"] as? String == "_ZN4shop5checkERKNS_5OrderE")
        #expect(byName["main"]?["symbol"] == nil, "a C name has no separate symbol")

        let raw = try jsonLines(try nstrace(["list", "--json", "--no-demangle", try binary(), "^shop::check$"]).stdout)
        #expect(raw.map { $0["function"] as? String } == ["_ZN4shop5checkERKNS_5OrderE"])
        #expect(raw.map { $0["demangled"] as? String } == ["shop::check(shop::Order const&)"])
    }
}

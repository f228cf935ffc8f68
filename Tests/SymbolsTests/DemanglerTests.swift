import Foundation
@testable import Symbols
import Testing
import TestSupport

/// Symbols as c++filt, rustfilt and `swift demangle` print them (checked by hand against those tools),
/// and hostile ones that must come back as they are, quickly.
@Suite struct DemangledSymbols {
    @Test func cxxNamesKeepTheirParametersAndHaveAQualifiedName() {
        #expect(Demangler.demangle("_ZN4shop5checkERKNS_5OrderE") == "shop::check(shop::Order const&)")
        #expect(Demangler.qualifiedName("_ZN4shop5checkERKNS_5OrderE") == "shop::check")
        #expect(Demangler.demangle("_ZN4shop7largestIiEET_PKS1_i") == "int shop::largest<int>(int const*, int)")
        #expect(Demangler.qualifiedName("_ZN4shop7largestIiEET_PKS1_i") == "shop::largest<int>")
        // A compiler-made clone keeps the function's name and says what it is.
        #expect(Demangler.demangle("_ZN4shop5checkERKNS_5OrderE.cold") == "shop::check(shop::Order const&) [clone .cold]")
    }

    @Test func rustLegacyAndV0NamesDropHashAndDisambiguators() {
        #expect(Demangler.demangle("_ZN10rust_names4shop5check17hc5d8b97e90643874E") == "rust_names::shop::check")
        #expect(Demangler.demangle("_ZN10rust_names4shop5Order6weight17h8ce63a3304f1466cE") == "rust_names::shop::Order::weight")
        // LLVM's suffix on a symbol it made local: still Rust's, not read as C++.
        #expect(Demangler.demangle("_ZN10rust_names4shop5check17hc5d8b97e90643874E.llvm.12345") == "rust_names::shop::check")
        #expect(Demangler.demangle("_RNvNtCs6GmmlP4bgsG_1r4shop5check") == "r::shop::check")
        #expect(Demangler.qualifiedName("_RNvNtCs6GmmlP4bgsG_1r4shop5check") == nil, "only C++ has a parameter list to drop")
        #expect(Demangler.qualifiedName("_ZN10rust_names4shop5check17hc5d8b97e90643874E") == nil)
    }

    @Test func swiftNamesThroughTheSwiftRuntime() {
        #expect(Demangler.demangle("$s7fixture5check5orderSiAA5OrderV_tF") == "fixture.check(order: fixture.Order) -> Swift.Int")
        #expect(Demangler.demangle("_$s7fixture5check5orderSiAA5OrderV_tF") == "fixture.check(order: fixture.Order) -> Swift.Int")
    }

    @Test func cNamesHaveNoDemangledName() {
        for name in ["main", "read", "__libc_start_main", "_start", "_Z", "_R", "$s", "T0x", "_dl_start"] {
            #expect(Demangler.demangle(name) == nil, "\(name)")
        }
    }

    @Test func malformedAndHostileSymbolsAreLeftAsTheyAre() {
        let start = Date()
        let hostile = [
            "_ZN4shop",                                         // cut short
            "_ZN4shop5checkERKNS_5OrderE" + "\u{1}",             // stray byte
            "_Z" + String(repeating: "N1a", count: 4000) + "Ev", // deep nesting, under the length bound
            "_Z" + String(repeating: "P", count: 5000) + "i",    // a type, not a function
            "_Z" + String(repeating: "S_", count: 5000),         // substitutions that refer to nothing
            "_R" + String(repeating: "NvNt", count: 3000) + "C1a", // v0 nesting past libiberty's bound
            "_RNvNtCs6GmmlP4bgsG_1r4sho",                       // v0 cut short
            "$s" + String(repeating: "Sa", count: 4000),        // Swift garbage
            "_Z" + String(repeating: "x", count: Demangler.maxLength), // past the bound: never parsed
        ]
        for symbol in hostile {
            let demangled = Demangler.demangle(symbol)
            #expect(demangled == nil || !demangled!.isEmpty)
            _ = Demangler.qualifiedName(symbol)
        }
        #expect(Demangler.demangle("_Z" + String(repeating: "N1a", count: Demangler.maxLength) + "Ev") == nil)
        #expect(Date().timeIntervalSince(start) < 30, "demangling hostile symbols must not take long")
    }

    /// The fixture's functions get their demangled names once, when the table is read; a regexp
    /// matches any of the names.
    @Test func functionTableNamesAndPatternsSeeDemangledNames() throws {
        let binary = try Fixtures.buildCxx("cxx_names", flags: ["-O1", "-g"], variant: "symbols")
        let image = try ProcessImage(file: binary)
        let check = try #require(image.functions(matching: try NamePattern("^_ZN4shop5checkERKNS_5OrderE$")).first)
        #expect(check.demangledName == "shop::check(shop::Order const&)")
        #expect(check.qualifiedName == "shop::check")
        #expect(check.shownName(demangling: true) == "shop::check(shop::Order const&)")
        #expect(check.shownName(demangling: false) == "_ZN4shop5checkERKNS_5OrderE")
        func names(_ pattern: String) throws -> [String] {
            try image.functions(matching: NamePattern(pattern)).map { $0.demangledName ?? $0.name }.sorted()
        }
        #expect(try names("^shop::check$") == ["shop::check(shop::Order const&)"])
        #expect(try names("^shop::total$") == ["shop::total(double)", "shop::total(int)"])
        #expect(try names(#"shop::total\(int\)"#) == ["shop::total(int)"])
        #expect(try names("largest<double>") == ["double shop::largest<double>(double const*, int)"])
        #expect(try names("^main$") == ["main"])
        let main = try #require(image.functions(matching: NamePattern("^main$")).first)
        #expect(main.demangledName == nil && main.qualifiedName == nil)
    }
}

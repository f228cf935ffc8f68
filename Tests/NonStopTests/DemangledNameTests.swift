import Foundation
import Testing
import TestSupport

/// C++, Rust and Swift programs traced by the names their authors wrote: regexps on demangled names, events
/// named demangled (the symbol beside in JSON), exceptions still closing frames as unwound.
@Suite(.serialized) struct DemangledNames {
    static let check = "shop::check(shop::Order const&)"
    static let place = "shop::place(shop::Order const&)"

    func cxxNames() throws -> String {
        try Fixtures.buildCxx("cxx_names", flags: ["-O1", "-g"], variant: "trace")
    }

    /// "calls<TAB>name<TAB>count" lines the C++ fixture prints (its names hold spaces).
    func madeCalls(_ stdout: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in stdout.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            if fields.count == 3, fields[0] == "calls", let n = Int(fields[2]) { counts[String(fields[1])] = n }
        }
        return counts
    }

    func trace(_ arguments: [String], _ binary: String, name: String) throws -> (CommandResult, TraceLog) {
        let file = Paths.scratch.appendingPathComponent("demangled-\(name).jsonl").path
        let result = try nstrace(["--json", "-o", file] + arguments + ["--", binary], timeout: 300)
        #expect(result.status == 0, "\(result)")
        return (result, try TraceLog(file: file))
    }

    @Test(arguments: ["inline", "jump"])
    func aRegexpOnDemangledNamesTracesEveryCallUnderThatName(strategy: String) throws {
        let (result, log) = try trace(["--strategy", strategy, "shop::"], try cxxNames(), name: "shop-\(strategy)")
        let made = madeCalls(result.stdout)
        #expect(made.count == 6, "\(result.stdout)")
        #expect(log.calls() == made, "calls seen vs calls made")
        // One order throws in check, through place, to main's handler: both frames close unwound.
        var returned = made
        returned[Self.check, default: 0] -= 1
        returned[Self.place, default: 0] -= 1
        #expect(log.returns() == returned)
        #expect(log.count("unwound", function: Self.check) == 1)
        #expect(log.count("unwound", function: Self.place) == 1)
        #expect(log.count("unwound") == 2)
        // The overloads are two functions, told apart by their names.
        #expect(made["shop::total(int)"] == 3 && made["shop::total(double)"] == 2)
    }

    @Test func jsonEventsCarryTheDemangledNameAndTheSymbol() throws {
        let (_, log) = try trace(["^shop::check$"], try cxxNames(), name: "both")
        let events = log.of("call") + log.of("return") + log.of("unwound")
        #expect(events.count == 10, "5 calls, 4 returns, 1 unwound")
        for event in events {
            #expect(event["function"] as? String == Self.check)
            #expect(event["symbol"] as? String == "_ZN4shop5checkERKNS_5OrderE")
        }
    }

    @Test func aRegexpOnTheSymbolOrOneOverloadPicksOneFunction() throws {
        let binary = try cxxNames()
        let (_, bySymbol) = try trace(["^_ZN4shop5totalEi$"], binary, name: "symbol")
        #expect(bySymbol.calls() == ["shop::total(int)": 3])
        let (_, byParameters) = try trace([#"total\(double\)"#], binary, name: "overload")
        #expect(byParameters.calls() == ["shop::total(double)": 2])
        let (_, template) = try trace(["^shop::largest<int>$"], binary, name: "template")
        #expect(template.calls() == ["int shop::largest<int>(int const*, int)": 1])
    }

    @Test func noDemangleShowsSymbolsAndMatchesTheSameFunctions() throws {
        let (_, log) = try trace(["--no-demangle", "^shop::(check|total)$"], try cxxNames(), name: "raw")
        #expect(log.calls() == ["_ZN4shop5checkERKNS_5OrderE": 5, "_ZN4shop5totalEi": 3, "_ZN4shop5totalEd": 2])
        #expect(log.count("unwound", function: "_ZN4shop5checkERKNS_5OrderE") == 1)
        #expect(log.events.allSatisfy { $0["symbol"] == nil }, "no symbol field where function is the symbol")
    }

    @Test func textLinesNameFunctionsDemangled() throws {
        let result = try nstrace(["^shop::place$", "--", try cxxNames()], timeout: 300)
        #expect(result.status == 0, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.filter { $0.contains("→ \(Self.place)(") }.count == 5, "\(result.stderr)")
        #expect(lines.filter { $0.contains("← \(Self.place)") }.count == 4)
        #expect(lines.filter { $0.contains("↯ \(Self.place) (unwound)") }.count == 1)
        #expect(!result.stderr.contains("_ZN4shop"))
    }

    /// rustc's two manglings: legacy (`_ZN…17h<hash>E`, rustc's default) and v0 (`_R…`).
    @Test(.enabled(if: Fixtures.rustCompiler != nil, "rustc is not installed: the Rust fixture needs it (rustup, or Debian's rustc)"),
          arguments: ["legacy", "v0"])
    func rustNamesAreDemangled(mangling: String) throws {
        let flags = ["-C", "debuginfo=2", "-C", "opt-level=1"] + (mangling == "v0" ? ["-C", "symbol-mangling-version=v0"] : [])
        let binary = try #require(try Fixtures.buildRust("rust_names", flags: flags, variant: mangling))
        // v0 names a method by its type, `<rust_names::shop::Order>::weight`; legacy by its path.
        let (result, log) = try trace(["^<?rust_names::shop::"], binary, name: "rust-\(mangling)")
        let made = fixtureCounts(result.stdout)
        #expect(made == ["check": 7, "weight": 4], "\(result.stdout)")
        let method = mangling == "v0" ? "<rust_names::shop::Order>::weight" : "rust_names::shop::Order::weight"
        #expect(log.calls() == ["rust_names::shop::check": 7, method: 4])
        #expect(log.returns() == log.calls())
        let symbol = try #require(log.of("call").first?["symbol"] as? String)
        #expect(symbol.hasPrefix(mangling == "v0" ? "_R" : "_ZN"), "\(symbol): rustc's \(mangling) mangling")
    }

    /// Swift's own demangler, through the runtime nstrace links.
    @Test(.enabled(if: Fixtures.swiftCompiler != nil, "swiftc is not on PATH"))
    func swiftNamesAreDemangled() throws {
        let binary = try #require(try Fixtures.buildSwift("swift_names", flags: ["-Onone", "-g"], variant: "trace"))
        let (result, log) = try trace([#"^swift_names\.(check|Order\.weight)"#], binary, name: "swift")
        #expect(fixtureCounts(result.stdout) == ["check": 7, "weight": 4], "\(result.stdout)")
        #expect(log.calls() == ["swift_names.check(order: swift_names.Order) -> Swift.Bool": 7,
                                "swift_names.Order.weight() -> Swift.Int": 4])
        #expect(log.returns() == log.calls())
        #expect((log.of("call").first?["symbol"] as? String)?.hasPrefix("$s11swift_names") == true)
    }
}

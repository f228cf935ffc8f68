import Foundation
@testable import NonStop
import Symbols
import Testing
import TestSupport

/// Values as DWARF and the System V ABI say, under every strategy: x87 `long double` (on the stack,
/// returned in st(0)), `__int128` (two registers, or the stack when they run out), `_Complex`, small
/// structs and unions per eightbyte in registers, large ones on the stack and returned through the
/// hidden pointer (which shifts the integer arguments), and `--deref`. The fixture prints what it
/// passed and got; the expectations below are those values, checked by hand against its output.
@Suite(.serialized) struct ABIValues {
    func fixture() throws -> String {
        try Fixtures.build("abi_values", flags: ["-O1", "-g", "-fcf-protection=full"], variant: "abi")
    }

    static let pattern = "^(ab_|mixed_div)"

    /// What the fixture says it passed and got (its own ground truth, printed with printf).
    static let printed = [
        "mixed_div 4 2.5 3 = 4.8",
        "ab_ld_scale 1e4000 -3 = -3e+4000",
        "ab_i128_mul 1267650600228229401496703205383 -3 = -3802951800684688204490109616149",
        "ab_u128_shift = ffffffffffffffff0000000000000000",
        "ab_small_make = {-5, 2.5}",
        "ab_mixed_swap = {42, 2.5}",
        "ab_point_mid = {2, 3.5}",
        "ab_large_make = {10, 20, 0.5, big, {0.5, -0.5}}",
        "ab_large_sum = 33",
        "ab_regs_out = 31",
        "ab_complex = 0+1.25i",
        "ab_complex_ld = 1.5-2i",
        "ab_union = 100",
        "ab_nested_pass = {{4, 0.75}, {1, -2, 3}, 1, 9}",
    ]

    static let text = [
        #"→ mixed_div(a=4, b=2.5, c=3)"#,
        #"← mixed_div = 4.8"#,
        #"→ ab_ld_scale(x=0.1, k=3)"#,
        #"← ab_ld_scale = 0.3"#,
        #"→ ab_ld_scale(x=1e+4000, k=-3)"#,
        #"← ab_ld_scale = -3e+4000"#,
        #"→ ab_i128_mul(a=1267650600228229401496703205383, b=-3)"#,
        #"← ab_i128_mul = -3802951800684688204490109616149"#,
        #"→ ab_u128_shift(a=18446744073709551615, by=64)"#,
        #"← ab_u128_shift = 340282366920938463444927863358058659840"#,
        #"→ ab_floats(a=1.5, b=0.25)"#,
        #"← ab_floats = 1.75"#,
        #"→ ab_string(s="hello", n=2)"#,
        #"← ab_string = 7"#,
        #"→ ab_small_make(i=-5, f=2.5)"#,
        #"← ab_small_make = {i: -5, f: 2.5}"#,
        #"→ ab_mixed_swap(m={n: 41, d: 1.25})"#,
        #"← ab_mixed_swap = {n: 42, d: 2.5}"#,
        #"→ ab_point_mid(a={x: 1.0, y: 2.0}, b={x: 3.0, y: 5.0})"#,
        #"← ab_point_mid = {x: 2.0, y: 3.5}"#,
        #"→ ab_large_make(a=10, d=0.5, tag="big")"#,
        #"← ab_large_make = {a: 10, b: 20, d: 0.5, tag: "big", p: {x: 0.5, y: -0.5}}"#,
        #"→ ab_large_sum(l={a: 10, b: 20, d: 0.5, tag: "big", p: {x: 0.5, y: -0.5}}, k=3)"#,
        #"← ab_large_sum = 33"#,
        #"→ ab_regs_out(a=1, b=2, c=3, d=4, e=5, x=110680464442257309705, last=7)"#,
        #"← ab_regs_out = 31"#,
        #"→ ab_complex(z={real: 1.0, imag: 2.0}, w={real: 0.5, imag: 0.25})"#,
        #"← ab_complex = {real: 0.0, imag: 1.25}"#,
        #"→ ab_complex_ld(re=1.5, im=-2.0)"#,
        #"← ab_complex_ld = {real: 1.5, imag: -2.0}"#,
        #"→ ab_union(w={l: 99, d: 4.9e-322})"#,
        #"← ab_union = {l: 100, d: 4.94e-322}"#,
        #"→ ab_nested_pass(n={s: {i: 3, f: 0.75}, arr: [1, -2, 3], flag: 1, bits: -9})"#,
        #"← ab_nested_pass = {s: {i: 4, f: 0.75}, arr: [1, -2, 3], flag: 1, bits: 9}"#
    ]

    /// Each call's `args` and each return's `retval`, as the JSON line has them.
    static let json = [
        #"call mixed_div [{"name":"a","type":"long long int","value":4},{"name":"b","type":"long double","value":2.5},{"name":"c","type":"int","value":3}]"#,
        #"return mixed_div 4.8"#,
        #"call ab_ld_scale [{"name":"x","type":"long double","value":0.1},{"name":"k","type":"int","value":3}]"#,
        #"return ab_ld_scale 0.3"#,
        #"call ab_ld_scale [{"name":"x","type":"long double","value":"1e+4000"},{"name":"k","type":"int","value":-3}]"#,
        #"return ab_ld_scale "-3e+4000""#,
        #"call ab_i128_mul [{"name":"a","type":"__int128","value":1267650600228229401496703205383},{"name":"b","type":"long int","value":-3}]"#,
        #"return ab_i128_mul -3802951800684688204490109616149"#,
        #"call ab_u128_shift [{"name":"a","type":"__int128 unsigned","value":18446744073709551615},{"name":"by","type":"int","value":64}]"#,
        #"return ab_u128_shift 340282366920938463444927863358058659840"#,
        #"call ab_floats [{"name":"a","type":"float","value":1.5},{"name":"b","type":"double","value":0.25}]"#,
        #"return ab_floats 1.75"#,
        #"call ab_string [{"name":"s","type":"const char *","value":"hello"},{"name":"n","type":"int","value":2}]"#,
        #"return ab_string 7"#,
        #"call ab_small_make [{"name":"i","type":"int","value":-5},{"name":"f","type":"float","value":2.5}]"#,
        #"return ab_small_make {"i":-5,"f":2.5}"#,
        #"call ab_mixed_swap [{"name":"m","type":"struct ab_mixed","value":{"n":41,"d":1.25}}]"#,
        #"return ab_mixed_swap {"n":42,"d":2.5}"#,
        #"call ab_point_mid [{"name":"a","type":"struct ab_point","value":{"x":1.0,"y":2.0}},{"name":"b","type":"struct ab_point","value":{"x":3.0,"y":5.0}}]"#,
        #"return ab_point_mid {"x":2.0,"y":3.5}"#,
        #"call ab_large_make [{"name":"a","type":"long int","value":10},{"name":"d","type":"double","value":0.5},{"name":"tag","type":"const char *","value":"big"}]"#,
        #"return ab_large_make {"a":10,"b":20,"d":0.5,"tag":"big","p":{"x":0.5,"y":-0.5}}"#,
        #"call ab_large_sum [{"name":"l","type":"struct ab_large","value":{"a":10,"b":20,"d":0.5,"tag":"big","p":{"x":0.5,"y":-0.5}}},{"name":"k","type":"int","value":3}]"#,
        #"return ab_large_sum 33"#,
        #"call ab_regs_out [{"name":"a","type":"long int","value":1},{"name":"b","type":"long int","value":2},{"name":"c","type":"long int","value":3},{"name":"d","type":"long int","value":4},{"name":"e","type":"long int","value":5},{"name":"x","type":"__int128","value":110680464442257309705},{"name":"last","type":"int","value":7}]"#,
        #"return ab_regs_out 31"#,
        #"call ab_complex [{"name":"z","type":"complex double","value":{"real":1.0,"imag":2.0}},{"name":"w","type":"complex float","value":{"real":0.5,"imag":0.25}}]"#,
        #"return ab_complex {"real":0.0,"imag":1.25}"#,
        #"call ab_complex_ld [{"name":"re","type":"long double","value":1.5},{"name":"im","type":"long double","value":-2.0}]"#,
        #"return ab_complex_ld {"real":1.5,"imag":-2.0}"#,
        #"call ab_union [{"name":"w","type":"union ab_word","value":{"l":99,"d":4.9e-322}}]"#,
        #"return ab_union {"l":100,"d":4.94e-322}"#,
        #"call ab_nested_pass [{"name":"n","type":"struct ab_nested","value":{"s":{"i":3,"f":0.75},"arr":[1,-2,3],"flag":1,"bits":-9}}]"#,
        #"return ab_nested_pass {"s":{"i":4,"f":0.75},"arr":[1,-2,3],"flag":1,"bits":9}"#
    ]

    /// The trace's lines without the thread id.
    func lines(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").map { line in
            guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return String(line) }
            return String(line[line.index(after: close)...].dropFirst())
        }.filter { !$0.hasPrefix("+++") }
    }

    @Test(arguments: ["inline", "jump", "step"])
    func everyABIClassPrintsExactlyInText(strategy: String) throws {
        let binary = try fixture()
        let result = try nstrace(["--strategy", strategy, Self.pattern, "--", binary])
        #expect(result.status == 0, "\(result)")
        for line in Self.printed { #expect(result.stdoutLines.contains(line), "the fixture printed: \(result.stdout)") }
        let seen = lines(result.stderr)
        #expect(seen == Self.text, "\(strategy): \(zip(seen, Self.text).filter { $0 != $1 }.prefix(4)) of \(seen.count) lines")
    }

    @Test(arguments: ["inline", "jump", "step"])
    func everyABIClassPrintsExactlyInJSON(strategy: String) throws {
        let binary = try fixture()
        let result = try nstrace(["--strategy", strategy, "--json", Self.pattern, "--", binary])
        #expect(result.status == 0, "\(result)")
        var seen: [String] = []
        for line in result.stderrLines {
            // The raw text, not a parse: a JSON parser would round 128-bit integers and long doubles.
            guard let function = field(line, after: #""function":""#, until: "\""), !line.contains("\"notice\"") else { continue }
            if line.contains(#""event":"call""#), let args = field(line, after: #""args":"#, until: "]}") {
                seen.append("call \(function) \(args)]")
            } else if line.contains(#""event":"return""#), let value = field(line, after: #""retval":"#, until: #","duration_ns""#) {
                seen.append("return \(function) \(value)")
            }
        }
        #expect(seen == Self.json, "\(strategy): \(zip(seen, Self.json).filter { $0 != $1 }.prefix(4)) of \(seen.count) values")
        // And every line is JSON.
        #expect(try jsonLines(result.stderr).count == result.stderrLines.count)
    }

    private func field(_ line: String, after start: String, until end: String) -> String? {
        guard let from = line.range(of: start)?.upperBound, let to = line.range(of: end, range: from..<line.endIndex)?.lowerBound
        else { return nil }
        return String(line[from..<to])
    }

    /// The parameters' locations at entry, as `nstrace list` reports them: the long double result is
    /// in st(0), so `a` is in rdi (not rsi, as when it was taken for a hidden result pointer); the
    /// __int128 that does not fit the one register left goes on the stack, and `last` takes r9.
    @Test func locationsFollowThePsABI() throws {
        let binary = try fixture()
        let listing = try nstrace(["list", "--json", binary, "^(mixed_div|ab_regs_out|ab_large_make|ab_large_sum|ab_point_mid|ab_ld_scale)$"])
        #expect(listing.status == 0, "\(listing)")
        var locations: [String: String] = [:]
        for entry in try jsonLines(listing.stdout) {
            guard let name = entry["function"] as? String, let params = entry["params"] as? [[String: Any]] else { continue }
            locations[name] = params.map { "\($0["name"] ?? "?")=\($0["location"] ?? "?")" }.joined(separator: " ")
        }
        #expect(locations == [
            "mixed_div": "a=rdi b=[rsp+8] c=rsi",
            "ab_ld_scale": "x=[rsp+8] k=rdi",
            "ab_regs_out": "a=rdi b=rsi c=rdx d=rcx e=r8 x=[rsp+8] last=r9",
            // The hidden result pointer takes rdi.
            "ab_large_make": "a=rsi d=xmm0 tag=rdx",
            "ab_large_sum": "l=[rsp+8] k=rdi",
            "ab_point_mid": "a=xmm0:8+xmm1:8 b=xmm2:8+xmm3:8",
        ])
    }

    /// `--deref` shows a struct's fields and a scalar through their pointers; a dangling pointer shows
    /// as itself and unreadable, and the program runs on.
    @Test(arguments: ["inline", "jump", "step"])
    func derefFollowsPointersAndSurvivesBadOnes(strategy: String) throws {
        let binary = try fixture()
        let result = try nstrace(["--strategy", strategy, "--deref", "^ab_(deposit|bump)$", "--", binary, "deref"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines == ["ab_deposit 120.8", "ab_deposit -1.0", "ab_deposit -1.0", "ab_bump 42", "ab_bump -1"])
        let seen = lines(result.stderr).map { $0.replacingOccurrences(of: "0x7f[0-9a-f]+", with: "0x7f…", options: .regularExpression) }
        #expect(seen == [
            "→ ab_deposit(a=0x7f… -> {id: 7, balance: 100.5, owner: \"ann\"}, amount=20.25)",
            "← ab_deposit = 120.75",
            "→ ab_deposit(a=0x10 -> <unreadable>, amount=1.0)",
            "← ab_deposit = -1.0",
            "→ ab_deposit(a=NULL, amount=1.0)",
            "← ab_deposit = -1.0",
            "→ ab_bump(p=0x7f… -> 41)",
            "← ab_bump = 42",
            "→ ab_bump(p=0x8 -> <unreadable>)",
            "← ab_bump = -1",
        ], "\(strategy)")
        let json = try nstrace(["--strategy", strategy, "--deref", "--json", "^ab_deposit$", "--", binary, "deref"])
        let args = try jsonLines(json.stderr).filter { $0["event"] as? String == "call" }.compactMap { $0["args"] as? [[String: Any]] }
        #expect(args.count == 3)
        let first = args.first?.first?["value"] as? [String: Any]
        let fields = first?["value"] as? [String: Any]
        #expect(fields?["id"] as? Int == 7 && fields?["balance"] as? Double == 100.5 && fields?["owner"] as? String == "ann")
        let bad = args.dropFirst().first?.first?["value"] as? [String: Any]
        #expect(bad?["address"] as? String == "0x10" && bad?["unreadable"] as? Bool == true)
        // Without --deref a pointer is its address, as before.
        let plain = try nstrace(["--strategy", strategy, "^ab_bump$", "--", binary, "deref"])
        #expect(lines(plain.stderr).contains("→ ab_bump(p=0x8)"))
    }

    /// A C++ class the ABI passes by invisible reference: read through the address in its register,
    /// with the arguments after it in the registers after that; returned through the hidden pointer.
    @Test(arguments: ["inline", "jump"])
    func cxxClassesPassedByReferenceReadThroughTheirAddress(strategy: String) throws {
        let binary = Paths.scratch.appendingPathComponent("abi_reference").path
        let source = Paths.fixtures.appendingPathComponent("abi_reference.cpp").path
        let built = try run("/usr/bin/g++", ["-O1", "-g", "-fcf-protection=full", source, "-o", binary])
        #expect(built.status == 0, "\(built)")
        let result = try nstrace(["--strategy", strategy, "^ref_", "--", binary])
        #expect(result.stdoutLines == ["ref_take = 16", "ref_make = {7, 0.5}"], "\(result)")
        let seen = lines(result.stderr).filter { $0.contains("ref_") }
        #expect(seen == [
            "→ ref_take(k=2, t={id: 5, weight: 1.5}, z=9)",
            "← ref_take = 16",
            "→ ref_make(id=7)",
            "← ref_make = {id: 7, weight: 0.5}",
        ], "\(strategy): \(result.stderr)")
    }

    /// DWARF is untrusted: offsets, sizes, bit-fields and counts that point past the bytes, or overflow,
    /// read as unavailable or short, never trap.
    @Test func hostileTypesNeverTrap() {
        let int = ValueType(name: "int", kind: .signed, byteSize: 4)
        let huge = ValueType(name: "struct h", kind: .aggregate, byteSize: Int.max, members: [
            .init(name: "far", offset: Int.max, type: int),
            .init(name: "neg", offset: -8, type: int),
            .init(name: "bits", offset: 0, type: int, bitOffset: Int.max, bitSize: 3),
            .init(name: "wide", offset: 0, type: int, bitOffset: 0, bitSize: 1000),
            .init(name: "ok", offset: 0, type: int),
            .init(name: "arr", offset: 4, type: ValueType(name: "int[]", kind: .aggregate, byteSize: Int.max,
                                                          element: ValueType(name: "x", kind: .signed, byteSize: Int.max / 2),
                                                          arrayCount: Int.max)),
            .init(name: "ld", offset: 6, type: ValueType(name: "long double", kind: .float, byteSize: 16)),
            .init(name: "i128", offset: 2, type: ValueType(name: "__int128", kind: .signed, byteSize: 16)),
        ])
        let raw: [UInt8] = [1, 0, 0, 0, 2, 0, 0, 0]
        let value = ArgumentReader<RecordValues>.decode(raw[...], as: huge)
        guard case .structure(let fields) = value else {
            Issue.record("not a structure: \(value)")
            return
        }
        #expect(fields.map(\.name) == ["far", "neg", "bits", "wide", "ok", "arr", "ld", "i128"])
        #expect(fields[0].value == .unavailable && fields[1].value == .unavailable && fields[2].value == .unavailable)
        #expect(fields[3].value == .unavailable && fields[4].value == .signed(1))
        #expect(fields[6].value == .unavailable && fields[7].value == .unavailable)
    }
}

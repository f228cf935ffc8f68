import Foundation
import Glibc
import Symbols
import Testing
import TestSupport

/// `nm -S` on a file: name → (address, size) for defined text symbols. An independent reading of the
/// same symbol table, to compare against.
func nmTextSymbols(_ path: String, dynamic: Bool = false) throws -> [String: (UInt64, UInt64)] {
    let result = try run("/usr/bin/nm", (dynamic ? ["-D"] : []) + ["-S", "--defined-only", path])
    var symbols: [String: (UInt64, UInt64)] = [:]
    for line in result.stdoutLines {
        let f = line.split(separator: " ")
        guard f.count == 4, "tTiW".contains(f[2]), let address = UInt64(f[0], radix: 16),
              let size = UInt64(f[1], radix: 16) else { continue }
        symbols[String(f[3].split(separator: "@").first ?? f[3])] = (address, size)
    }
    return symbols
}

let fixtureFunctions = ["fx_add", "fx_scale", "fx_many", "fx_points", "fx_big", "fx_void"]

@Suite struct SymbolsFromFiles {
    @Test(arguments: [("pie", ["-fPIE", "-pie"]), ("nopie", ["-fno-pie", "-no-pie"])])
    func fixtureFunctionsMatchNm(kind: String, flags: [String]) throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1"] + flags, variant: kind)
        let image = try ProcessImage(file: binary)
        let found = image.functions(matching: try NamePattern("^fx_"))
        let nm = try nmTextSymbols(binary)
        #expect(found.map(\.name).sorted() == fixtureFunctions.sorted())
        for function in found {
            let expected = try #require(nm[function.name])
            #expect(function.address == expected.0, "\(function.name) address")
            #expect(function.size == expected.1, "\(function.name) size")
        }
        if kind == "nopie" {
            // A non-PIE executable links at 0x400000 and up; a PIE at small offsets from 0.
            #expect(found.allSatisfy { $0.address >= 0x400000 })
        } else {
            #expect(found.allSatisfy { $0.address < 0x400000 })
        }
    }

    @Test func strippedBinaryStillListsExportedFunctionsFromDynsym() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1", "-rdynamic"], variant: "dynamic")
        let stripped = Paths.scratch.appendingPathComponent("symbols-stripped").path
        try Fixtures.tool("/usr/bin/strip", ["-o", stripped, binary])
        #expect(try nmTextSymbols(stripped).isEmpty, "strip left a .symtab behind")

        let image = try ProcessImage(file: stripped)
        let found = image.functions(matching: try NamePattern("^fx_"))
        let dynsym = try nmTextSymbols(stripped, dynamic: true)
        #expect(found.map(\.name).sorted() == fixtureFunctions.sorted())
        for function in found {
            #expect(function.address == dynsym[function.name]?.0)
            // No DWARF is left: nothing to say about parameters.
            #expect(image.signature(of: function) == nil)
        }
    }

    @Test(arguments: ["-gdwarf-4", "-gdwarf-5"])
    func dwarfParameterNamesTypesAndEntryLocations(dwarf: String) throws {
        let binary = try Fixtures.build("symbols", flags: [dwarf, "-O0"], variant: dwarf)
        let image = try ProcessImage(file: binary)
        func signature(_ name: String) throws -> Signature {
            let function = try #require(image.functions(matching: try NamePattern("^\(name)$")).first)
            return try #require(image.signature(of: function))
        }
        func params(_ s: Signature) -> [String] {
            s.parameters.map { "\($0.type.name) \($0.name) \($0.type.byteSize) @\($0.location)" }
        }
        let add = try signature("fx_add")
        #expect(params(add) == ["int a 4 @rdi", "int b 4 @rsi"])
        #expect(add.returnType?.name == "int")
        #expect(add.results.map(\.location) == [.register(.rax)])

        let scale = try signature("fx_scale")
        #expect(params(scale) == ["double value 8 @xmm0", "float factor 4 @xmm1", "const char * label 8 @rdi"])
        #expect(scale.parameters[2].type.kind == .cString)
        #expect(scale.results.map(\.location) == [.register(.xmm(0))])

        let many = try signature("fx_many")
        #expect(many.parameters.map(\.location) == [
            .register(.rdi), .register(.rsi), .register(.rdx), .register(.rcx), .register(.r8), .register(.r9),
            .stack(offset: 8), .stack(offset: 16),
        ])

        // Structs by value: 8 bytes of ints in one register, 40 bytes in memory, {double, long} split
        // across an SSE and an integer register.
        let points = try signature("fx_points")
        #expect(params(points) == ["struct point p 8 @rdi", "struct big b 40 @[rsp+8]",
                                   "struct mixed m 16 @xmm0:8+rsi:8"])
        // A struct returned in memory takes rdi for the hidden pointer.
        let big = try signature("fx_big")
        #expect(params(big) == ["unsigned char seed 1 @rsi"])
        #expect(big.returnType?.name == "struct big")

        let void = try signature("fx_void")
        #expect(void.parameters.isEmpty)
        #expect(void.returnType == nil)
    }

    @Test func separateDebuginfoIsFoundByBuildID() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1", "-Wl,--build-id"], variant: "buildid")
        let debugRoot = Paths.scratch.appendingPathComponent("debugroot")
        let stripped = Paths.scratch.appendingPathComponent("symbols-nodebug").path
        let image = try ProcessImage(file: binary)
        let buildID = try #require(image.modules.first?.buildID)
        let idDir = debugRoot.appendingPathComponent(".build-id/\(buildID.prefix(2))")
        try FileManager.default.createDirectory(at: idDir, withIntermediateDirectories: true)
        try Fixtures.tool("/usr/bin/objcopy", ["--only-keep-debug", binary,
                                                idDir.appendingPathComponent("\(buildID.dropFirst(2)).debug").path])
        try Fixtures.tool("/usr/bin/strip", ["--strip-debug", "--remove-section=.gnu_debuglink", "-o", stripped, binary])

        let withoutPath = try ProcessImage(file: stripped, debuginfoPath: Paths.scratch.path)
        let fn = try #require(withoutPath.functions(matching: try NamePattern("^fx_add$")).first)
        #expect(withoutPath.signature(of: fn) == nil, "the stripped copy itself has no DWARF")

        let withPath = try ProcessImage(file: stripped, debuginfoPath: debugRoot.path)
        let found = try #require(withPath.functions(matching: try NamePattern("^fx_add$")).first)
        let signature = try #require(withPath.signature(of: found))
        #expect(signature.parameters.map(\.name) == ["a", "b"])
    }

    @Test func libcAliasesFoldIntoOneEntryNamedByThePreferredSymbol() throws {
        let image = try ProcessImage(file: "/lib/x86_64-linux-gnu/libc.so.6")
        let read = image.functions(matching: try NamePattern("^read$"))
        #expect(read.count == 1)
        let entry = try #require(read.first)
        #expect(entry.name == "read")
        #expect(entry.aliases.contains("__read"))
        // Asking by an alias finds the same entry, still named `read`.
        let byAlias = image.functions(matching: try NamePattern("^__read$"))
        #expect(byAlias.map(\.address) == [entry.address])
        #expect(byAlias.first?.name == "read")
        // No two entries share an address anywhere in libc.
        let all = image.functions(matching: try NamePattern("."))
        #expect(Set(all.map(\.address)).count == all.count)
        #expect(all.count > 1000)
    }

    @Test func badFilesAreReportedPlainly() throws {
        #expect(throws: SymbolError.noSuchFile("/nonexistent/binary")) {
            try ProcessImage(file: "/nonexistent/binary")
        }
        let text = Paths.scratch.appendingPathComponent("not-elf.txt").path
        try "hello\n".write(toFile: text, atomically: true, encoding: .utf8)
        #expect(throws: SymbolError.notAnELFFile(text)) { try ProcessImage(file: text) }
        #expect(throws: SymbolError.notAnELFFile("/tmp")) { try ProcessImage(file: "/tmp") }
    }

    @Test func invalidPatternSaysWhere() {
        do {
            _ = try NamePattern("fx_(add")
            Issue.record("an unbalanced group compiled")
        } catch {
            #expect(error.column == 8)
            #expect(error.description.contains("expected ')'"))
        }
    }
}

@Suite struct SymbolsOfALiveProcess {
    /// gdb's answer for where a symbol is in a process: an independent reading of the same fact.
    func gdbAddress(pid: pid_t, symbol: String) throws -> UInt64 {
        let result = try run("/usr/bin/gdb", ["-batch", "-nx", "-p", "\(pid)", "-ex", "info address \(symbol)"],
                             timeout: 120)
        guard let line = result.stdoutLines.first(where: { $0.contains("Symbol \"\(symbol)\" is at") }),
              let hex = line.split(separator: " ").first(where: { $0.hasPrefix("0x") }),
              let address = UInt64(hex.dropFirst(2), radix: 16)
        else { throw TestFailure("gdb did not say where \(symbol) is: \(result)") }
        return address
    }

    @Test func sharedLibraryFunctionsResolveWhereGdbSaysTheyAre() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1"], variant: "live")
        let fixture = try RunningFixture(binary, ["wait"])
        defer { fixture.stop() }
        let image = try ProcessImage(pid: fixture.pid)
        let libc = try #require(image.modules.first { $0.name == "libc.so.6" })
        for symbol in ["malloc", "write"] {
            let found = image.functions(matching: try NamePattern("^\(symbol)$"))
            #expect(found.count == 1, "\(symbol): \(found)")
            let function = try #require(found.first)
            #expect(function.module == libc)
            #expect(function.address == (try gdbAddress(pid: fixture.pid, symbol: symbol)), "\(symbol)")
        }
        // The PIE main program is biased too: runtime = link-time + the module's load bias.
        let onDisk = try #require(try nmTextSymbols(binary)["fx_add"])
        let live = try #require(image.functions(matching: try NamePattern("^fx_add$")).first)
        #expect(live.address == onDisk.0 + live.module.bias)
        #expect(live.module.bias != 0)
    }

    @Test func aProcessThatDoesNotExistIsNamed() throws {
        #expect(throws: SymbolError.noSuchProcess(99_999_999)) { try ProcessImage(pid: 99_999_999) }
    }
}

import Foundation
@testable import Symbols
import Testing
import TestSupport

/// The C++ fixture, compiled to assembly and then assembled with its local labels kept (`as -L`), so
/// that the compiler's own call-site tables, read from its assembly, name the landing pads, and `nm`
/// says where they are: a reading of the LSDAs that shares nothing with LandingPads.swift.
struct LabelledCxxFixture {
    let labelled: LabelledAssembly
    var binary: String { labelled.binary }

    static let clang = LabelledAssembly.clang(plusPlus: true)

    init(compiler: String, flags: [String], variant: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/g++") else {
            throw TestFailure("g++ is not installed: the C++ fixture needs it (apt-get install g++)")
        }
        labelled = try LabelledAssembly(source: "landing_pads.cpp", compiler: compiler, flags: flags,
                                        driver: "/usr/bin/g++", variant: variant)
    }

    /// The landing-pad labels of every call-site table: the third field of each four-field entry
    /// (start, length, landing pad, action), `pad-start` or 0 for none.
    func landingPadLabels() throws -> [String] {
        var labels: [String] = []
        var fields: [String]?
        for line in try labelled.assemblyLines() {
            let text = line.split(separator: "#").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if text.hasPrefix(".LLSDACSB") || text.hasPrefix(".Lcst_begin") { fields = []; continue }
            if text.hasPrefix(".LLSDACSE") || text.hasPrefix(".Lcst_end") {
                if fields?.count != 0 { throw TestFailure("a call-site table ends mid-entry: \(fields ?? [])") }
                fields = nil
                continue
            }
            guard var entry = fields else { continue }
            let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, [".uleb128", ".byte", ".long", ".quad"].contains(parts[0]) else { continue }
            entry.append(String(parts[1]))
            if entry.count == 4 {
                if entry[2] != "0" {
                    guard let label = entry[2].split(separator: "-").first else { throw TestFailure("pad \(entry)") }
                    labels.append(String(label))
                }
                entry = []
            }
            fields = entry
        }
        return labels
    }

    func symbolAddresses() throws -> [String: UInt64] { try labelled.symbolAddresses() }
}

/// readelf's view of `.eh_frame`: the code range of every FDE whose augmentation data (its LSDA
/// pointer) is present and not zero.
func readelfRangesWithLSDA(_ binary: String) throws -> Set<Range<UInt64>> {
    let lines = try run("/usr/bin/readelf", ["--debug-dump=frames", binary]).stdoutLines
    var ranges = Set<Range<UInt64>>()
    for (i, line) in lines.enumerated() where line.contains(" FDE ") {
        guard let pc = line.split(separator: " ").first(where: { $0.hasPrefix("pc=") }) else { continue }
        let bounds = pc.dropFirst(3).components(separatedBy: "..").compactMap { UInt64($0, radix: 16) }
        guard bounds.count == 2, i + 1 < lines.count, lines[i + 1].contains("Augmentation data:") else { continue }
        let data = lines[i + 1].components(separatedBy: ":").last ?? ""
        if data.split(separator: " ").contains(where: { $0 != "00" }) { ranges.insert(bounds[0]..<bounds[1]) }
    }
    return ranges
}

/// objdump's instruction addresses: an independent decoder's instruction boundaries.
func objdumpInstructionStarts(_ binary: String) throws -> Set<UInt64> {
    var starts = Set<UInt64>()
    for line in try run("/usr/bin/objdump", ["-d", "--no-show-raw-insn", binary]).stdoutLines {
        let f = line.split(separator: ":", maxSplits: 1)
        guard f.count == 2, line.hasPrefix(" "), f[1].hasPrefix("\t"),
              let address = UInt64(f[0].trimmingCharacters(in: .whitespaces), radix: 16)
        else { continue }
        starts.insert(address)
    }
    return starts
}

@Suite struct LandingPadsFromLSDAs {
    static let builds: [(String, String, [String])] = [
        ("gcc-O2", "/usr/bin/g++", ["-O2"]),
        ("gcc-O0", "/usr/bin/g++", ["-O0"]),
        ("gcc-O2-nopie", "/usr/bin/g++", ["-O2", "-fno-pie", "-no-pie"]),
    ] + (LabelledCxxFixture.clang.map { [("clang-O2", $0, ["-O2"])] } ?? [])

    @Test(arguments: builds.map(\.0))
    func fixturePadsAreExactlyTheCompilersCallSiteTargets(variant: String) throws {
        let (_, compiler, flags) = try #require(Self.builds.first { $0.0 == variant })
        let fixture = try LabelledCxxFixture(compiler: compiler, flags: flags, variant: variant)
        let ran = try run(fixture.binary, [])
        #expect(ran.stdoutLines.last?.hasPrefix("caught 9 of 9") == true, "\(ran)")

        let symbols = try fixture.symbolAddresses()
        let labels = try fixture.landingPadLabels()
        let expected = Set(try labels.map { label in
            guard let address = symbols[label] else { throw TestFailure("nm does not list \(label)") }
            return address
        })
        let image = try ProcessImage(file: fixture.binary)
        let module = try #require(image.modules.first)
        let table = image.landingPadTable(in: module)
        // Every catch and cleanup: at least one pad for each of the five functions, two for the
        // nested ones, however the compiler shares them.
        #expect(expected.count >= 7, "\(labels)")
        #expect(Set(table.pads) == expected)
        #expect(table.pads == table.pads.sorted())
        #expect(table.readToEnd)
        #expect(table.incompleteRanges.isEmpty)
        #expect(Set(table.rangesWithLSDA) == (try readelfRangesWithLSDA(fixture.binary)))

        let starts = try objdumpInstructionStarts(fixture.binary)
        for pad in table.pads {
            #expect(starts.contains(pad), "pad 0x\(String(pad, radix: 16)) is not an instruction boundary")
        }
        // Each function that can unwind has a pad in its body or in its split-off `.cold` part;
        // the one that cannot has none.
        for name in ["lp_catch_typed", "lp_catch_many", "lp_cleanup", "lp_nested", "lp_rethrow"] {
            let parts = image.functions(matching: try NamePattern("^\(name)(\\.cold)?$"))
            #expect(!parts.isEmpty, "\(name)")
            #expect(parts.flatMap { image.landingPads(of: $0) }.count >= 1, "\(name) has no landing pad")
        }
        let plain = try #require(image.functions(matching: try NamePattern("^lp_plain$")).first)
        #expect(image.landingPads(of: plain).isEmpty)
    }

    @Test(arguments: ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"])
    func systemLibrariesYieldAPlausibleNumberOfPads(path: String) throws {
        let image = try ProcessImage(file: path)
        let module = try #require(image.modules.first)
        let table = image.landingPadTable(in: module)
        let withLSDA = try readelfRangesWithLSDA(path)
        print("landing pads in \(module.name): \(table.pads.count) pads, \(table.rangesWithLSDA.count) FDEs with an LSDA,"
              + " \(table.incompleteRanges.count) incomplete, read to end: \(table.readToEnd)")
        #expect(table.readToEnd)
        #expect(table.incompleteRanges.isEmpty)
        #expect(Set(table.rangesWithLSDA) == withLSDA)
        // libc's cancellation cleanups number in the dozens; libstdc++'s pads in the thousands.
        #expect(table.pads.count >= (module.name.hasPrefix("libc.") ? 20 : 2000))
        // A pad is inside the code range of some FDE that has an LSDA.
        let ranges = table.rangesWithLSDA.sorted { $0.lowerBound < $1.lowerBound }
        let outside = table.pads.filter { pad in !ranges.contains { $0.contains(pad) } }
        #expect(outside.isEmpty, "pads outside every FDE: \(outside.prefix(5).map { String($0, radix: 16) })")
    }

    /// In a live process every module is somewhere else than its file says: the pads move with it.
    @Test func liveProcessPadsAreTheFilesMovedByTheLoadBias() throws {
        let fixture = try LabelledCxxFixture(compiler: "/usr/bin/g++", flags: ["-O2"], variant: "live")
        let running = try RunningFixture(fixture.binary, ["wait"])
        defer { running.stop() }
        let image = try ProcessImage(pid: running.pid)
        var checked: [String] = []
        for module in image.modules where module.path == fixture.binary || module.name.hasPrefix("libstdc++") {
            let live = image.landingPads(in: module)
            let file = try ProcessImage(file: module.path)
            let onDisk = file.landingPads(in: try #require(file.modules.first))
            #expect(module.bias != 0, "\(module.name)")
            #expect(!live.isEmpty, "\(module.name)")
            #expect(live == onDisk.map { $0 &+ module.bias }, "\(module.name)")
            checked.append(module.name)
        }
        #expect(checked.count == 2, "\(checked)")
        let cleanup = try #require(image.functions(matching: try NamePattern("^lp_cleanup$")).first)
        #expect(image.landingPads(of: cleanup).allSatisfy { cleanup.module.contains($0) })
    }

    /// Untrusted bytes: corrupted and truncated copies of real tables read what they can, never trap.
    @Test func corruptedTablesNeverTrap() throws {
        let fixture = try LabelledCxxFixture(compiler: "/usr/bin/g++", flags: ["-O2"], variant: "fuzz")
        let frame = try Self.section(".eh_frame", of: fixture.binary)
        let except = try Self.section(".gcc_except_table", of: fixture.binary)
        func pads(_ frame: SectionBytes, _ except: SectionBytes?) -> EHFrameReader {
            var reader = EHFrameReader(frame: frame, bias: 0, exceptTable: except) { _, _ in nil }
            reader.readAll()
            return reader
        }
        let clean = pads(frame, except)
        let image = try ProcessImage(file: fixture.binary)
        #expect(Set(clean.pads) == Set(image.landingPads(in: try #require(image.modules.first))))

        var random = SeededRandom(seed: 0x6c70)
        var readToEnd = 0
        for round in 0..<3000 {
            var f = frame.bytes, e = except.bytes
            for _ in 0..<(1 + round % 8) {
                let hit = Int(random.next() % UInt64(f.count + e.count))
                let value = UInt8(truncatingIfNeeded: random.next())
                if hit < f.count { f[hit] = value } else { e[hit - f.count] = value }
            }
            if round % 5 == 0 { f = Array(f.prefix(Int(random.next() % UInt64(f.count)))) }
            let reader = pads(SectionBytes(address: frame.address, bytes: f), SectionBytes(address: except.address, bytes: e))
            if reader.readToEnd { readToEnd += 1 }
            #expect(reader.pads.count < 10_000)
        }
        // Some corruptions land in instructions the reader skips: not every round fails.
        #expect(readToEnd > 0 && readToEnd < 3000)
    }

    static func section(_ name: String, of binary: String) throws -> SectionBytes {
        let out = Paths.scratch.appendingPathComponent("section-\(name.dropFirst())-\(getpid())").path
        try Fixtures.tool("/usr/bin/objcopy", ["-O", "binary", "--only-section=\(name)", binary, out])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        let headers = try run("/usr/bin/readelf", ["-SW", binary]).stdoutLines
        guard let line = headers.first(where: { $0.contains(" \(name) ") }),
              let at = line.split(separator: " ").firstIndex(where: { $0 == name }),
              let address = UInt64(line.split(separator: " ")[at + 2], radix: 16)
        else { throw TestFailure("readelf does not list \(name)") }
        return SectionBytes(address: address, bytes: bytes)
    }
}

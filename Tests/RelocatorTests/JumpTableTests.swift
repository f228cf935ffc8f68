import Foundation
@testable import Relocator
import Symbols
import Testing
import TestSupport

/// switches.c compiled to assembly and assembled with its local labels kept: the compiler's own
/// jump tables, read from its assembly, name every case label, and `nm` says where each is. That is
/// the independent answer the decoder's targets are compared with.
struct SwitchFixture {
    let labelled: LabelledAssembly
    var binary: String { labelled.binary }

    static let clang = LabelledAssembly.clang()

    init(compiler: String, flags: [String], variant: String) throws {
        labelled = try LabelledAssembly(source: "switches.c", compiler: compiler, flags: ["-O2"] + flags,
                                        driver: "/usr/bin/gcc", variant: variant)
    }

    /// Each function's jump-table entries (its `.cold` part's counted as its own), as addresses.
    func tableTargets() throws -> [String: Set<UInt64>] {
        var labels: [String: [String]] = [:]
        var functions = Set<String>()
        var current: String?
        for line in try labelled.assemblyLines() {
            let text = (line.split(separator: "#").first ?? "").trimmingCharacters(in: .whitespaces)
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
            if words.count >= 3, words[0] == ".type", words[2] == "@function" { functions.insert(String(words[1])) }
            if text.hasSuffix(":"), functions.contains(String(text.dropLast())) {
                current = String(text.dropLast().split(separator: ".").first ?? "")
            }
            guard let function = current, words.count == 2, words[0] == ".long" || words[0] == ".quad",
                  words[1].hasPrefix(".L"), let label = words[1].split(separator: "-").first
            else { continue }
            labels[function, default: []].append(String(label))
        }
        let symbols = try labelled.symbolAddresses()
        return try labels.mapValues { names in
            Set(try names.map { name in
                guard let address = symbols[name] else { throw TestFailure("nm does not list \(name)") }
                return address
            })
        }
    }
}

/// A function's body and its split-off `.cold` part, decoded and classified as the planner would.
func classifyIndirectJumps(_ function: Function, parts: [Function], image: ProcessImage,
                           decoder: Decoder) -> [UInt64: IndirectJumpTarget] {
    var instructions: [Instruction] = []
    var ranges: [Range<UInt64>] = []
    for part in [function] + parts where part.size > 0 {
        guard let bytes = image.fileBytes(of: part) else { continue }
        instructions += decoder.decodeAll(bytes, at: part.address)
        ranges.append(part.address..<part.address &+ part.size)
    }
    instructions.sort { $0.address < $1.address }
    return JumpTables.classify(instructions: instructions, ranges: ranges, bias: function.module.bias) {
        image.fileBytes(at: $0, count: $1)
    }
}

/// Functions by every name they have, with the `.cold` parts of each.
func coldParts(of functions: [Function]) -> [UInt64: [Function]] {
    let byName = Dictionary(functions.flatMap { f in f.names.map { ($0, f) } }, uniquingKeysWith: { a, _ in a })
    var parts: [UInt64: [Function]] = [:]
    for f in functions {
        for name in f.names where name.hasSuffix(".cold") {
            if let parent = byName[String(name.dropLast(5))] { parts[parent.address, default: []].append(f) }
        }
    }
    return parts
}

@Suite struct JumpTablesOfSwitches {
    static let builds: [(String, String, [String])] = [
        ("gcc-pic", "/usr/bin/gcc", ["-fPIC", "-pie"]),
        ("gcc-nopic", "/usr/bin/gcc", ["-fno-PIC", "-no-pie"]),
    ] + (SwitchFixture.clang.map { clang in
        [("clang-pic", clang, ["-fPIC", "-pie"]), ("clang-nopic", clang, ["-fno-PIC", "-no-pie"])]
    } ?? [])

    @Test(arguments: builds.map(\.0))
    func everySwitchResolvesToTheCompilersCaseLabels(variant: String) throws {
        let (_, compiler, flags) = try #require(Self.builds.first { $0.0 == variant })
        let fixture = try SwitchFixture(compiler: compiler, flags: flags, variant: variant)
        let ran = try run(fixture.binary, [])
        #expect(ran.status == 0 && ran.stdout.contains("marks "), "\(ran)")
        let expected = try fixture.tableTargets()
        // Every shape became at least one table in this build, or the fixture no longer tests it.
        #expect(expected.count == 9, "tables only in \(expected.keys.sorted())")

        let image = try ProcessImage(file: fixture.binary)
        let decoder = try Decoder()
        let all = image.functions(matching: try NamePattern("^sw_"))
        let cold = coldParts(of: all)
        var jumps = 0
        for function in all where !function.name.hasSuffix(".cold") {
            let found = classifyIndirectJumps(function, parts: cold[function.address] ?? [], image: image, decoder: decoder)
            jumps += found.count
            var targets = Set<UInt64>()
            for (address, kind) in found {
                guard case .table(let t) = kind else {
                    Issue.record("\(variant) \(function.name) jmp at 0x\(String(address, radix: 16)): \(kind)")
                    continue
                }
                targets.formUnion(t)
            }
            #expect(targets == expected[function.name] ?? [], "\(variant) \(function.name)")
        }
        #expect(jumps >= expected.count)
    }
}

@Suite struct JumpTablesOfLibc {
    @Test func everyIndirectJumpOfLibcIsClassifiedWithoutTrapping() throws {
        let path = "/lib/x86_64-linux-gnu/libc.so.6"
        let image = try ProcessImage(file: path)
        let libc = try #require(image.modules.first)
        let functions = image.functions(in: libc)
        let cold = coldParts(of: functions)
        let decoder = try Decoder()
        var tables = 0, tailCalls = 0, targets = 0
        var unresolved: [String: [String]] = [:]
        var jumpAddresses = Set<UInt64>()
        var analysed: [Range<UInt64>] = []
        for function in functions where !function.names.contains(where: { $0.hasSuffix(".cold") }) {
            analysed += ([function] + (cold[function.address] ?? [])).map { $0.address..<$0.address &+ $0.size }
            for (address, kind) in classifyIndirectJumps(function, parts: cold[function.address] ?? [],
                                                         image: image, decoder: decoder) {
                guard jumpAddresses.insert(address).inserted else { continue }
                switch kind {
                case .table(let t): tables += 1; targets += t.count
                case .tailCall: tailCalls += 1
                case .unresolved(let why):
                    unresolved[why, default: []].append("\(function.name)+0x\(String(address - function.address, radix: 16))")
                }
            }
        }
        let unresolvedCount = unresolved.values.map(\.count).reduce(0, +)
        print("libc indirect jumps: \(jumpAddresses.count): \(tables) tables (\(targets) targets), "
              + "\(tailCalls) tail calls, \(unresolvedCount) unresolved")
        for (why, sites) in unresolved.sorted(by: { $0.value.count > $1.value.count }) {
            print("  \(sites.count) unresolved: \(why) — e.g. \(sites.prefix(3).joined(separator: ", "))")
        }
        // objdump's indirect jumps in the functions analysed: the same ones, found by another decoder.
        let objdump = try run("/usr/bin/objdump", ["-d", "-j", ".text", "--no-show-raw-insn", path], timeout: 300)
        let byObjdump = Set(objdump.stdoutLines.compactMap { line -> UInt64? in
            guard line.contains("\tjmp    *") || line.contains("\tnotrack jmp *"),
                  let address = UInt64(line.prefix { $0 != ":" }.trimmingCharacters(in: .whitespaces), radix: 16)
            else { return nil }
            return analysed.contains { $0.contains(address) } ? address : nil
        })
        print("objdump finds \(byObjdump.count) indirect jumps in those functions")
        #expect(jumpAddresses == byObjdump)
        #expect(tables >= 100)
        #expect(tailCalls >= 50)
    }
}

@Suite struct JumpTablesOfHandWrittenShapes {
    enum Expected { case table, tailCall, unresolved }

    static let expected: [String: Expected] = [
        "jt_shared": .table, "jt_reentry": .table, "jt_alias": .table, "jt_unchecked": .table,
        "jt_pointers": .table, "jt_below": .table,
        "jt_single": .table, "jt_outside": .unresolved, "jt_misaligned": .unresolved, "jt_got": .tailCall,
        "jt_argument": .tailCall, "jt_vtable": .tailCall, "jt_computed": .unresolved, "jt_call_result": .unresolved,
    ]

    @Test func eachShapeIsClassifiedAsItsLabelsSay() throws {
        let library = Paths.scratch.appendingPathComponent("jump_tables.so").path
        try Fixtures.tool("/usr/bin/gcc", ["-shared", "-nostdlib", "-Wl,-Bsymbolic", "-o", library,
                                            Paths.fixtures.appendingPathComponent("jump_tables.S").path])
        var labels: [String: UInt64] = [:]
        for line in try run("/usr/bin/nm", [library]).stdoutLines {
            let f = line.split(separator: " ")
            if f.count == 3, let address = UInt64(f[0], radix: 16) { labels[String(f[2])] = address }
        }
        let image = try ProcessImage(file: library)
        let decoder = try Decoder()
        let functions = image.functions(matching: try NamePattern("^jt_"))
        #expect(Set(functions.map(\.name)) == Set(Self.expected.keys))
        for function in functions {
            let found = classifyIndirectJumps(function, parts: [], image: image, decoder: decoder)
            #expect(found.count == 1, "\(function.name): \(found)")
            guard let kind = found.values.first, let want = Self.expected[function.name] else { continue }
            switch (want, kind) {
            case (.table, .table(let targets)):
                let cases = Set(labels.filter { $0.key.hasPrefix(function.name + "_case") }.values)
                #expect(targets == cases, "\(function.name)")
            case (.tailCall, .tailCall), (.unresolved, .unresolved):
                break
            default:
                Issue.record("\(function.name): expected \(want), found \(kind)")
            }
        }
    }

    /// Untrusted bytes: random programs made of dispatch pieces, with random tables, never trap,
    /// and whatever resolves lands on an instruction of the function.
    @Test func randomProgramsAndTablesNeverTrapAndTargetsStayInside() throws {
        let decoder = try Decoder()
        var random = SeededRandom(seed: 0x6a74)
        let start: UInt64 = 0x40_0000
        var tables = 0, jumps = 0
        for round in 0..<1500 {
            var code: [UInt8] = []
            var tablesAt: [(address: UInt64, relative: Bool)] = []
            for _ in 0..<(8 + Int(random.next() % 40)) {
                let piece = Self.pieces[Int(random.next() % UInt64(Self.pieces.count))]
                var bytes = piece.bytes
                let here = start + UInt64(code.count)
                switch piece.operand {
                case .none: break
                case .rel8: bytes.append(UInt8(truncatingIfNeeded: Int(random.next() % 64) - 24))
                case .ripTable:
                    let disp = UInt32(0x200 + random.next() % 0x600)
                    bytes += withUnsafeBytes(of: disp.littleEndian, Array.init)
                    tablesAt.append((here + UInt64(bytes.count) + UInt64(disp), true))
                case .absoluteTable:
                    let table = UInt32(truncatingIfNeeded: start + 0x200 + random.next() % 0x600)
                    bytes += withUnsafeBytes(of: table.littleEndian, Array.init)
                    tablesAt.append((UInt64(table), false))
                }
                code += bytes
            }
            let instructions = decoder.decodeAll(code, at: start)
            var memory = code + (code.count..<4096).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            // Most rounds, tables whose entries name instructions (now and then one byte off).
            if round % 4 != 0, !instructions.isEmpty {
                for table in tablesAt {
                    for i in 0..<8 {
                        let pick = instructions[Int(random.next() % UInt64(instructions.count))].address
                        let target = pick &+ (random.next() % 16 == 0 ? 1 : 0)
                        let size = table.relative ? 4 : 8
                        let value = table.relative ? target &- table.address : target
                        let at = Int(table.address &- start) + size * i
                        guard at >= code.count, at + size <= memory.count else { continue }
                        for b in 0..<size { memory[at + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
                    }
                }
            }
            let range = start..<start + UInt64(code.count)
            let found = JumpTables.classify(instructions: instructions, ranges: [range]) { address, count in
                guard address >= start, address < start + 4096, count >= 0 else { return nil }
                let from = Int(address - start)
                return Array(memory[from..<min(4096, from + count)])
            }
            jumps += found.count
            let starts = Set(instructions.map(\.address))
            for case .table(let targets) in found.values {
                tables += 1
                #expect(targets.allSatisfy { range.contains($0) && starts.contains($0) })
            }
        }
        print("random programs: \(jumps) indirect jumps, \(tables) resolved as tables")
        #expect(tables > 50)
    }

    enum PieceOperand { case none, rel8, ripTable, absoluteTable }

    /// Encodings the random programs are made of: the instructions of real dispatch sequences,
    /// bounds checks, copies, branches, calls, and things that end a block.
    static let pieces: [(bytes: [UInt8], operand: PieceOperand)] = [
        ([0x89, 0xff], .none), ([0x89, 0xf8], .none), ([0x89, 0xc1], .none), ([0x83, 0xff, 0x05], .none),
        ([0x83, 0xf8, 0x07], .none), ([0x83, 0xe7, 0x07], .none), ([0x31, 0xc0], .none), ([0x90], .none),
        ([0x77], .rel8), ([0x76], .rel8), ([0x72], .rel8), ([0x73], .rel8), ([0xeb], .rel8), ([0x74], .rel8),
        ([0x48, 0x8d, 0x15], .ripTable), ([0x48, 0x63, 0x04, 0xba], .none), ([0x48, 0x63, 0x0c, 0x82], .none),
        ([0x48, 0x01, 0xd0], .none), ([0x48, 0x01, 0xd1], .none), ([0xff, 0xe0], .none), ([0xff, 0xe1], .none),
        ([0xc3], .none), ([0xe8, 0x00, 0x10, 0x00, 0x00], .none), ([0xff, 0x24, 0xfd], .absoluteTable),
        ([0x48, 0x8b, 0x04, 0xc2], .none), ([0x48, 0x98], .none), ([0x0f, 0xb6, 0xc0], .none),
    ]
}

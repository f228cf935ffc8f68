@testable import Relocator
import Symbols

/// One instruction the oracle checks, and why it is in the corpus.
struct CorpusEntry: CustomStringConvertible {
    enum Origin: Hashable, CustomStringConvertible {
        /// The first instruction of a function.
        case entry
        /// The instruction after a call: where the callee returns to.
        case returnSite
        /// An instruction of a hand-written `case_<group>_<name>` function of relocator_cases.c.
        case handWritten(group: String)

        var description: String {
            switch self {
            case .entry: return "entry"
            case .returnSite: return "return site"
            case .handWritten(let group): return "hand-written \(group)"
            }
        }
    }

    let instruction: Instruction
    let origin: Origin
    let function: String
    let module: String
    let functionAddress: UInt64

    var isFunctionEntry: Bool { origin == .entry }

    var handWrittenGroup: String? {
        if case .handWritten(let group) = origin { return group }
        return nil
    }

    var description: String {
        let offset = instruction.address - functionAddress
        return "\(instruction) [\(hexBytes(instruction.bytes))] at 0x\(String(instruction.address, radix: 16)) "
            + "(\(module) \(function)+0x\(String(offset, radix: 16)), \(origin))"
    }
}

/// The instructions the oracle runs: the first instruction and every return site of every function in
/// the given modules, as the child has them in memory, and every instruction of the hand-written
/// cases; with what could not be decoded, so that nothing drops out of the corpus unsaid.
struct OracleCorpus {
    static let handWrittenPrefix = "case_"
    /// The hand-written group whose instructions Capstone 4 cannot decode (one per case function).
    static let undecodableGroup = "undecodable"

    private(set) var entries: [CorpusEntry] = []
    /// Functions whose first instruction does not decode, by module.
    private(set) var undecodableEntries: [String: Int] = [:]
    /// Functions whose linear sweep stopped at bytes that do not decode (data in text, or an
    /// instruction Capstone 4 does not know), by module: return sites past that point are missing.
    private(set) var partialSweeps: [String: Int] = [:]
    /// The `undecodable` cases, with the bytes Capstone refused.
    private(set) var undecodableCases: [String] = []
    /// Hand-written cases that do not decode to their end, or `undecodable` ones that now decode.
    private(set) var brokenCases: [String] = []
    private var seen = Set<UInt64>()

    init(modules: [Module], image: ProcessImage, tracee: OracleTracee, decoder: Decoder) throws {
        let mappings = try tracee.mappings()
        for module in modules {
            let code = try ModuleCode(module, mappings: mappings, tracee: tracee)
            for function in image.functions(in: module) {
                add(function, code: code, decoder: decoder)
            }
        }
    }

    private mutating func add(_ function: Function, code: ModuleCode, decoder: Decoder) {
        let size = Int(function.size)
        // A symbol without a size still has a first instruction: read enough for the longest.
        guard let bytes = code.bytes(at: function.address, count: max(size, 15)) else { return }
        if function.name.hasPrefix(Self.handWrittenPrefix) {
            addHandWritten(function, Array(bytes.prefix(size)), decoder: decoder)
            return
        }
        guard let first = decoder.decode(Array(bytes.prefix(15)), at: function.address) else {
            undecodableEntries[function.module.name, default: 0] += 1
            return
        }
        append(first, .entry, function)
        guard size > 0 else { return }
        let analysis = FunctionAnalysis(bytes: Array(bytes.prefix(size)), at: function.address, decoder: decoder)
        if !analysis.decodedToEnd { partialSweeps[function.module.name, default: 0] += 1 }
        let byAddress = Dictionary(analysis.instructions.map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
        for site in analysis.returnSites {
            if let insn = byAddress[site] { append(insn, .returnSite, function) }
        }
    }

    private mutating func addHandWritten(_ function: Function, _ bytes: [UInt8], decoder: Decoder) {
        let group = function.name.dropFirst(Self.handWrittenPrefix.count).split(separator: "_").first.map(String.init) ?? ""
        let instructions = decoder.decodeAll(bytes, at: function.address)
        let decodedTo = instructions.last.map { Int($0.next - function.address) } ?? 0
        if group == Self.undecodableGroup {
            if let decoded = instructions.first {
                brokenCases.append("\(function.name) decodes (as \(decoded)): move it to a group that runs")
            } else {
                undecodableCases.append("\(function.name) [\(hexBytes(bytes))]")
            }
            return
        }
        if decodedTo != bytes.count {
            brokenCases.append("\(function.name) decodes only to +0x\(String(decodedTo, radix: 16)) of \(bytes.count) bytes")
        }
        for insn in instructions { append(insn, .handWritten(group: group), function) }
    }

    private mutating func append(_ insn: Instruction, _ origin: CorpusEntry.Origin, _ function: Function) {
        guard seen.insert(insn.address).inserted else { return }
        entries.append(CorpusEntry(instruction: insn, origin: origin, function: function.name,
                                   module: function.module.name, functionAddress: function.address))
    }

    var summary: String {
        func list(_ d: [String: Int]) -> String {
            d.isEmpty ? "none" : d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        return ["  left out, where the Decoder (Capstone 4) stops:",
                "    functions whose first instruction does not decode: \(list(undecodableEntries))",
                "    functions whose sweep for return sites stopped early: \(list(partialSweeps))",
                "    hand-written undecodable cases: \(undecodableCases.joined(separator: "; "))"].joined(separator: "\n")
    }
}

/// A module's executable mappings, read from the child once.
struct ModuleCode {
    private let segments: [(start: UInt64, bytes: [UInt8])]

    init(_ module: Module, mappings: [Mapping], tracee: OracleTracee) throws {
        segments = try mappings.filter { $0.executable && $0.readable && module.contains($0.start) }.map { mapping in
            guard let bytes = tracee.read(mapping.start, count: Int(mapping.end - mapping.start)) else {
                throw TraceeError(operation: "read \(module.name)'s code", pid: tracee.pid, errno: 5)
            }
            return (mapping.start, bytes)
        }
    }

    /// Up to `count` bytes at `address`, cut at the end of its mapping; nil outside executable code.
    func bytes(at address: UInt64, count: Int) -> ArraySlice<UInt8>? {
        for segment in segments where address >= segment.start && address < segment.start + UInt64(segment.bytes.count) {
            let from = Int(address - segment.start)
            return segment.bytes[from..<min(segment.bytes.count, from + count)]
        }
        return nil
    }
}

import CElfutils

/// Where the C++ unwinder can enter a module's code other than by a call or a branch: the landing
/// pads (catch blocks and cleanups) named by the LSDA call-site tables that `.eh_frame` FDEs point at
/// with their 'L' augmentation. An inline window that covers one would be entered in its middle.
public struct LandingPadTable: Sendable, Equatable {
    /// Every landing pad, runtime addresses, sorted, no duplicates.
    public let pads: [UInt64]
    /// The code ranges whose FDE names an LSDA, whether or not its call sites have landing pads.
    public let rangesWithLSDA: [Range<UInt64>]
    /// Code ranges whose LSDA could not be read to its end: pads there may be missing.
    public let incompleteRanges: [Range<UInt64>]
    /// False when the file or part of its `.eh_frame` could not be read (an unknown CIE, a truncated
    /// record): pads anywhere may be missing. `.eh_frame` is found by its section header.
    public let readToEnd: Bool
    /// Every FDE's code range, sorted by start: the extent of every function the compiler emitted
    /// unwind information for, named by a symbol or not (a stripped binary's static functions).
    public let functionRanges: [Range<UInt64>]

    public init(pads: [UInt64], rangesWithLSDA: [Range<UInt64>], incompleteRanges: [Range<UInt64>], readToEnd: Bool,
                functionRanges: [Range<UInt64>] = []) {
        self.pads = pads
        self.rangesWithLSDA = rangesWithLSDA
        self.incompleteRanges = incompleteRanges
        self.readToEnd = readToEnd
        self.functionRanges = functionRanges
    }

    public static let empty = LandingPadTable(pads: [], rangesWithLSDA: [], incompleteRanges: [], readToEnd: true)
    /// Nothing could be read: pads anywhere may be missing.
    static let unknown = LandingPadTable(pads: [], rangesWithLSDA: [], incompleteRanges: [], readToEnd: false)

    /// The FDE range that starts at `address`, if one does.
    public func functionRange(startingAt address: UInt64) -> Range<UInt64>? {
        let i = firstRange(atOrAfter: address)
        return i < functionRanges.count && functionRanges[i].lowerBound == address ? functionRanges[i] : nil
    }

    /// Where the next FDE range after `address` starts.
    public func nextFunctionStart(after address: UInt64) -> UInt64? {
        let i = firstRange(atOrAfter: address &+ 1)
        return i < functionRanges.count ? functionRanges[i].lowerBound : nil
    }

    private func firstRange(atOrAfter address: UInt64) -> Int {
        var low = 0, high = functionRanges.count
        while low < high {
            let mid = (low + high) / 2
            if functionRanges[mid].lowerBound < address { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The pads inside `range`.
    public func pads(in range: Range<UInt64>) -> [UInt64] {
        var low = 0, high = pads.count
        while low < high {
            let mid = (low + high) / 2
            if pads[mid] < range.lowerBound { low = mid + 1 } else { high = mid }
        }
        return Array(pads[low...].prefix { $0 < range.upperBound })
    }

    /// Whether every landing pad inside `range` is known.
    public func isComplete(in range: Range<UInt64>) -> Bool {
        readToEnd && !incompleteRanges.contains { $0.overlaps(range) }
    }
}

/// Reads a module's landing pads from its main ELF file, the one the runtime unwinder reads.
/// Everything in these sections is untrusted: every read is bounded and every sum wraps, so a
/// malformed table yields what could be read and the rest is reported incomplete, never a trap.
enum LandingPads {
    static func read(_ mod: OpaquePointer) -> LandingPadTable {
        var bias: GElf_Addr = 0
        guard let elf = dwfl_module_getelf(mod, &bias) else { return .unknown }
        // A module with no unwind tables has nothing for the unwinder to land on; one without section
        // headers may have them, unfound.
        guard let ehFrame = section(named: ".eh_frame", in: elf) else {
            return elf_nextscn(elf, nil) == nil ? .unknown : .empty
        }
        var reader = EHFrameReader(frame: ehFrame, bias: bias, exceptTable: section(named: ".gcc_except_table", in: elf)) {
            ELFBytes.read(mod, address: $0, count: $1)
        }
        reader.readAll()
        return LandingPadTable(pads: Array(Set(reader.pads)).sorted(), rangesWithLSDA: reader.rangesWithLSDA,
                               incompleteRanges: reader.incomplete, readToEnd: reader.readToEnd,
                               functionRanges: reader.functionRanges.sorted { $0.lowerBound < $1.lowerBound })
    }

    static func section(named wanted: String, in elf: OpaquePointer) -> SectionBytes? {
        var names = 0
        guard elf_getshdrstrndx(elf, &names) == 0 else { return nil }
        var scn = elf_nextscn(elf, nil)
        while let section = scn {
            scn = elf_nextscn(elf, section)
            var header = GElf_Shdr()
            guard gelf_getshdr(section, &header) != nil, header.sh_type != SHT_NOBITS,
                  let name = elf_strptr(elf, names, Int(header.sh_name)), String(cString: name) == wanted,
                  let data = elf_rawdata(section, nil), let buffer = data.pointee.d_buf
            else { continue }
            let raw = UnsafeRawBufferPointer(start: buffer, count: Int(data.pointee.d_size))
            return SectionBytes(address: header.sh_addr, bytes: Array(raw))
        }
        return nil
    }
}

/// A section's bytes with its link-time address.
struct SectionBytes {
    let address: UInt64
    let bytes: [UInt8]
}

/// DW_EH_PE_* pointer encodings: the low nibble is the value's format, bits 4–6 what it is relative
/// to, bit 7 an indirection.
enum PointerEncoding {
    static let omit: UInt8 = 0xff
    static let aligned: UInt8 = 0x50
    static let indirect: UInt8 = 0x80
    static let pcrel: UInt8 = 0x10
    static let textrel: UInt8 = 0x20
    static let datarel: UInt8 = 0x30
    static let funcrel: UInt8 = 0x40
}

/// A bounded little-endian cursor over section bytes. Every read returns nil past `limit`.
struct EHCursor {
    let section: SectionBytes
    var offset: Int
    var limit: Int

    init(_ section: SectionBytes, offset: Int, limit: Int? = nil) {
        self.section = section
        self.offset = offset
        self.limit = min(limit ?? section.bytes.count, section.bytes.count)
    }

    var linkAddress: UInt64 { section.address &+ UInt64(truncatingIfNeeded: offset) }
    var atEnd: Bool { offset >= limit }
    /// Bytes left before `limit`; 0 for a cursor that is outside its section.
    var remaining: Int { offset >= 0 && offset < limit ? limit - offset : 0 }

    mutating func byte() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { offset += 1 }
        return section.bytes[offset]
    }

    mutating func unsigned(_ size: Int) -> UInt64? {
        guard size <= remaining else { return nil }
        defer { offset += size }
        return littleEndianWord(section.bytes[offset..<offset + size])
    }

    mutating func signed(_ size: Int) -> UInt64? {
        guard let raw = unsigned(size) else { return nil }
        let shift = UInt64(64 - 8 * size)
        return UInt64(bitPattern: Int64(bitPattern: raw << shift) >> shift)
    }

    mutating func uleb() -> UInt64? { leb128(signed: false) }
    mutating func sleb() -> UInt64? { leb128(signed: true) }

    /// Bits past the 64th are dropped rather than trusted; an unterminated number is unreadable.
    private mutating func leb128(signed: Bool) -> UInt64? {
        var value: UInt64 = 0, shift: UInt64 = 0
        while let b = byte() {
            if shift < 64 { value |= UInt64(b & 0x7f) << shift }
            shift += 7
            if b & 0x80 == 0 {
                if signed, shift < 64, b & 0x40 != 0 { value |= ~0 << shift }
                return value
            }
        }
        return nil
    }

    mutating func cString() -> [UInt8]? {
        var out: [UInt8] = []
        while let b = byte() {
            if b == 0 { return out }
            out.append(b)
        }
        return nil
    }

    /// A record's length (extended when 0xffffffff), after which `limit` is the record's end: the
    /// size of its CIE id or pointer, 0 for the terminator, nil when truncated.
    mutating func recordHeader() -> Int? {
        guard var length = unsigned(4) else { return nil }
        if length == 0 { return 0 }
        var idSize = 4
        if length == 0xffff_ffff {
            guard let long = unsigned(8) else { return nil }
            length = long
            idSize = 8
        }
        guard length <= UInt64(remaining) else { return nil }
        limit = offset + Int(length)
        return idSize
    }

    mutating func skip(_ count: UInt64) -> Bool {
        guard count <= UInt64(remaining) else { return false }
        offset += Int(count)
        return true
    }
}

/// What a pointer's relative encodings are relative to, as the unwinder sees it at run time.
struct EncodingBases {
    /// Link-time to runtime (the module's load bias), for a field's own address (pcrel).
    let bias: UInt64
    /// Added to an absolute value: the bias for a pointer the dynamic linker relocates, 0 for an offset.
    let absolute: UInt64
    /// The start of the FDE's code, for DW_EH_PE_funcrel; nil where libgcc has none (FDE fields).
    let function: UInt64?
    /// Reads the 8-byte pointer at a runtime address, for DW_EH_PE_indirect.
    let load: (UInt64) -> UInt64?
}

extension EHCursor {
    /// A pointer in `encoding`, as libgcc's read_encoded_value_with_base computes it: a raw zero stays
    /// zero (no LSDA, no landing pad), pcrel is relative to the field's runtime address, textrel and
    /// datarel are relative to 0 on x86-64 Linux (libgcc's tbase and dbase are null there), an
    /// absolute value gets `bases.absolute`. nil when unreadable or unsupported.
    mutating func pointer(_ encoding: UInt8, bases: EncodingBases, dereference: Bool = true) -> UInt64? {
        if encoding == PointerEncoding.aligned {
            let misalignment = Int(linkAddress & 7)
            guard skip(UInt64((8 - misalignment) & 7)), let value = unsigned(8) else { return nil }
            return value == 0 ? 0 : value &+ bases.absolute
        }
        let field = linkAddress &+ bases.bias
        guard let raw = value(format: encoding & 0x0f) else { return nil }
        guard raw != 0 else { return 0 }
        var result: UInt64
        switch encoding & 0x70 {
        case 0: result = raw &+ bases.absolute
        case PointerEncoding.pcrel: result = raw &+ field
        case PointerEncoding.textrel, PointerEncoding.datarel: result = raw
        case PointerEncoding.funcrel:
            guard let function = bases.function else { return nil }
            result = raw &+ function
        default: return nil
        }
        if encoding & PointerEncoding.indirect != 0, dereference {
            guard let loaded = bases.load(result) else { return nil }
            result = loaded
        }
        return result
    }

    /// The value alone, in the format of the encoding's low nibble.
    mutating func value(format: UInt8) -> UInt64? {
        switch format {
        case 0x00, 0x04, 0x0c: return unsigned(8)
        case 0x01: return uleb()
        case 0x09: return sleb()
        case 0x02: return unsigned(2)
        case 0x03: return unsigned(4)
        case 0x0a: return signed(2)
        case 0x0b: return signed(4)
        default: return nil
        }
    }
}

/// What an FDE needs from its CIE: how its pointers are encoded and whether it has an LSDA.
struct CommonInformation {
    var fdeEncoding: UInt8 = 0
    var lsdaEncoding: UInt8 = PointerEncoding.omit
    var hasAugmentationData = false
}

/// Walks `.eh_frame` record by record, and each FDE's LSDA call-site table.
struct EHFrameReader {
    let frame: SectionBytes
    let bias: UInt64
    let exceptTable: SectionBytes?
    /// The module's file bytes at a runtime address, for data outside the two sections read whole.
    let fileBytes: (UInt64, Int) -> [UInt8]?

    private(set) var pads: [UInt64] = []
    private(set) var rangesWithLSDA: [Range<UInt64>] = []
    private(set) var functionRanges: [Range<UInt64>] = []
    private(set) var incomplete: [Range<UInt64>] = []
    private(set) var readToEnd = true
    /// Parsed CIEs by section offset; nil for one that cannot be understood.
    private var cies: [Int: CommonInformation?] = [:]

    init(frame: SectionBytes, bias: UInt64, exceptTable: SectionBytes?, fileBytes: @escaping (UInt64, Int) -> [UInt8]?) {
        self.frame = frame
        self.bias = bias
        self.exceptTable = exceptTable
        self.fileBytes = fileBytes
    }

    private var fdeBases: EncodingBases {
        let bias = self.bias, fileBytes = self.fileBytes
        return EncodingBases(bias: bias, absolute: bias, function: nil) { address in
            // The slot holds a link-time pointer that the dynamic linker relocates by the bias.
            guard let bytes = fileBytes(address, 8), bytes.count == 8 else { return nil }
            let value = bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return value == 0 ? nil : value &+ bias
        }
    }

    mutating func readAll() {
        var offset = 0
        while offset < frame.bytes.count {
            var cursor = EHCursor(frame, offset: offset)
            guard let idSize = cursor.recordHeader() else { readToEnd = false; return }
            // A zero length ends the table, as libgcc reads it.
            if idSize == 0 { return }
            let recordStart = cursor.offset, end = cursor.limit
            guard let id = cursor.unsigned(idSize) else { readToEnd = false; return }
            // An FDE's CIE pointer counts back from the pointer's own position; 0 marks a CIE.
            if id != 0, id > UInt64(recordStart) || !readFDE(&cursor, cieOffset: recordStart - Int(id)) {
                readToEnd = false
            }
            offset = end
        }
    }

    /// False when the FDE's CIE or its own fields cannot be read: then its range is not even known.
    private mutating func readFDE(_ cursor: inout EHCursor, cieOffset: Int) -> Bool {
        guard let cie = commonInformation(at: cieOffset) else { return false }
        guard let begin = cursor.pointer(cie.fdeEncoding, bases: fdeBases),
              let size = cursor.value(format: cie.fdeEncoding & 0x0f)
        else { return false }
        // A zero start is an FDE the linker discarded with its code.
        guard begin != 0 else { return true }
        let range = begin..<(begin &+ size < begin ? UInt64.max : begin &+ size)
        if size > 0 { functionRanges.append(range) }
        guard cie.lsdaEncoding != PointerEncoding.omit, cie.hasAugmentationData else { return true }
        guard let augmentationSize = cursor.uleb() else { return false }
        var augmentation = cursor
        augmentation.limit = min(cursor.limit, cursor.offset &+ Int(clamping: augmentationSize))
        guard let lsda = augmentation.pointer(cie.lsdaEncoding, bases: fdeBases) else {
            incomplete.append(range)
            return true
        }
        guard lsda != 0 else { return true }
        rangesWithLSDA.append(range)
        if !readCallSites(lsda: lsda, regionStart: begin) { incomplete.append(range) }
        return true
    }

    private mutating func commonInformation(at offset: Int) -> CommonInformation? {
        if let known = cies[offset] { return known }
        let parsed = Self.parseCIE(frame, at: offset, bases: fdeBases)
        cies[offset] = .some(parsed)
        return parsed
    }

    /// A CIE's augmentation: 'z' (a length, so the data can be skipped), 'R' (the FDE pointer
    /// encoding), 'L' (the LSDA pointer encoding), 'P' (a personality routine, skipped), 'S' (a
    /// signal frame) and 'B' / 'G' (AArch64 marks with no data). An unknown letter makes the CIE's
    /// FDEs unreadable: its data may hold an 'R' or 'L' after it.
    static func parseCIE(_ frame: SectionBytes, at offset: Int, bases: EncodingBases) -> CommonInformation? {
        var cursor = EHCursor(frame, offset: offset)
        guard let idSize = cursor.recordHeader(), idSize > 0, cursor.unsigned(idSize) == 0,
              let version = cursor.byte(), [1, 3, 4].contains(version), let augmentation = cursor.cString()
        else { return nil }
        var cie = CommonInformation()
        // GCC 2's "eh" carried a pointer before the alignment factors.
        if augmentation.starts(with: Array("eh".utf8)) { guard cursor.skip(8) else { return nil } }
        if version == 4 { guard cursor.skip(2) else { return nil } }
        guard cursor.uleb() != nil, cursor.sleb() != nil else { return nil }
        guard (version == 1 ? cursor.byte().map(UInt64.init) : cursor.uleb()) != nil else { return nil }
        guard augmentation.first == UInt8(ascii: "z") else {
            return augmentation.isEmpty || augmentation == Array("eh".utf8) ? cie : nil
        }
        guard let dataSize = cursor.uleb() else { return nil }
        cie.hasAugmentationData = true
        cursor.limit = min(cursor.limit, cursor.offset &+ Int(clamping: dataSize))
        for letter in augmentation.dropFirst() {
            switch letter {
            case UInt8(ascii: "L"):
                guard let encoding = cursor.byte() else { return nil }
                cie.lsdaEncoding = encoding
            case UInt8(ascii: "R"):
                guard let encoding = cursor.byte() else { return nil }
                cie.fdeEncoding = encoding
            case UInt8(ascii: "P"):
                guard let encoding = cursor.byte(),
                      cursor.pointer(encoding, bases: bases, dereference: false) != nil
                else { return nil }
            case UInt8(ascii: "S"), UInt8(ascii: "B"), UInt8(ascii: "G"):
                break
            default:
                return nil
            }
        }
        return cie
    }

    /// The LSDA header (LPStart, TType, call-site encoding) and its call-site table, as the GCC
    /// personality routine reads them: each entry's landing pad is LPStart plus its offset, none when
    /// the offset is zero. False when the table could not be read to its end.
    private mutating func readCallSites(lsda: UInt64, regionStart: UInt64) -> Bool {
        guard var cursor = cursor(atRuntime: lsda) else { return false }
        let header = EncodingBases(bias: bias, absolute: bias, function: regionStart, load: fdeBases.load)
        guard let lpStartEncoding = cursor.byte() else { return false }
        var lpStart = regionStart
        if lpStartEncoding != PointerEncoding.omit {
            guard let start = cursor.pointer(lpStartEncoding, bases: header) else { return false }
            lpStart = start
        }
        guard let typeEncoding = cursor.byte() else { return false }
        if typeEncoding != PointerEncoding.omit { guard cursor.uleb() != nil else { return false } }
        guard let callSiteEncoding = cursor.byte(), let tableSize = cursor.uleb(),
              tableSize <= UInt64(cursor.remaining)
        else { return false }
        cursor.limit = cursor.offset + Int(tableSize)
        // libgcc reads call-site fields with a base of 0: only pcrel and indirect still apply.
        let entries = EncodingBases(bias: bias, absolute: 0, function: 0, load: fdeBases.load)
        while !cursor.atEnd {
            guard cursor.pointer(callSiteEncoding, bases: entries) != nil,
                  cursor.pointer(callSiteEncoding, bases: entries) != nil,
                  let landingPad = cursor.pointer(callSiteEncoding, bases: entries),
                  cursor.uleb() != nil
            else { return false }
            if landingPad != 0 { pads.append(lpStart &+ landingPad) }
        }
        return true
    }

    /// The bytes at a runtime address: inside `.gcc_except_table` when there, else as the file has them.
    private func cursor(atRuntime address: UInt64) -> EHCursor? {
        let link = address &- bias
        if let table = exceptTable, link >= table.address, link &- table.address < UInt64(table.bytes.count) {
            return EHCursor(table, offset: Int(link &- table.address))
        }
        guard let bytes = fileBytes(address, 1 << 16), !bytes.isEmpty else { return nil }
        return EHCursor(SectionBytes(address: link, bytes: bytes), offset: 0)
    }
}

import Glibc
import Relocator
import Symbols

/// What a pad captures for a function, from its DWARF signature: the registers the arguments (or
/// results) are in, and the memory a value points at (C strings, Go strings and slices, arguments on
/// the stack), copied fault-safely at the moment of the call — never read later.
struct CapturePlan {
    /// At most this many bytes of one pointed-to value fit a record.
    static let maxCopy = 1024
    let maxString: Int
    /// Whether pads may make system calls (process_vm_readv): not under a seccomp filter.
    let copiesMemory: Bool
    let go: GoRuntime?
    /// Whether any renderer shows values: a summary needs none, and then a record is its header (and
    /// the goroutine's fields): one slot, no copy of memory in the pad.
    var capturesValues = true
    /// `--caller`: an entry records its return address, which nstrace cannot read later (the stack
    /// has moved on by the time the record is read).
    var capturesReturnAddress = false
    /// `--deref`: a pointer to a struct, union or scalar has its target copied too.
    var derefs = false

    func entry(_ signature: Signature?) -> [Capture] {
        var captures: [Capture] = goCaptures()
        if capturesReturnAddress { captures.append(.stackWord(0)) }
        guard capturesValues else { return captures }
        for parameter in signature?.parameters ?? [] { add(parameter, to: &captures) }
        return captures
    }

    func exit(_ signature: Signature?) -> [Capture] {
        var captures: [Capture] = goCaptures()
        guard capturesValues else { return captures }
        for result in signature?.results ?? [] { add(result, to: &captures) }
        return captures
    }

    /// The bytes a record may take (its header included): what a bucket's margin allows.
    static let maxRecordBytes = 64 * RingGeometry.slotSize

    /// How many of `wanted` bytes a memory capture may copy so that the record still fits; 0: none.
    private static func room(in captures: [Capture], for wanted: Int) -> Int {
        let used = RecordLayout.offsets(for: captures).size
        let free = (maxRecordBytes - used - 8) & ~7
        return max(0, min(wanted, free))
    }

    /// A tail-callee's return, read with the tail-caller's signature (whatever it is): every register
    /// a result can be in.
    func watchedReturn() -> [Capture] {
        capturesValues ? goCaptures() + [.register(.rax), .register(.rdx), .xmm(0), .xmm(1)] : goCaptures()
    }

    /// In Go code: the goroutine's g (R14), its id and the top of its stack, which CallContext needs.
    private func goCaptures() -> [Capture] {
        guard let go, let goid = Int32(exactly: go.goidOffset), let high = Int32(exactly: go.stackHighOffset) else { return [] }
        return [.register(.r14), .goroutineField(goid), .goroutineField(high)]
    }

    private func add(_ parameter: Parameter, to captures: inout [Capture]) {
        let type = parameter.type
        let size = min(max(type.byteSize, 1), 4096)
        func addRegister(_ r: Register) {
            let capture: Capture
            if let gpr = r.gpr { capture = .register(gpr) } else if case .xmm(let i) = r, (0..<16).contains(i) { capture = .xmm(i) } else { return }
            if !captures.contains(capture) { captures.append(capture) }
        }
        func addMemory(_ m: MemoryCapture) {
            guard copiesMemory, !captures.contains(.memory(m)) else { return }
            // A value too large for what is left of the record is not copied: it reads as unavailable
            // (`?`), never as other bytes.
            let fits = CapturePlan.room(in: captures, for: m.maxBytes)
            guard fits == m.maxBytes || (fits > 0 && m.base != .stackPointer) else { return }
            captures.append(.memory(MemoryCapture(base: m.base, offset: m.offset, maxBytes: fits, length: m.length)))
        }
        let copy = min(maxString + 1, CapturePlan.maxCopy)
        // `--deref`: the pointee's bytes, as the call (or return) had them.
        let pointee = derefs && type.kind == .pointer ? type.pointee.map { min(max($0.byteSize, 1), CapturePlan.maxCopy) } : nil
        switch parameter.location {
        case .register(.st(0)):
            if !captures.contains(.x87(count: 1)) { captures.append(.x87(count: 1)) }
        case .pieces(let pieces) where pieces.first?.register == .st(0):
            if !captures.contains(.x87(count: 2)) { captures.append(.x87(count: 2)) }
        case .indirect(let r):
            // A result in memory: the address comes back in rax, the bytes are copied at the return.
            guard let gpr = r.gpr else { return }
            addRegister(r)
            addMemory(MemoryCapture(base: .register(gpr), maxBytes: min(size, CapturePlan.maxCopy)))
        case .register(let r):
            addRegister(r)
            if type.kind == .cString, let gpr = r.gpr { addMemory(MemoryCapture(base: .register(gpr), maxBytes: copy)) }
            if let pointee, let gpr = r.gpr { addMemory(MemoryCapture(base: .register(gpr), maxBytes: pointee)) }
        case .pieces(let pieces):
            pieces.forEach { addRegister($0.register) }
            let registers = pieces.compactMap { $0.register.gpr }
            if type.kind == .goString, registers.count >= 2 {
                addMemory(MemoryCapture(base: .register(registers[0]), maxBytes: min(maxString, CapturePlan.maxCopy), length: registers[1]))
            } else if type.kind == .goSlice, let pointer = registers.first, let element = type.element, element.byteSize > 0 {
                addMemory(MemoryCapture(base: .register(pointer), maxBytes: min(8 * element.byteSize, CapturePlan.maxCopy)))
            }
        case .stack(let offset):
            guard let offset32 = Int32(exactly: offset) else { return }
            addMemory(MemoryCapture(base: .stackPointer, offset: offset32, maxBytes: size))
            if type.kind == .cString { addMemory(MemoryCapture(base: .stackWord(offset32), maxBytes: copy)) }
            if let pointee { addMemory(MemoryCapture(base: .stackWord(offset32), maxBytes: pointee)) }
        case .unknown:
            break
        }
    }
}

/// The values one record holds, laid out as its probe's captures say, read like a stopped thread's.
struct RecordValues: ValueSource {
    /// Its probe, which says how the record is laid out (one reference, not two arrays, to copy).
    let probe: InlineProbe
    let record: EventRing.Record

    var captures: [Capture] { probe.captures }
    var offsets: [Int] { probe.offsets }

    var stackPointer: UInt64 { record.stackPointer }

    private func index(of capture: Capture) -> Int? { captures.firstIndex(of: capture) }

    func word(of capture: Capture) -> UInt64? {
        guard let i = index(of: capture) else { return nil }
        return record.u64(offsets[i])
    }

    mutating func registerBytes(_ register: Register) -> [UInt8] {
        if case .st(let n) = register {
            guard let i = captures.firstIndex(where: { if case .x87(let count) = $0 { return n < count }; return false })
            else { return [] }
            let start = offsets[i] + 16 * n
            guard start >= 0, start + 16 <= record.bytes.count else { return [] }
            return Array(record.bytes[start..<start + 16])
        }
        if case .xmm(let n) = register {
            guard let i = index(of: .xmm(n)) else { return [] }
            return (0..<16).map { record.bytes.count > offsets[i] + $0 ? record.bytes[offsets[i] + $0] : 0 }
        }
        guard let gpr = register.gpr, let value = word(of: .register(gpr)) else { return [] }
        return withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// A memory capture's bytes (borrowed from the record) and the address they were copied from.
    private func copy(_ i: Int, _ m: MemoryCapture) -> (address: UInt64, bytes: UnsafeRawBufferPointer)? {
        let source: UInt64?
        switch m.base {
        case .register(let r): source = word(of: .register(r))
        case .stackPointer: source = record.stackPointer
        case .stackWord(let o): source = stackWord(at: record.stackPointer &+ UInt64(bitPattern: Int64(o)))
        }
        guard let base = source else { return nil }
        let copied = Int64(bitPattern: record.u64(offsets[i]))
        let start = offsets[i] &+ 8
        guard copied > 0, start >= 0, start <= record.bytes.count else { return nil }
        let count = Int(min(UInt64(copied), UInt64(clamping: m.maxBytes), UInt64(record.bytes.count - start)))
        return (base &+ UInt64(bitPattern: Int64(m.offset)), UnsafeRawBufferPointer(rebasing: record.bytes[start..<start + count]))
    }

    /// The first copy made from exactly `address`.
    private func copy(at address: UInt64) -> UnsafeRawBufferPointer? {
        for (i, capture) in captures.enumerated() {
            guard case .memory(let m) = capture, let copy = copy(i, m), copy.address == address else { continue }
            return copy.bytes
        }
        return nil
    }

    /// A word of the copied stack arguments.
    private func stackWord(at address: UInt64) -> UInt64? {
        for (i, capture) in captures.enumerated() {
            guard case .memory(let m) = capture, case .stackPointer = m.base else { continue }
            let base = record.stackPointer &+ UInt64(bitPattern: Int64(m.offset))
            let copied = Int64(bitPattern: record.u64(offsets[i]))
            guard address >= base, copied >= 8, address &- base <= UInt64(copied - 8) else { continue }
            return record.u64(offsets[i] + 8 + Int(address &- base))
        }
        return nil
    }

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        for (i, capture) in captures.enumerated() {
            guard case .memory(let m) = capture, let copy = copy(i, m), address >= copy.address else { continue }
            let skip = address &- copy.address
            guard skip <= UInt64(copy.bytes.count), UInt64(copy.bytes.count) - skip >= UInt64(count) else { continue }
            return Array(copy.bytes[Int(skip)..<Int(skip) + count])
        }
        return nil
    }

    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)? {
        guard let (bytes, truncated) = stringBytes(at: address, limit: limit) else { return nil }
        return (Array(bytes), truncated)
    }

    /// A C string the pad copied from `address`, up to its NUL and at most `limit` bytes.
    private func stringBytes(at address: UInt64, limit: Int) -> (UnsafeRawBufferPointer, truncated: Bool)? {
        copy(at: address).map { RecordValues.terminated($0, limit: limit) }
    }

    /// A copied C string's bytes before its NUL, at most `limit` of them; truncated when there were more
    /// or the copy holds no NUL.
    static func terminated(_ copy: UnsafeRawBufferPointer, limit: Int) -> (UnsafeRawBufferPointer, truncated: Bool) {
        let length = copy.firstIndex(of: 0) ?? copy.count
        let shown = min(length, max(0, limit))
        return (UnsafeRawBufferPointer(rebasing: copy[0..<shown]), length > shown || length == copy.count)
    }
}

/// How one value is read from a probe's records, worked out once per probe: a plain description (no
/// references), so that reading a record's values copies nothing but the values.
enum ValueSlot {
    /// A number, pointer or char in a general register: the word at `offset`.
    case scalar(offset: Int, kind: ValueType.Kind, byteSize: Int)
    /// A float or double in an XMM register.
    case float(offset: Int, byteSize: Int)
    /// A C string: the pointer's word at `offset`, the pad's copy of the bytes at `copy` (its count,
    /// then the bytes; at most `maxBytes`), nil when the pad copies nothing.
    case cString(offset: Int, copy: Int?, maxBytes: Int)
    /// Anything else: `ArgumentReader` reads the parameter at `index` of the signature's list.
    case other(index: Int)

    /// The slots of `parameters` for records laid out as `captures` and `offsets` say.
    static func plan(_ parameters: [Parameter], captures: [Capture], offsets: [Int]) -> [ValueSlot] {
        parameters.enumerated().map { index, parameter in
            guard case .register(let register) = parameter.location else { return .other(index: index) }
            let type = parameter.type
            if let gpr = register.gpr, let i = captures.firstIndex(of: .register(gpr)) {
                if type.kind == .cString {
                    let copy = captures.firstIndex { if case .memory(let m) = $0, m.base == .register(gpr), m.offset == 0 { return true }; return false }
                    var maxBytes = 0
                    if let copy, case .memory(let m) = captures[copy] { maxBytes = m.maxBytes }
                    return .cString(offset: offsets[i], copy: copy.map { offsets[$0] }, maxBytes: maxBytes)
                }
                // A pointer whose target the pad copied (`--deref`) is read with it, by ArgumentReader.
                let followed = type.kind == .pointer && captures.contains {
                    if case .memory(let m) = $0, m.base == .register(gpr) { return true }; return false
                }
                if type.scalar(0) != nil, type.kind != .float, type.byteSize <= 8, !followed {
                    return .scalar(offset: offsets[i], kind: type.kind, byteSize: type.byteSize)
                }
            } else if case .xmm(let n) = register, type.kind == .float, type.byteSize <= 8, let i = captures.firstIndex(of: .xmm(n)) {
                return .float(offset: offsets[i], byteSize: type.byteSize)
            }
            return .other(index: index)
        }
    }

    /// The slots of `parameters` (or results) read from a stop slot's general registers, at offsets 8 ×
    /// their number (`SlotRegisters.word(at:)`): numbers, pointers and chars in general registers; any
    /// other value (a float, a string in memory, a pointer `--deref` follows) is `.other`.
    static func plan(registers parameters: [Parameter], derefs: Bool) -> [ValueSlot] {
        parameters.enumerated().map { index, parameter in
            let type = parameter.type
            guard case .register(let register) = parameter.location, let gpr = register.gpr, gpr != .rip,
                  type.scalar(0) != nil, type.kind != .float, type.byteSize <= 8,
                  !(derefs && type.kind == .pointer) else { return .other(index: index) }
            return .scalar(offset: 8 * gpr.rawValue, kind: type.kind, byteSize: type.byteSize)
        }
    }
}

/// How a trap pad's stop shows a function's values straight from its stop slot's words, when every
/// one of them is a word of a general register (`inPlace`); other functions' stops read theirs as any
/// stop does.
struct SlotValuePlan {
    let arguments: [ValueSlot]
    /// Of a function with one result; empty when it has none.
    let result: [ValueSlot]
    let inPlace: Bool

    init(_ signature: Signature?, derefs: Bool) {
        let results = signature?.results ?? []
        arguments = ValueSlot.plan(registers: signature?.parameters ?? [], derefs: derefs)
        result = ValueSlot.plan(registers: results, derefs: derefs)
        inPlace = results.count <= 1 && !(arguments + result).contains { if case .other = $0 { return true }; return false }
    }

    /// Encodes `slots`, all `.scalar`, from `registers`.
    static func encode(_ slots: [ValueSlot], from registers: SlotRegisters, into arena: inout ValueArena) -> Int {
        for slot in slots {
            if case .scalar(let offset, let kind, let byteSize) = slot {
                arena.appendScalar(registers.word(at: offset), kind: kind, byteSize: byteSize)
            } else {
                arena.appendUnavailable()
            }
        }
        return slots.count
    }
}

extension RecordValues {
    /// Encodes values straight from the record into `arena`, as `slots` (made for these parameters and
    /// this record layout) say: numbers, pointers, floats and C strings read in place, with no array
    /// made; other kinds through `ArgumentReader`. The values are the same either way.
    func encode(_ slots: [ValueSlot], of parameters: @autoclosure () -> [Parameter], maxString: Int, into arena: inout ValueArena) -> Int {
        for slot in slots {
            switch slot {
            case .scalar(let offset, let kind, let byteSize):
                arena.appendScalar(record.u64(offset), kind: kind, byteSize: byteSize)
            case .float(let offset, let byteSize):
                arena.appendScalar(record.u64(offset), kind: .float, byteSize: byteSize)
            case .cString(let offset, let copy, let maxBytes):
                let address = record.u64(offset)
                if address == 0 {
                    arena.appendPointer(0)
                } else if let copy, let (text, truncated) = copied(at: copy, maxBytes: maxBytes, limit: maxString) {
                    arena.appendString(text, truncated: truncated, address: address)
                } else {
                    arena.appendBadString(address: address)
                }
            case .other(let index):
                let parameters = parameters()
                guard index < parameters.count else { arena.appendUnavailable(); continue }
                var reader = ArgumentReader(self, maxString: maxString, deref: probe.derefs)
                arena.append(reader.value(of: parameters[index].type, at: parameters[index].location))
            }
        }
        return slots.count
    }

    /// The C string a pad copied at `offset` (a count, then the bytes), up to its NUL and at most `limit`.
    private func copied(at offset: Int, maxBytes: Int, limit: Int) -> (UnsafeRawBufferPointer, truncated: Bool)? {
        let count = Int64(bitPattern: record.u64(offset))
        let start = offset &+ 8
        guard count > 0, start >= 0, start <= record.bytes.count else { return nil }
        let available = Int(min(UInt64(count), UInt64(clamping: maxBytes), UInt64(record.bytes.count - start)))
        return RecordValues.terminated(UnsafeRawBufferPointer(rebasing: record.bytes[start..<start + available]), limit: limit)
    }

    /// A return value as `signature` places it; 0 values when the function has no result.
    func encodeResult(of signature: Signature?, maxString: Int, into arena: inout ValueArena) -> Int {
        guard let results = signature?.results, !results.isEmpty else { return 0 }
        var reader = ArgumentReader(self, maxString: maxString, deref: probe.derefs)
        arena.append(reader.returnValue(signature) ?? .unavailable)
        return 1
    }
}

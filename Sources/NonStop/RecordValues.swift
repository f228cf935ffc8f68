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

    func entry(_ signature: Signature?) -> [Capture] {
        var captures: [Capture] = goCaptures()
        for parameter in signature?.parameters ?? [] { add(parameter, to: &captures) }
        return captures
    }

    func exit(_ signature: Signature?) -> [Capture] {
        var captures: [Capture] = goCaptures()
        for result in signature?.results ?? [] { add(result, to: &captures) }
        return captures
    }

    /// A tail-callee's return, read with the tail-caller's signature (whatever it is): every register
    /// a result can be in.
    func watchedReturn() -> [Capture] {
        goCaptures() + [.register(.rax), .register(.rdx), .xmm(0), .xmm(1)]
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
            captures.append(.memory(m))
        }
        let copy = min(maxString + 1, CapturePlan.maxCopy)
        switch parameter.location {
        case .register(let r):
            addRegister(r)
            if type.kind == .cString, let gpr = r.gpr { addMemory(MemoryCapture(base: .register(gpr), maxBytes: copy)) }
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
        case .unknown:
            break
        }
    }
}

/// The values one record holds, laid out as its probe's captures say, read like a stopped thread's.
struct RecordValues: ValueSource {
    let captures: [Capture]
    let offsets: [Int]
    let record: EventRing.Record

    var stackPointer: UInt64 { record.stackPointer }

    private func index(of capture: Capture) -> Int? { captures.firstIndex(of: capture) }

    func word(of capture: Capture) -> UInt64? {
        guard let i = index(of: capture) else { return nil }
        return record.u64(offsets[i])
    }

    mutating func registerBytes(_ register: Register) -> [UInt8] {
        if case .xmm(let n) = register {
            guard let i = index(of: .xmm(n)) else { return [] }
            return (0..<16).map { record.bytes.count > offsets[i] + $0 ? record.bytes[offsets[i] + $0] : 0 }
        }
        guard let gpr = register.gpr, let value = word(of: .register(gpr)) else { return [] }
        return withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// Each memory capture's bytes and the address they were copied from.
    private func copies() -> [(address: UInt64, bytes: ArraySlice<UInt8>)] {
        var out: [(UInt64, ArraySlice<UInt8>)] = []
        for (i, capture) in captures.enumerated() {
            guard case .memory(let m) = capture else { continue }
            let source: UInt64?
            switch m.base {
            case .register(let r): source = word(of: .register(r))
            case .stackPointer: source = record.stackPointer
            case .stackWord(let o): source = stackWord(at: record.stackPointer &+ UInt64(bitPattern: Int64(o)))
            }
            guard let base = source else { continue }
            let copied = Int64(bitPattern: record.u64(offsets[i]))
            guard copied > 0 else { continue }
            let start = offsets[i] + 8
            let count = min(Int(copied), m.maxBytes, max(0, record.bytes.count - start))
            out.append((base &+ UInt64(bitPattern: Int64(m.offset)), Array(record.bytes[start..<start + count])[...]))
        }
        return out
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
        for copy in copies() where address >= copy.address {
            let skip = address &- copy.address
            guard skip <= UInt64(copy.bytes.count), UInt64(copy.bytes.count) - skip >= UInt64(count) else { continue }
            let from = copy.bytes.startIndex + Int(skip)
            return Array(copy.bytes[from..<from + count])
        }
        return nil
    }

    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)? {
        guard let copy = copies().first(where: { $0.address == address }) else { return nil }
        if let nul = copy.bytes.firstIndex(of: 0) {
            let bytes = Array(copy.bytes[copy.bytes.startIndex..<nul])
            return (Array(bytes.prefix(limit)), bytes.count > limit)
        }
        return (Array(copy.bytes.prefix(limit)), true)
    }
}

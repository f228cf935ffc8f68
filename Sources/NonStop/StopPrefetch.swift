import Glibc
import Symbols

/// The memory one stop's values need, read ahead in one process_vm_readv: the return address and
/// stack-passed arguments (from the stack pointer up), and the start of each string an argument
/// register points to (up to the end of its page, so one bad page cannot spoil the others). A read
/// outside these ranges, or a string longer than what was read, goes to the tracee's memory as before.
struct StopPrefetch {
    private var chunks: [(address: UInt64, bytes: [UInt8])] = []

    init() {}

    /// `stackBytes`: how many bytes from the stack pointer (0: none).
    init(memory: TraceeMemory, regs: user_regs_struct, signature: Signature?, stackBytes: Int, maxString: Int) {
        var ranges: [(address: UInt64, count: Int)] = []
        var stack = stackBytes
        for parameter in signature?.parameters ?? [] {
            switch (parameter.location, parameter.type.kind) {
            case (.stack(let offset), _):
                stack = max(stack, Int(clamping: offset) + max(parameter.type.byteSize, 8))
            case (.register(let r), .cString):
                guard let gpr = r.gpr, regs[gpr] != 0 else { continue }
                let pointer = regs[gpr]
                ranges.append((pointer, min(maxString + 1, Int(4096 - pointer & 4095))))
            case (.pieces(let pieces), .goString):
                guard pieces.count == 2, let p = pieces[0].register.gpr, let l = pieces[1].register.gpr else { continue }
                let pointer = regs[p], length = Int(clamping: min(regs[l], UInt64(maxString)))
                if pointer != 0, length > 0 { ranges.append((pointer, length)) }
            default:
                continue
            }
        }
        if stack > 0 { ranges.insert((regs.rsp, min(stack, 4096)), at: 0) }
        guard !ranges.isEmpty else { return }
        for (range, bytes) in zip(ranges, memory.read(ranges: ranges)) {
            if let bytes { chunks.append((range.address, bytes)) }
        }
    }

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        for chunk in chunks where address >= chunk.address {
            let start = Int(clamping: address &- chunk.address)
            if start <= chunk.bytes.count, count <= chunk.bytes.count - start {
                return Array(chunk.bytes[start..<start + count])
            }
        }
        return nil
    }

    func word(at address: UInt64) -> UInt64? {
        read(address, count: 8).map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
    }

    /// A string read ahead from its first byte: whole (its NUL within what was read), or cut at the
    /// limit; nil when what was read ends before either (the rest is read from the tracee).
    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)? {
        guard let chunk = chunks.first(where: { $0.address == address }) else { return nil }
        if let nul = chunk.bytes.firstIndex(of: 0), nul <= limit { return (Array(chunk.bytes[..<nul]), false) }
        if chunk.bytes.count > limit { return (Array(chunk.bytes.prefix(limit)), true) }
        return nil
    }
}

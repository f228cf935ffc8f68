@testable import Relocator
import Glibc

/// The memory one instruction may touch from a given state, page-wise: the pages around each memory
/// operand's effective address (RIP-relative targets included), around RSP (push, call, enter), and
/// around RDI and RSI (string instructions). "Around" reaches 64 bytes below and 640 above (a 512-byte
/// FXSAVE area, a 64-byte vector, three string iterations either way), or 4 KiB above for the XSAVE
/// family. Only readable mappings count; the code pages the oracle writes relocated code into never do.
struct TouchedMemory {
    let ranges: [Range<UInt64>]
    /// The bytes of each range before either run: what is restored between runs.
    let pristine: [[UInt8]]

    static let page: UInt64 = 4096

    init(_ insn: Instruction, _ regs: user_regs_struct, readable: [Mapping], excluding codePages: [UInt64],
         tracee: OracleTracee) throws {
        let above: UInt64 = ["xsave", "xrstor", "fxsave", "fxrstor"].contains { insn.mnemonic.contains($0) } ? 4096 : 640
        var pages = Set<UInt64>()
        for address in Self.addresses(insn, regs) {
            let first = (address &- 64) & ~(Self.page - 1), last = (address &+ above) & ~(Self.page - 1)
            guard first <= last else { continue }  // wraps around: not a user address anyway
            pages.formUnion(stride(from: first, through: last, by: Int(Self.page)))
        }
        let code = Set(codePages)
        let wanted = pages.filter { page in !code.contains(page) && readable.contains { $0.contains(page) } }.sorted()
        // A page of a readable mapping that cannot be read (a file mapping's pages past the end of its
        // file: SIGBUS to the program too) cannot be touched by either run either: left out.
        var ranges: [Range<UInt64>] = [], pristine: [[UInt8]] = []
        for page in wanted {
            guard let bytes = tracee.read(page, count: Int(Self.page)) else { continue }
            if let last = ranges.last, last.upperBound == page {
                ranges[ranges.count - 1] = last.lowerBound..<page + Self.page
                pristine[pristine.count - 1] += bytes
            } else {
                ranges.append(page..<page + Self.page)
                pristine.append(bytes)
            }
        }
        self.ranges = ranges
        self.pristine = pristine
    }

    /// Every address the instruction may access, computed from `regs` as the CPU would.
    static func addresses(_ insn: Instruction, _ regs: user_regs_struct) -> [UInt64] {
        var out = [regs.rsp, regs.rsp &- 8, regs.rdi, regs.rsi]
        for case .memory(let m) in insn.operands {
            var address = UInt64(bitPattern: m.displacement)
            if m.base == .rip {
                address &+= insn.next
            } else if let base = m.base {
                address &+= regs[gpr: base]
            }
            if let index = m.index { address &+= regs[gpr: index] &* UInt64(m.scale) }
            if insn.hasAddressSizePrefix { address &= 0xffff_ffff }
            switch m.segment {
            case .fs?: address &+= regs.fs_base
            case .gs?: address &+= regs.gs_base
            case nil: break
            }
            out.append(address)
            // bt/bts/btr/btc with a register bit offset reach [address + offset/8], any distance away.
            if ["bt", "bts", "btr", "btc"].contains(insn.mnemonic.split(separator: " ").last ?? ""),
               insn.operands.count == 2, case .register(let r?, let size) = insn.operands[1] {
                let offset = size == 8 ? Int64(bitPattern: regs[gpr: r])
                    : size == 4 ? Int64(Int32(truncatingIfNeeded: regs[gpr: r])) : Int64(Int16(truncatingIfNeeded: regs[gpr: r]))
                out.append(address &+ UInt64(bitPattern: offset >> 3))
            }
        }
        return out
    }

    /// The ranges as the child holds them now.
    func current(_ tracee: OracleTracee) throws -> [[UInt8]] {
        try ranges.map { range in
            guard let bytes = tracee.read(range.lowerBound, count: Int(range.upperBound - range.lowerBound)) else {
                throw TraceeError(operation: "read back \(range)", pid: tracee.pid, errno: EIO)
            }
            return bytes
        }
    }

    /// Puts back the pristine bytes of every range that `observed` (read after a run) shows changed.
    func restore(after observed: [[UInt8]], _ tracee: OracleTracee) throws {
        for (i, range) in ranges.enumerated() where !sameBytes(observed[i], pristine[i]) {
            try tracee.write(pristine[i], at: range.lowerBound)
        }
    }

    /// Where two observations of the ranges differ: range, first differing offset, bytes there.
    func differences(_ a: [[UInt8]], _ b: [[UInt8]]) -> [String] {
        var out: [String] = []
        for (i, range) in ranges.enumerated() where !sameBytes(a[i], b[i]) {
            let differing = (0..<a[i].count).filter { a[i][$0] != b[i][$0] }
            guard let first = differing.first, let last = differing.last else { continue }
            let from = first & ~7, to = min(a[i].count, (last | 7) + 1, from + 32)
            out.append("memory at 0x\(String(range.lowerBound + UInt64(from), radix: 16)) (\(differing.count) bytes differ): "
                       + "\(hexBytes(a[i][from..<to])) vs \(hexBytes(b[i][from..<to]))")
        }
        return out
    }
}

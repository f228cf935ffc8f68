@testable import Relocator
import Glibc

/// The memory a window may touch, gathered while the original runs: the whole stack buffer (pushes,
/// the call's return address, the probes' frames), and for each instruction, before it runs, the pages
/// TouchedMemory names for it from the registers it runs with. A page is read when first named: no
/// instruction before has written it (each writes only pages named for it), so those bytes are what
/// both runs start from. The ring and the oracle's code pages are never part of it.
struct WindowMemory {
    private var pristine: [UInt64: [UInt8]] = [:]
    private let readable: [Mapping]
    private let excluded: [Range<UInt64>]

    init(readable: [Mapping], excluding excluded: [Range<UInt64>]) {
        self.readable = readable
        self.excluded = excluded
    }

    /// Every page of `range`.
    mutating func add(_ range: Range<UInt64>, _ tracee: OracleTracee) throws {
        let page = TouchedMemory.page
        try add(pages: stride(from: range.lowerBound & ~(page - 1), to: range.upperBound, by: Int(page)), tracee)
    }

    /// The pages `insn` may touch when it runs with `regs`, as TouchedMemory sees them.
    mutating func add(_ insn: Instruction, _ regs: user_regs_struct, _ tracee: OracleTracee) throws {
        let page = TouchedMemory.page
        let above: UInt64 = ["xsave", "xrstor", "fxsave", "fxrstor"].contains { insn.mnemonic.contains($0) } ? 4096 : 640
        var pages: [UInt64] = []
        for address in TouchedMemory.addresses(insn, regs) {
            let first = (address &- 64) & ~(page - 1), last = (address &+ above) & ~(page - 1)
            guard first <= last else { continue }
            pages += stride(from: first, through: last, by: Int(page))
        }
        try add(pages: pages, tracee)
    }

    private mutating func add<S: Sequence>(pages: S, _ tracee: OracleTracee) throws where S.Element == UInt64 {
        for page in pages where pristine[page] == nil {
            guard readable.contains(where: { $0.contains(page) }),
                  !excluded.contains(where: { $0.overlaps(page..<page + TouchedMemory.page) })
            else { continue }
            guard let bytes = tracee.read(page, count: Int(TouchedMemory.page)) else {
                throw TraceeError(operation: "read the page at 0x\(String(page, radix: 16))", pid: tracee.pid, errno: EIO)
            }
            pristine[page] = bytes
        }
    }

    /// The pages gathered so far, as TouchedMemory (contiguous pages merged), to observe, compare and
    /// restore.
    func touched() -> TouchedMemory {
        var ranges: [Range<UInt64>] = []
        var bytes: [[UInt8]] = []
        for page in pristine.keys.sorted() {
            if let last = ranges.last, last.upperBound == page {
                ranges[ranges.count - 1] = last.lowerBound..<page + TouchedMemory.page
                bytes[bytes.count - 1] += pristine[page] ?? []
            } else {
                ranges.append(page..<page + TouchedMemory.page)
                bytes.append(pristine[page] ?? [])
            }
        }
        return TouchedMemory(ranges: ranges, pristine: bytes)
    }
}

extension TouchedMemory {
    /// Ranges already read, with their bytes before any run.
    init(ranges: [Range<UInt64>], pristine: [[UInt8]]) {
        self.ranges = ranges
        self.pristine = pristine
    }

    /// Lets bytes of `relocated` (an observation after a run) differ from `original`'s where the
    /// relocated form may leave something else: inside `dead`, and only where the original run left
    /// memory as it found it (a byte the original wrote must come out the same). Returns the
    /// observation with those bytes taken from the original, and how many there were.
    func excusing(_ dead: [Range<UInt64>], relocated: [[UInt8]], original: [[UInt8]]) -> (memory: [[UInt8]], excused: Int) {
        var out = relocated
        var excused = 0
        for (i, range) in ranges.enumerated() {
            for d in dead where d.overlaps(range) {
                let from = Int(max(d.lowerBound, range.lowerBound) - range.lowerBound)
                let to = Int(min(d.upperBound, range.upperBound) - range.lowerBound)
                for k in from..<to where original[i][k] == pristine[i][k] && out[i][k] != original[i][k] {
                    out[i][k] = original[i][k]
                    excused += 1
                }
            }
        }
        return (out, excused)
    }
}

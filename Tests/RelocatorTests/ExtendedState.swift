import OracleSupport

/// The XSAVE area as PTRACE_GETREGSET NT_X86_XSTATE lays it out (standard, not compacted, format):
/// where each register lives, so the oracle can give every vector register a value of its own and
/// name the register when two runs disagree.
struct ExtendedStateLayout {
    /// A named byte range of the area.
    struct Field {
        let name: String
        let offset: Int
        let size: Int
    }

    /// XSAVE state components (Intel SDM vol. 1, 13.1).
    enum Component: UInt32, CaseIterable {
        case x87 = 0, sse = 1, avx = 2, opmask = 5, zmmHigh256 = 6, highZMM = 7
    }

    /// The XSAVE header: its first word, XSTATE_BV, says which components are not in their initial
    /// configuration, which the kernel may track differently for a state it saved from the CPU and
    /// one it was handed; the contents of the components are what matters.
    static let header = 512..<576

    let fields: [Field]
    /// The components this CPU has enabled (XCR0) among those the oracle fills.
    let enabled: Set<Component>

    init() {
        let xcr0 = oracle_xcr0()
        var enabled = Set<Component>()
        for component in Component.allCases where xcr0 & (1 << UInt64(component.rawValue)) != 0 {
            enabled.insert(component)
        }
        self.enabled = enabled

        var fields: [Field] = [
            Field(name: "fcw", offset: 0, size: 2), Field(name: "fsw", offset: 2, size: 2),
            Field(name: "ftw", offset: 4, size: 1), Field(name: "fop", offset: 6, size: 2),
            Field(name: "fip", offset: 8, size: 8), Field(name: "fdp", offset: 16, size: 8),
            Field(name: "mxcsr", offset: 24, size: 4), Field(name: "mxcsr_mask", offset: 28, size: 4),
        ]
        fields += (0..<8).map { Field(name: "st\($0)", offset: 32 + 16 * $0, size: 16) }
        fields += (0..<16).map { Field(name: "xmm\($0)", offset: 160 + 16 * $0, size: 16) }
        func component(_ c: Component, _ count: Int, _ size: Int, _ name: (Int) -> String) {
            var offset: UInt32 = 0, total: UInt32 = 0
            guard enabled.contains(c), oracle_xstate_component(c.rawValue, &offset, &total) != 0 else { return }
            fields += (0..<count).map { Field(name: name($0), offset: Int(offset) + size * $0, size: size) }
        }
        component(.avx, 16, 16) { "ymm\($0)[255:128]" }
        component(.opmask, 8, 8) { "k\($0)" }
        component(.zmmHigh256, 16, 32) { "zmm\($0)[511:256]" }
        component(.highZMM, 16, 64) { "zmm\($0 + 16)" }
        self.fields = fields
    }

    /// `state` (as the child had it) with every vector and mask register, MXCSR and the x87 control
    /// word set to fixed values, and the components marked in use.
    func filled(_ state: [UInt8]) -> [UInt8] {
        var state = state
        func put(_ value: UInt64, _ size: Int, at offset: Int) {
            for i in 0..<size where offset + i < state.count { state[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        put(0x037f, 2, at: 0)  // x87 control word: the Linux default
        put(0x1f80, 4, at: 24)  // MXCSR: the default, all exceptions masked
        for (n, field) in fields.enumerated() where field.name.hasPrefix("xmm") || field.name.hasPrefix("ymm")
            || field.name.hasPrefix("zmm") || field.name.hasPrefix("k")
        {
            for i in 0..<field.size where field.offset + i < state.count {
                // Distinct per register and per byte; never all zero (an all-zero component can be
                // reported as not in use).
                state[field.offset + i] = UInt8(truncatingIfNeeded: n &* 61 &+ i &* 29 &+ 17)
            }
        }
        var inUse: UInt64 = 0
        for c in enabled where c != .x87 { inUse |= 1 << UInt64(c.rawValue) }
        var bv: UInt64 = 0
        for i in 0..<8 { bv |= UInt64(state[Self.header.lowerBound + i]) << (8 * UInt64(i)) }
        put(bv | inUse, 8, at: Self.header.lowerBound)
        return state
    }

    /// The registers whose bytes differ between two areas, header excluded.
    func differences(_ a: [UInt8], _ b: [UInt8]) -> [String] {
        guard a.count == b.count else { return ["extended state sizes \(a.count) and \(b.count)"] }
        var out: [String] = []
        var covered = Set<Int>()
        for field in fields {
            let range = field.offset..<min(field.offset + field.size, a.count)
            covered.formUnion(range)
            if a[range] != b[range] {
                out.append("\(field.name): \(hexBytes(a[range])) vs \(hexBytes(b[range]))")
            }
        }
        for i in 0..<a.count where !covered.contains(i) && !Self.header.contains(i) && a[i] != b[i] {
            out.append("extended state byte \(i): \(a[i]) vs \(b[i])")
        }
        return out
    }
}

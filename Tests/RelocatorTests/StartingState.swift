@testable import Relocator
import Glibc
import OracleSupport

/// The registers an instruction starts from: both runs of a comparison start here.
struct MachineState {
    var registers: user_regs_struct
    var extended: [UInt8]
}

/// What the oracle's child mapped for it (oracle_layout.h), as read from its `relocator_layout`.
struct OracleLayout {
    struct ModulePages {
        let range: Range<UInt64>
        let near: UInt64
    }

    let data: Range<UInt64>
    let stack: Range<UInt64>
    let far: UInt64
    let modules: [ModulePages]

    /// nil unless the child filled the layout in, and every range in it is one.
    init?(_ raw: oracle_layout) {
        guard raw.magic == ORACLE_LAYOUT_MAGIC, raw.module_count <= UInt64(ORACLE_MAX_MODULES),
              raw.data <= raw.data &+ raw.data_size, raw.stack <= raw.stack &+ raw.stack_size
        else { return nil }
        data = raw.data..<raw.data + raw.data_size
        stack = raw.stack..<raw.stack + raw.stack_size
        far = raw.far
        let pages = withUnsafeBytes(of: raw.modules) { Array($0.bindMemory(to: oracle_module_pages.self).prefix(Int(raw.module_count))) }
        guard pages.allSatisfy({ $0.start <= $0.end }) else { return nil }
        modules = pages.map { ModulePages(range: $0.start..<$0.end, near: $0.near) }
    }

    /// The code page mapped within ±2 GiB of the module holding `address`.
    func nearPage(for address: UInt64) -> UInt64? {
        modules.first { $0.range.contains(address) }?.near
    }

    /// Pages the oracle writes relocated code into: never compared as data.
    var codePages: [UInt64] { modules.map(\.near) + [far] }
}

/// One variation of the starting state, for instructions whose outcome depends on flags or on the
/// counter register.
struct StateVariant: Hashable, CustomStringConvertible {
    var eflags: UInt64
    var rcx: UInt64?
    /// Or-ed into every general register but RSP: garbage in the upper halves for instructions with
    /// an address-size prefix, whose addresses must be truncated to 32 bits (the data buffer itself
    /// lies below 4 GiB); non-canonical addresses for branches through registers.
    var upperBits: UInt64 = 0

    var description: String {
        "eflags 0x\(String(eflags, radix: 16))" + (rcx.map { ", rcx 0x\(String($0, radix: 16))" } ?? "")
            + (upperBits == 0 ? "" : ", registers | 0x\(String(upperBits, radix: 16))")
    }

    /// IF and the always-one bit 1, with CF, AF and SF set: a state most conditions disagree on.
    static let standard = StateVariant(eflags: 0x293, rcx: nil)

    /// Every combination of the five flags a condition reads (CF, PF, ZF, SF, OF).
    static let allConditions: [StateVariant] = (0..<32).map { bits in
        let flagBits: [UInt64] = [0x1, 0x4, 0x40, 0x80, 0x800]
        var eflags: UInt64 = 0x202
        for (i, bit) in flagBits.enumerated() where bits & (1 << i) != 0 { eflags |= bit }
        return StateVariant(eflags: eflags, rcx: nil)
    }

    /// Counter values for loop and jrcxz/jecxz: zero, one, two, and ones whose low 32 bits differ from
    /// the whole (ECX zero or one while RCX is not).
    static let counters: [UInt64] = [0, 1, 2, 0x1_0000_0000, 0x1_0000_0001]
}

/// Builds the state each instruction starts from: every general register points into the data buffer
/// at its own offset (so memory operands are valid and distinguishable), RSP into the stack buffer,
/// FS and GS bases and segment registers as the child has them (stack-protector loads use FS), and
/// every vector register a fixed value of its own.
struct StartingStates {
    let layout: OracleLayout
    let base: user_regs_struct
    let extended: [UInt8]

    /// The general registers, except RSP, from `data + 0x40000` up in steps of 0x2040: distinct pages,
    /// 64-byte aligned (so aligned SSE and AVX-512 operands do not fault), and low enough that a
    /// register scaled by 8 plus another still lands in the 8 MiB buffer.
    func value(of register: GPR) -> UInt64 {
        layout.data.lowerBound &+ 0x40000 &+ UInt64(register.rawValue) &* 0x2040
    }

    func state(for insn: Instruction, atFunctionEntry: Bool, variant: StateVariant) -> MachineState {
        var regs = base
        for register in GPR.allCases where register != .rip && register != .rsp {
            regs[gpr: register] = value(of: register) | variant.upperBits
        }
        // At a function's entry RSP is 8 past a 16-byte boundary (the call pushed the return
        // address); at a return site, aligned. Code compiled for either then runs as it would.
        regs.rsp = layout.stack.lowerBound &+ UInt64(layout.stack.count / 2) &- (atFunctionEntry ? 8 : 0)
        regs.rip = insn.address
        regs.eflags = variant.eflags
        if let rcx = variant.rcx { regs.rcx = rcx }
        adjust(&regs, for: insn)
        return MachineState(registers: regs, extended: extended)
    }

    /// The only per-instruction changes to the state, each for an instruction that would otherwise
    /// not finish in a few steps or would do something a test must not.
    private func adjust(_ regs: inout user_regs_struct, for insn: Instruction) {
        // A repeated string instruction traps after every iteration: three, not millions.
        if Oracle.isRepeatedString(insn) { regs.rcx = 3 }
        // A system call must be harmless and give the same answer twice: getpid.
        if insn.mnemonic == "syscall" { regs.rax = 39 }  // SYS_getpid
    }
}

import Glibc

/// A thread's seccomp filters (classic BPF, read back with PTRACE_SECCOMP_GET_FILTER), run the way the
/// kernel runs them, to learn what a system call nstrace would inject gets: a filter may kill the
/// process for an `mmap` it did not expect. The filters are the tracee's, untrusted: every load and
/// jump is bounds-checked, and a program that does not run to a return counts as a kill.
struct SeccompFilters {
    struct Instruction {
        let code: UInt16
        let jt: UInt8
        let jf: UInt8
        let k: UInt32
    }

    let programs: [[Instruction]]

    /// The thread's filters, newest first; nil when they cannot be read (no CAP_SYS_ADMIN, a kernel
    /// without CONFIG_CHECKPOINT_RESTORE): then nothing is known of what they allow.
    init?(tid: pid_t) {
        var programs: [[Instruction]] = []
        let maxInstructions = 4096  // BPF_MAXINSNS
        var buffer = [UInt8](repeating: 0, count: maxInstructions * 8)
        for index in 0..<64 {
            let result = buffer.withUnsafeMutableBytes { raw in Result { () throws(TraceError) in try Ptrace.seccompFilter(tid, index: index, into: raw) } }
            guard case .success(let n) = result else {
                if case .failure(let error) = result, error.errno == ENOENT, index > 0 { break }  // past the last filter
                return nil
            }
            guard n > 0, n <= maxInstructions else { return nil }
            programs.append((0..<n).map { i in
                let b = buffer[(8 * i)..<(8 * i + 8)].map { $0 }
                return Instruction(code: UInt16(b[0]) | UInt16(b[1]) << 8, jt: b[2], jf: b[3],
                                   k: UInt32(b[4]) | UInt32(b[5]) << 8 | UInt32(b[6]) << 16 | UInt32(b[7]) << 24)
            })
        }
        self.programs = programs
    }

    init(programs: [[Instruction]]) { self.programs = programs }

    static let allow: UInt32 = 0x7fff_0000
    static let log: UInt32 = 0x7ffc_0000
    static let trace: UInt32 = 0x7ff0_0000
    static let errno: UInt32 = 0x0005_0000
    static let killProcess: UInt32 = 0x8000_0000

    /// The action every filter together gives the call (the most severe of them, as the kernel takes).
    func action(number: Int, arguments: [UInt64], ip: UInt64) -> UInt32 {
        var data = [UInt8](repeating: 0, count: 64)
        func put(_ value: UInt64, at offset: Int, bytes: Int) {
            for i in 0..<bytes { data[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        put(UInt64(truncatingIfNeeded: number), at: 0, bytes: 4)
        put(0xc000_003e, at: 4, bytes: 4)  // AUDIT_ARCH_X86_64
        put(ip, at: 8, bytes: 8)
        for (i, argument) in arguments.prefix(6).enumerated() { put(argument, at: 16 + 8 * i, bytes: 8) }
        return programs.map { SeccompFilters.run($0, on: data) }.min { SeccompFilters.severity($0) > SeccompFilters.severity($1) }
            ?? SeccompFilters.allow
    }

    /// Whether the action lets nstrace inject the call: it runs, or fails with an errno the injection
    /// sees (ERRNO; TRACE without a tracer that asked for it is ENOSYS). Not KILL, TRAP (a SIGSYS the
    /// program would get), or USER_NOTIF (another process would decide).
    static func harmless(_ action: UInt32) -> Bool {
        let kind = action & 0xffff_0000
        return kind == allow || kind == log || kind == errno || kind == trace
    }

    static func name(of action: UInt32) -> String {
        switch action & 0xffff_0000 {
        case 0x8000_0000: return "KILL_PROCESS"
        case 0x0000_0000: return "KILL_THREAD"
        case 0x0003_0000: return "TRAP (SIGSYS)"
        case 0x7fc0_0000: return "USER_NOTIF"
        default: return "0x\(String(action, radix: 16))"
        }
    }

    /// Higher is more severe: KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, USER_NOTIF, TRACE, LOG, ALLOW.
    private static func severity(_ action: UInt32) -> Int {
        switch action & 0xffff_0000 {
        case 0x8000_0000: return 8
        case 0x0000_0000: return 7
        case 0x0003_0000: return 6
        case 0x0005_0000: return 5
        case 0x7fc0_0000: return 4
        case 0x7ff0_0000: return 3
        case 0x7ffc_0000: return 2
        case 0x7fff_0000: return 1
        default: return 8  // unknown: as the kernel treats it, a kill
        }
    }

    /// One classic BPF program over `data` (struct seccomp_data). The kernel's checker guarantees
    /// forward jumps and a return at the end; a program that breaks that is taken as a kill.
    static func run(_ program: [Instruction], on data: [UInt8]) -> UInt32 {
        var a: UInt32 = 0, x: UInt32 = 0
        var memory = [UInt32](repeating: 0, count: 16)
        var pc = 0
        func load(_ offset: UInt32) -> UInt32? {
            guard offset & 3 == 0, offset <= 60 else { return nil }
            let o = Int(offset)
            return UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
        }
        while pc < program.count {
            let insn = program[pc]
            pc += 1
            let source = insn.code & 0x08 == 0 ? insn.k : x  // BPF_K or BPF_X
            switch insn.code & 0x07 {
            case 0x00:  // BPF_LD
                switch insn.code & 0xe0 {
                case 0x20: guard let w = load(insn.k) else { return killProcess }; a = w  // ABS
                case 0x00: a = insn.k  // IMM
                case 0x60: guard insn.k < 16 else { return killProcess }; a = memory[Int(insn.k)]  // MEM
                case 0x80: a = 64  // LEN
                default: return killProcess
                }
            case 0x01:  // BPF_LDX
                switch insn.code & 0xe0 {
                case 0x00: x = insn.k
                case 0x60: guard insn.k < 16 else { return killProcess }; x = memory[Int(insn.k)]
                case 0x80: x = 64
                default: return killProcess
                }
            case 0x02: guard insn.k < 16 else { return killProcess }; memory[Int(insn.k)] = a  // ST
            case 0x03: guard insn.k < 16 else { return killProcess }; memory[Int(insn.k)] = x  // STX
            case 0x04:  // BPF_ALU
                switch insn.code & 0xf0 {
                case 0x00: a = a &+ source
                case 0x10: a = a &- source
                case 0x20: a = a &* source
                case 0x30: guard source != 0 else { return killProcess }; a /= source
                case 0x40: a |= source
                case 0x50: a &= source
                case 0x60: a = source >= 32 ? 0 : a << source
                case 0x70: a = source >= 32 ? 0 : a >> source
                case 0x80: a = 0 &- a
                case 0x90: guard source != 0 else { return killProcess }; a %= source
                case 0xa0: a ^= source
                default: return killProcess
                }
            case 0x05:  // BPF_JMP
                let taken: Bool
                switch insn.code & 0xf0 {
                case 0x00: pc += Int(insn.k); continue  // JA
                case 0x10: taken = a == source
                case 0x20: taken = a > source
                case 0x30: taken = a >= source
                case 0x40: taken = a & source != 0
                default: return killProcess
                }
                pc += Int(taken ? insn.jt : insn.jf)
            case 0x06: return insn.code & 0x18 == 0x10 ? a : insn.k  // BPF_RET: A or K
            case 0x07: if insn.code & 0xf8 == 0 { x = a } else { a = x }  // BPF_MISC: TAX, TXA
            default: return killProcess
            }
        }
        return killProcess
    }
}

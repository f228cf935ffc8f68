import Glibc
@testable import Relocator

/// The probes a pad is built with for one run, and how it learns its thread: each set captures a
/// different mix (argument and callee-saved registers, registers the probe itself saves and uses,
/// RSP, XMM registers, memory through a register, at the stack pointer and through a stack word, with
/// a length register), so that over the corpus every kind of capture is checked against the state.
struct ProbeSet: CustomStringConvertible {
    let name: String
    let entry: Probe
    let exit: Probe
    /// gettid(2) in the pad, rather than the TCB.
    let asksKernelForThread: Bool

    var description: String { name }

    static let all: [ProbeSet] = [
        ProbeSet(name: "registers and xmm, tid from the TCB",
                 entry: Probe(id: 0x101, kind: .entry, captures: [
                     .register(.rdi), .register(.rsi), .register(.rdx), .register(.rcx), .register(.r8), .register(.r9),
                     .register(.rax), .register(.r11), .register(.rsp), .xmm(0), .xmm(1),
                 ]),
                 exit: Probe(id: 0x201, kind: .exit, captures: [.register(.rax), .register(.rdx), .register(.rsp), .xmm(0)]),
                 asksKernelForThread: false),
        ProbeSet(name: "memory through registers and a stack word, tid from gettid",
                 entry: Probe(id: 0x102, kind: .entry, captures: [
                     .register(.rdi), .register(.rsi),
                     .memory(MemoryCapture(base: .register(.rdi), maxBytes: 24)),
                     .memory(MemoryCapture(base: .stackWord(8), offset: 4, maxBytes: 16, length: .rdx)),
                 ]),
                 exit: Probe(id: 0x202, kind: .exit, captures: [
                     .register(.rax), .memory(MemoryCapture(base: .register(.rax), maxBytes: 16)),
                 ]),
                 asksKernelForThread: true),
        ProbeSet(name: "callee-saved registers and memory at the stack pointer, tid from the TCB",
                 entry: Probe(id: 0x103, kind: .entry, captures: [
                     .register(.rbx), .register(.rbp), .register(.r10), .register(.r12), .register(.r13), .register(.r14),
                     .register(.r15), .xmm(7), .xmm(15), .memory(MemoryCapture(base: .stackPointer, maxBytes: 40)),
                 ]),
                 exit: Probe(id: 0x203, kind: .exit, captures: [
                     .register(.rbx), .register(.r10), .xmm(1),
                     .memory(MemoryCapture(base: .stackPointer, offset: 8, maxBytes: 8, length: .rcx)),
                 ]),
                 asksKernelForThread: false),
    ]

    func environment(ring: ChildRing, tcbTidOffset: Int32) -> PadEnvironment {
        PadEnvironment(ringAddress: ring.address, geometry: ring.geometry,
                       threadIdentity: asksKernelForThread ? .syscall : .tcb(offset: tcbTidOffset), bucketKey: .thread)
    }
}

/// The machine state where a probe runs in the original (at the window's start for the entry, at the
/// `ret` for the return), and the values its record must hold, read from the child then.
struct ProbePoint {
    let registers: user_regs_struct
    /// The stack pointer the record reports: the function's entry SP for an entry probe.
    let reportedStackPointer: UInt64
    /// Per capture, the bytes the record must hold.
    let expected: [ExpectedCapture]

    enum ExpectedCapture {
        case bytes([UInt8])
        /// A fault-safe copy: the count (or -errno), then that many bytes.
        case memory(count: Int64, bytes: [UInt8])
    }

    /// `reportedStackPointer`: for an entry, RSP at the function's entry (before its first instruction,
    /// which the engine leaves in place, ran); for a return, RSP at the `ret`.
    init(_ probe: Probe, registers: user_regs_struct, extended: [UInt8], reportedStackPointer sp: UInt64, tracee: OracleTracee) {
        self.registers = registers
        reportedStackPointer = sp
        expected = probe.captures.map { capture in
            switch capture {
            case .register(let r):
                return .bytes(Self.littleEndian(registers[gpr: r]))
            case .xmm(let i):
                let offset = 160 + 16 * i  // FXSAVE's XMM registers, at the start of the XSAVE area
                return .bytes(Array(extended[offset..<offset + 16]))
            case .memory(let m):
                return Self.expectedCopy(m, registers: registers, stackPointer: sp, tracee: tracee)
            case .goroutineField, .stackWord, .ticket, .x87:
                preconditionFailure("the oracle's probes capture no Go field, stack word, ticket or x87 register")
            }
        }
    }

    /// What process_vm_readv gives the pad: its source split at the first page boundary, the count of
    /// what the first piece and then the second could read, -EFAULT when the first could not.
    static func expectedCopy(_ m: MemoryCapture, registers: user_regs_struct, stackPointer: UInt64,
                             tracee: OracleTracee) -> ExpectedCapture {
        var base: UInt64
        switch m.base {
        case .register(let r): base = registers[gpr: r]
        case .stackPointer: base = stackPointer
        case .stackWord(let o):
            guard let word = tracee.read(stackPointer &+ UInt64(bitPattern: Int64(o)), count: 8) else {
                return .memory(count: -Int64(EFAULT), bytes: [])
            }
            base = word.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        let source = base &+ UInt64(bitPattern: Int64(m.offset))
        var length = UInt64(m.maxBytes)
        if let r = m.length { length = min(length, registers[gpr: r]) }
        let first = min(length, 4096 - source % 4096)
        guard let head = tracee.read(source, count: Int(first)) else { return .memory(count: -Int64(EFAULT), bytes: []) }
        guard length > first else { return .memory(count: Int64(first), bytes: head) }
        guard let rest = tracee.read(source &+ first, count: Int(length - first)) else {
            return .memory(count: Int64(first), bytes: head)
        }
        return .memory(count: Int64(length), bytes: head + rest)
    }

    static func littleEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
}

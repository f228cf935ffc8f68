@testable import Relocator
import Glibc

/// How a run ended.
enum Outcome: Equatable, CustomStringConvertible {
    case completed
    /// A signal before the instruction completed; a fault address inside the relocated code is
    /// reported as the original instruction's address, as the engine would.
    case fault(signal: Int32, code: Int32, address: UInt64)
    /// The Emulation threw: memory it needed was not there, or a branch target was not canonical.
    case emulationFailed(String)
    /// A relocated form that never arrived back at the original next instruction.
    case lost(String)

    var description: String {
        switch self {
        case .completed: return "completed"
        case .fault(let s, let code, let address):
            return "\(String(cString: strsignal(s))) (code \(code), address 0x\(String(address, radix: 16)))"
        case .emulationFailed(let why): return "emulation failed: \(why)"
        case .lost(let why): return "lost: \(why)"
        }
    }

    var isFault: Bool {
        if case .fault = self { return true }
        return false
    }
}

/// What one run left behind: the machine state the engine would hand back to the thread.
struct RunResult {
    var outcome: Outcome
    var registers: user_regs_struct
    var extended: [UInt8]
    var memory: [[UInt8]]
}

/// Compares the result of a relocated form with the original's.
struct RunComparison {
    let extendedLayout: ExtendedStateLayout
    let memory: TouchedMemory
    /// Registers whose value no relocated form can reproduce, for a stated reason (see
    /// `Oracle.unreproducibleRegisters`).
    let ignoring: [GPR: String]

    /// Each difference, described; empty when the two runs agree.
    func differences(original: RunResult, relocated: RunResult) -> [String] {
        var out: [String] = []
        if !outcomesAgree(original.outcome, relocated.outcome) {
            out.append("outcome: \(original.outcome) vs \(relocated.outcome)")
        }
        out += registerDifferences(original.registers, relocated.registers)
        if !extendedEqual(original.extended, relocated.extended) {
            out += extendedLayout.differences(original.extended, relocated.extended)
        }
        out += memory.differences(original.memory, relocated.memory)
        return out
    }

    /// An emulation has no signal to give: a failed emulation matches an original that faulted on
    /// memory, whatever the details.
    private func outcomesAgree(_ a: Outcome, _ b: Outcome) -> Bool {
        if case .fault(let signal, _, _) = a, case .emulationFailed = b { return signal == SIGSEGV || signal == SIGBUS }
        return a == b
    }

    /// The trap flag (bit 8) is the oracle's own single-stepping, the resume flag (bit 16) the
    /// kernel's bookkeeping after a fault.
    static let eflagsCompared: UInt64 = ~(UInt64(0x100) | 0x10000)

    private func registerDifferences(_ a: user_regs_struct, _ b: user_regs_struct) -> [String] {
        var out: [String] = []
        func check(_ name: String, _ x: UInt64, _ y: UInt64) {
            if x != y { out.append("\(name): 0x\(String(x, radix: 16)) vs 0x\(String(y, radix: 16))") }
        }
        for register in GPR.allCases where ignoring[register] == nil {
            check("\(register)", a[gpr: register], b[gpr: register])
        }
        check("eflags", a.eflags & Self.eflagsCompared, b.eflags & Self.eflagsCompared)
        check("fs_base", a.fs_base, b.fs_base)
        check("gs_base", a.gs_base, b.gs_base)
        check("cs", a.cs, b.cs)
        check("ss", a.ss, b.ss)
        check("ds", a.ds, b.ds)
        check("es", a.es, b.es)
        check("fs", a.fs, b.fs)
        check("gs", a.gs, b.gs)
        return out
    }

    private func extendedEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let header = ExtendedStateLayout.header
        guard a.count == b.count, a.count > header.upperBound else { return sameBytes(a, b) }
        return sameBytes(a[..<header.lowerBound], b[..<header.lowerBound])
            && sameBytes(a[header.upperBound...], b[header.upperBound...])
    }
}

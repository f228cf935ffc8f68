import Glibc

/// An instruction the tracer carries out itself while the thread is stopped anyway: control flow
/// (which a copy elsewhere would get wrong: it reads RIP), and the commonest first instructions of a
/// function (`push rbp`, `endbr64`, nops), which saves the single-step a copy would need.
///
/// `apply` states exactly what changes: RIP always; RSP for push, call and ret; RCX for loop; one
/// 8-byte stack word for push and call.
public enum Emulation: Sendable, Hashable, CustomStringConvertible {
    /// nop, endbr64: only RIP moves on.
    case advance(to: UInt64)
    /// push r64: RSP -= 8, [RSP] = register.
    case push(GPR, next: UInt64)
    case jump(BranchTarget)
    case conditionalJump(Condition, target: UInt64, next: UInt64)
    /// loop/loope/loopne: decrement the counter (flags untouched), then branch.
    case loop(LoopKind, counterBits: Int, target: UInt64, next: UInt64)
    /// jrcxz/jecxz: branch when the counter is zero.
    case jumpIfCounterZero(counterBits: Int, target: UInt64, next: UInt64)
    /// call: RSP -= 8, [RSP] = return address, RIP = target.
    case call(BranchTarget, returnAddress: UInt64)
    /// ret / ret imm16: RIP = [RSP], RSP += 8 + popBytes.
    case ret(popBytes: UInt16)

    public enum Condition: Sendable, Hashable {
        case o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
    }

    public enum LoopKind: Sendable, Hashable { case always, whileEqual, whileNotEqual }

    public var description: String {
        switch self {
        case .advance(let to): return "advance to \(hex(to))"
        case .push(let r, _): return "push \(r)"
        case .jump(let t): return "jump \(t)"
        case .conditionalJump(let c, let t, _): return "j\(c) \(hex(t))"
        case .loop(let k, _, let t, _): return "loop(\(k)) \(hex(t))"
        case .jumpIfCounterZero(let bits, let t, _): return "j\(bits == 64 ? "r" : "e")cxz \(hex(t))"
        case .call(let t, _): return "call \(t)"
        case .ret(let n): return n == 0 ? "ret" : "ret \(n)"
        }
    }

    /// Carries the instruction out on `regs` and `memory`.
    public func apply(to regs: inout user_regs_struct, memory: some EmulationMemory) throws {
        switch self {
        case .advance(let to):
            regs.rip = to
        case .push(let register, let next):
            let value = regs[register]
            try memory.writeWord(value, at: regs.rsp &- 8)
            regs.rsp &-= 8
            regs.rip = next
        case .jump(let target):
            regs.rip = try Self.canonical(target.resolve(regs, memory))
        case .conditionalJump(let condition, let target, let next):
            regs.rip = condition.holds(eflags: regs.eflags) ? target : next
        case .loop(let kind, let bits, let target, let next):
            let counter = decrement(&regs.rcx, bits: bits)
            let zf = regs.eflags & (1 << 6) != 0
            let taken = counter != 0 && (kind == .always || (kind == .whileEqual ? zf : !zf))
            regs.rip = taken ? target : next
        case .jumpIfCounterZero(let bits, let target, let next):
            let counter = bits == 64 ? regs.rcx : regs.rcx & 0xffff_ffff
            regs.rip = counter == 0 ? target : next
        case .call(let target, let returnAddress):
            // Resolve before pushing: `call [rsp+8]` reads the stack as it was.
            let destination = try Self.canonical(target.resolve(regs, memory))
            try memory.writeWord(returnAddress, at: regs.rsp &- 8)
            regs.rsp &-= 8
            regs.rip = destination
        case .ret(let popBytes):
            regs.rip = try Self.canonical(memory.readWord(at: regs.rsp))
            regs.rsp &+= 8 &+ UInt64(popBytes)
        }
    }

    /// A branch to a non-canonical address faults on the branch itself (#GP, SIGSEGV with RIP still
    /// on it, nothing pushed or popped); carried out, it would leave RIP where no CPU can put it.
    private static func canonical(_ target: UInt64) throws(EmulationFault) -> UInt64 {
        guard UInt64(bitPattern: Int64(bitPattern: target << 16) >> 16) == target else {
            throw EmulationFault(description: "branch to the non-canonical address \(hex(target))")
        }
        return target
    }

    private func decrement(_ rcx: inout UInt64, bits: Int) -> UInt64 {
        if bits == 64 {
            rcx &-= 1
            return rcx
        }
        // With an address-size prefix, loop counts in ECX, and writing ECX zero-extends into RCX.
        let ecx = UInt32(truncatingIfNeeded: rcx) &- 1
        rcx = UInt64(ecx)
        return UInt64(ecx)
    }
}

/// An emulated instruction that faults where it is, as the CPU would make it (the thread should get
/// SIGSEGV at the site); `apply` has then changed nothing.
public struct EmulationFault: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// Where a jump or call goes.
public enum BranchTarget: Sendable, Hashable, CustomStringConvertible {
    case absolute(UInt64)
    case register(GPR)
    /// An 8-byte pointer in memory: `[base + index*scale + displacement]` (RIP-relative ones are
    /// resolved to an absolute displacement with no base), optionally FS- or GS-relative.
    case memory(base: GPR?, index: GPR?, scale: Int, displacement: Int64, segment: SegmentBase?, addressBits: Int)

    public enum SegmentBase: Sendable, Hashable { case fs, gs }

    public var description: String {
        switch self {
        case .absolute(let a): return hex(a)
        case .register(let r): return "*\(r)"
        case .memory(let b, let i, let s, let d, let seg, _):
            var parts: [String] = []
            if let b { parts.append("\(b)") }
            if let i { parts.append("\(i)*\(s)") }
            if d != 0 || parts.isEmpty { parts.append(d < 0 ? "-\(hex(UInt64(-d)))" : hex(UInt64(d))) }
            let prefix = seg.map { "\($0):" } ?? ""
            return "*\(prefix)[\(parts.joined(separator: "+"))]"
        }
    }

    public func resolve(_ regs: user_regs_struct, _ memory: some EmulationMemory) throws -> UInt64 {
        switch self {
        case .absolute(let address):
            return address
        case .register(let r):
            return regs[r]
        case .memory(let base, let index, let scale, let displacement, let segment, let bits):
            var address = UInt64(bitPattern: displacement)
            if let base { address &+= regs[base] }
            if let index { address &+= regs[index] &* UInt64(scale) }
            if bits == 32 { address &= 0xffff_ffff }
            switch segment {
            case .fs: address &+= regs.fs_base
            case .gs: address &+= regs.gs_base
            case nil: break
            }
            return try memory.readWord(at: address)
        }
    }
}

extension Emulation.Condition {
    /// The jcc condition on RFLAGS (CF bit 0, PF 2, ZF 6, SF 7, OF 11).
    func holds(eflags: UInt64) -> Bool {
        let cf = eflags & 1 != 0, pf = eflags & (1 << 2) != 0, zf = eflags & (1 << 6) != 0
        let sf = eflags & (1 << 7) != 0, of = eflags & (1 << 11) != 0
        switch self {
        case .o: return of
        case .no: return !of
        case .b: return cf
        case .ae: return !cf
        case .e: return zf
        case .ne: return !zf
        case .be: return cf || zf
        case .a: return !cf && !zf
        case .s: return sf
        case .ns: return !sf
        case .p: return pf
        case .np: return !pf
        case .l: return sf != of
        case .ge: return sf == of
        case .le: return zf || sf != of
        case .g: return !zf && sf == of
        }
    }
}

/// The tracee memory an emulation reads and writes (a stack word, a pointer to jump through).
public protocol EmulationMemory {
    func readWord(at address: UInt64) throws -> UInt64
    func writeWord(_ value: UInt64, at address: UInt64) throws
}

extension user_regs_struct {
    /// A general-purpose register by its ModRM number.
    public subscript(register: GPR) -> UInt64 {
        get {
            switch register {
            case .rax: return rax
            case .rcx: return rcx
            case .rdx: return rdx
            case .rbx: return rbx
            case .rsp: return rsp
            case .rbp: return rbp
            case .rsi: return rsi
            case .rdi: return rdi
            case .r8: return r8
            case .r9: return r9
            case .r10: return r10
            case .r11: return r11
            case .r12: return r12
            case .r13: return r13
            case .r14: return r14
            case .r15: return r15
            case .rip: return rip
            }
        }
        set {
            switch register {
            case .rax: rax = newValue
            case .rcx: rcx = newValue
            case .rdx: rdx = newValue
            case .rbx: rbx = newValue
            case .rsp: rsp = newValue
            case .rbp: rbp = newValue
            case .rsi: rsi = newValue
            case .rdi: rdi = newValue
            case .r8: r8 = newValue
            case .r9: r9 = newValue
            case .r10: r10 = newValue
            case .r11: r11 = newValue
            case .r12: r12 = newValue
            case .r13: r13 = newValue
            case .r14: r14 = newValue
            case .r15: r15 = newValue
            case .rip: rip = newValue
            }
        }
    }
}

import Glibc
import Relocator
import Symbols

/// A stack trace at a traced function's entry: the frame-pointer chain when it checks out, else
/// libdwfl's CFI unwinder. At entry the return address is at [rsp] and rbp still belongs to the
/// caller, so a frame-pointer walk starts with the caller's frame.
struct StackCapture {
    let memory: TraceeMemory
    let image: ProcessImage
    /// Frames name functions demangled (`EngineConfiguration.demangles`).
    let demangles: Bool

    func callers(of regs: user_regs_struct, tid: pid_t, depth: Int, unwinder: () -> StackUnwinder?) -> [UInt64] {
        guard depth > 0, let first = try? memory.readWord(at: regs.rsp) else { return [] }
        var frames = [first]
        var rbp = regs.rbp
        // Trusted only if every step checks out until the chain ends (a zero frame pointer or return
        // address: the outermost frame) or the depth is reached.
        var trustworthy = looksLikeReturnAddress(first)
        while trustworthy, frames.count < depth {
            guard rbp > regs.rsp, rbp & 7 == 0, rbp - regs.rsp < 1 << 26,
                  let next = try? memory.readWord(at: rbp + 8), let saved = try? memory.readWord(at: rbp)
            else {
                trustworthy = false
                break
            }
            if next == 0 { break }
            guard looksLikeReturnAddress(next), saved == 0 || saved > rbp else {
                trustworthy = false
                break
            }
            frames.append(next)
            if saved == 0 { break }
            rbp = saved
        }
        if trustworthy { return frames }
        let dwarfRegisters = [regs.rax, regs.rdx, regs.rcx, regs.rbx, regs.rsi, regs.rdi, regs.rbp, regs.rsp,
                              regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.rip]
        let cfi = unwinder()
        let unwound = cfi?.callers(tid: tid, registers: dwarfRegisters, limit: depth) { [memory] address in
            try? memory.readWord(at: address)
        } ?? []
        DebugLog.log("\(tid): stack by CFI, \(unwound.count) frames\(cfi?.lastError.map { " (\($0))" } ?? "")")
        return unwound.count >= frames.count ? unwound : frames
    }

    /// Inside a module, and just after a call instruction (`call rel32`, or `call` through a register
    /// or memory, 2 to 7 bytes long).
    private func looksLikeReturnAddress(_ address: UInt64) -> Bool {
        guard image.module(containing: address) != nil,
              let before = try? memory.read(address - 7, count: 7), before.count == 7 else { return false }
        if before[2] == 0xe8 { return true }
        for length in 2...7 where before[7 - length] == 0xff {
            let modrm = before[8 - length]
            if (modrm >> 3) & 7 == 2 { return true }
        }
        return false
    }

    func symbolize(_ addresses: [UInt64]) -> [StackFrame] {
        addresses.map { address in
            // A return address belongs to the call before it.
            if let function = image.function(containing: address &- 1) {
                return StackFrame(address: address, function: function.shownName(demangling: demangles),
                                  offset: address - function.address, module: function.module.name)
            }
            return StackFrame(address: address, function: nil, offset: 0, module: image.module(containing: address)?.name)
        }
    }
}

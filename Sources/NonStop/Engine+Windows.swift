import CShim
import Glibc
import Relocator
import Symbols

/// The inline strategy's windows, written into the code during one brief all-stop.
extension Engine {
    /// Writes inline windows into the code. Five bytes over code other threads run are safe only with
    /// every thread stopped and none of them — nor any saved PC on their stacks, a signal frame's
    /// included — strictly inside a window's first five bytes. So: one brief all-stop; a thread inside
    /// a window is single-stepped out; a window some stack still points into keeps int3s instead.
    func patchWindows(_ unordered: [PendingWindow], in process: TracedProcess, using thread: TraceeThread) throws(TraceError) {
        // The return windows of watched tail-callees first: the tail calls that count on them follow.
        let pending = unordered.filter { $0.watches != nil } + unordered.filter { $0.watches == nil }
        let stoppedHere = try stopAllThreads(of: process, except: thread)
        defer {
            for t in stoppedHere where threads[t.tid] != nil {
                if t.isInGroupStop { try? listen(t) } else { try? resume(t) }
            }
        }
        var interior: [UInt64: Int] = [:]
        for (i, p) in pending.enumerated() { for address in p.window.interiorBoundaries { interior[address] = i } }
        var blocked: [Int: String] = [:]
        for t in process.threads.values {
            guard let regs = try? Ptrace.getRegs(t.tid) else { continue }  // a new thread that has not run yet
            if interior[regs.rip] != nil, !stepOutOfWindow(t, interior) {
                blocked[interior[regs.rip] ?? 0] = "thread \(t.tid) stays inside it"
            }
        }
        for (index, tid) in savedPointsInside(interior, of: process) {
            blocked[index] = "a saved PC of thread \(tid) (a signal frame?) points inside it"
        }
        let space = process.space
        for (i, p) in pending.enumerated() {
            var reason = blocked[i]
            if reason == nil, let lost = p.dependsOn.first(where: { !space.watchedFunctions.contains($0) }) {
                reason = "the return windows of the function it tail-calls (\(hex(lost))) could not all be written"
            }
            let patches = p.pad.patches(for: p.window)
            if reason == nil, patches == nil { reason = "its jump does not reach the pad" }
            if reason == nil, !codeIsOriginal(p, in: process), !isLeftover(p, in: process) {
                reason = "its bytes in memory differ from the file (another tracer's breakpoint?)"
            }
            if let reason, let watched = p.watches {
                // A watched tail-callee's return not seen would leave its tail-callers open: none of its
                // tail-callers' tail calls is written as a window.
                DebugLog.log("watched return window \(hex(p.window.start)) not written: \(reason)")
                space.watchedFunctions.remove(watched)
                continue
            }
            if let reason {
                DebugLog.log("window \(hex(p.window.start)) not written: \(reason)")
                notice(process, "\(p.function.name): a window at \(hex(p.window.start)) is not written (\(reason)); an int3 stands in")
                if let role = p.internalRole {
                    try makeSite(at: p.entry, in: process, using: thread)?.internalRole = role
                    continue
                }
                if p.window.recordsEntry {
                    try armFallback(InlineFallback(address: p.entry, kind: .entry, reason: reason), of: p.function, in: process, using: thread)
                }
                if p.window.recordsReturn, let ret = p.window.instructions.last {
                    try armFallback(InlineFallback(address: ret.address, kind: .exit, reason: reason), of: p.function, in: process, using: thread)
                }
                if p.window.tailCallTarget != nil, let jump = p.window.instructions.last {
                    try armFallback(InlineFallback(address: jump.address, kind: .tailExit, reason: reason), of: p.function, in: process, using: thread)
                }
                continue
            }
            guard let originals = originalBytes(of: patches ?? [], in: process) else {
                notice(process, "\(p.function.name): the file's bytes for a window at \(hex(p.window.start)) cannot be read; an int3 stands in")
                continue
            }
            if let trapPad = p.trapPad {
                try space.install(p.window, trapPad: trapPad, traps: p.traps, patches: patches ?? [], originals: originals)
            } else {
                try space.install(p.window, patches: patches ?? [], originals: originals)
            }
            statistics.windowsInstalled += 1
        }
        publishStatus()
    }

    /// What the patches replace, as the file has it: what detach puts back.
    private func originalBytes(of patches: [(address: UInt64, bytes: [UInt8])], in process: TracedProcess) -> [[UInt8]]? {
        var originals: [[UInt8]] = []
        for patch in patches {
            guard let bytes = process.image?.fileBytes(at: patch.address, count: patch.bytes.count),
                  bytes.count == patch.bytes.count else { return nil }
            originals.append(bytes)
        }
        return originals
    }

    /// The window is already written by an earlier nstrace that was killed before it could restore it:
    /// its jump leads into nstrace's scratch memory (taken up again at attach). Written over, it is
    /// this session's; restored, it is the file's.
    private func isLeftover(_ p: PendingWindow, in process: TracedProcess) -> Bool {
        let memory = process.space.memory
        guard let site = try? memory.read(p.window.start, count: 5), site.count == 5 else { return false }
        func target(ofJumpAt address: UInt64, _ bytes: [UInt8]) -> UInt64? {
            guard bytes.count == 5, bytes[0] == 0xe9 else { return nil }
            let rel = UInt32(truncatingIfNeeded: littleEndianWord(bytes[1...4]))
            return address &+ 5 &+ UInt64(bitPattern: Int64(Int32(bitPattern: rel)))
        }
        var jump = target(ofJumpAt: p.window.start, site)
        if site[0] == 0xeb {
            let slot = p.window.start &+ 2 &+ UInt64(bitPattern: Int64(Int8(bitPattern: site[1])))
            jump = (try? memory.read(slot, count: 5)).flatMap { target(ofJumpAt: slot, $0) }
        }
        guard let jump, process.space.isScratch(jump) else { return false }
        DebugLog.log("window \(hex(p.window.start)): an earlier nstrace's, left behind; written over")
        return true
    }

    /// The window's bytes (and its padding slot) in memory are still the file's.
    private func codeIsOriginal(_ p: PendingWindow, in process: TracedProcess) -> Bool {
        guard let image = process.image else { return false }
        var ranges: [(UInt64, Int)] = [(p.window.start, p.window.shortJumpSlot == nil ? p.window.patchLength : 2)]
        if let slot = p.window.shortJumpSlot { ranges.append((slot, 5)) }
        for (address, count) in ranges {
            guard let file = image.fileBytes(at: address, count: count), file.count == count,
                  let memory = try? process.space.memory.read(address, count: count), memory == file
            else { return false }
        }
        return true
    }

    /// Single-steps a thread (every other one stopped) until it is out of the windows' first bytes; a
    /// window holds at most a few instructions before its fifth byte. False when it does not leave.
    private func stepOutOfWindow(_ thread: TraceeThread, _ interior: [UInt64: Int]) -> Bool {
        for _ in 0..<16 {
            var injection = SyscallInjection(tid: thread.tid, memory: thread.process.space.memory)
            guard (try? injection.step()) != nil else {
                thread.heldSignals += injection.held
                return false
            }
            thread.heldSignals += injection.held
            thread.holdStop(.signalDelivery)
            guard let regs = try? Ptrace.getRegs(thread.tid) else { return false }
            if interior[regs.rip] == nil { return true }
        }
        return false
    }

    /// Windows some thread's stack points into: every 8-byte word from each thread's stack pointer to
    /// the end of its stack's mapping is compared with the windows' inner instruction boundaries (a
    /// return address can never be one — a window holds no call but as its last instruction — but a
    /// signal frame's saved RIP can). In Go, every goroutine's stack too: one preempted asynchronously
    /// holds the PC it was stopped at. A false match only costs a window.
    private func savedPointsInside(_ interior: [UInt64: Int], of process: TracedProcess) -> [(Int, pid_t)] {
        guard !interior.isEmpty, let maps = ProcFS.text("/proc/\(process.pid)/maps") else { return [] }
        let mappings = maps.split(separator: "\n").compactMap { line -> (UInt64, UInt64)? in
            let range = line.prefix { $0 != " " }.split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { return nil }
            return (start, end)
        }
        var found: [(Int, pid_t)] = []
        func scan(_ start: UInt64, _ end: UInt64, owner: pid_t) {
            guard end > start, let bytes = try? process.space.memory.read(start & ~7, count: Int(min(end &- (start & ~7), 16 << 20)))
            else { return }
            bytes.withUnsafeBytes { raw in
                for offset in stride(from: 0, to: raw.count - 7, by: 8) {
                    if let index = interior[raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)] { found.append((index, owner)) }
                }
            }
        }
        for t in process.threads.values {
            guard let regs = try? Ptrace.getRegs(t.tid),
                  let mapping = mappings.first(where: { regs.rsp >= $0.0 && regs.rsp < $0.1 })
            else { continue }
            scan(regs.rsp, mapping.1, owner: t.tid)
        }
        for (low, high) in goroutineStacks(of: process) { scan(low, high, owner: 0) }
        return found
    }

    /// Every goroutine's stack bounds, from runtime.allgs (at most 512 MiB of stacks in all).
    private func goroutineStacks(of process: TracedProcess) -> [(UInt64, UInt64)] {
        guard let go = process.goRuntime, let image = process.image,
              let module = image.modules.first(where: { image.goRuntime(in: $0) != nil }),
              let allgs = image.address(ofSymbol: "runtime.allgs", in: module),
              let header = try? process.space.memory.read(allgs, count: 16), header.count == 16
        else { return [] }
        func word(_ bytes: [UInt8], _ at: Int) -> UInt64 { littleEndianWord(bytes[at..<at + 8]) }
        let count = Int(min(word(header, 8), 1 << 20))
        guard count > 0, let pointers = try? process.space.memory.read(word(header, 0), count: count * 8),
              pointers.count == count * 8 else { return [] }
        var stacks: [(UInt64, UInt64)] = []
        var total: UInt64 = 0
        for i in 0..<count {
            let g = word(pointers, i * 8)
            guard g != 0, let low = try? process.space.memory.readWord(at: g &+ UInt64(go.stackLowOffset)),
                  let high = try? process.space.memory.readWord(at: g &+ UInt64(go.stackHighOffset)),
                  high > low, high &- low <= 1 << 30
            else { continue }
            total &+= high &- low
            if total > 512 << 20 { break }
            stacks.append((low, high))
        }
        return stacks
    }
}

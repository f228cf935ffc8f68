import Foundation
import Glibc
@testable import NonStop
import Testing
import TestSupport

/// Calls open on one stack while the thread runs on another (ucontext fibers, a sigaltstack handler),
/// and calls made again and again from the same place whose returns cannot be watched.
@Suite(.serialized) struct StacksOfAThread {
    static let exact = ["fib_leaf", "fib_work_a", "fib_work_b", "fib_in_handler"]

    @Test(arguments: ["inline", "jump", "step"])
    func fibersAndSigaltstackHandlersLeaveOtherStacksFramesOpen(strategy: String) throws {
        let binary = try Fixtures.build("fibers", flags: ["-O1", "-g"])
        let traceFile = Paths.scratch.appendingPathComponent("fibers-\(strategy).jsonl").path
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^fib_", "--", binary, "60"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.contains("wrong results 0"), "\(result)")
        let made = fixtureCounts(result.stdout)
        let log = try TraceLog(file: traceFile)
        let calls = log.calls(), returns = log.returns()
        var unwound: [String: Int] = [:]
        for e in log.of("unwound") { unwound[e["function"] as? String ?? "?", default: 0] += 1 }
        for function in Self.exact {
            #expect(made[function] ?? 0 > 0)
            #expect(calls[function] == made[function], "\(function): calls seen vs made")
            #expect(returns[function] == made[function], "\(function): returns seen vs made (unwound: \(unwound[function] ?? 0))")
            #expect(unwound[function] == nil, "\(function) was closed as unwound while its fiber was away")
        }
        // Called from anonymous memory: under the step strategy no breakpoint can watch the return
        // address, so each call is closed (unwound) by the next one, made at the same stack pointer —
        // they do not pile up, one depth deeper each.
        let jit = "fib_jit_target"
        #expect(calls[jit] == made[jit])
        #expect((returns[jit] ?? 0) + (unwound[jit] ?? 0) == made[jit], "\(returns[jit] ?? 0) returns, \(unwound[jit] ?? 0) unwound")
        let depths = Set(log.of("call").filter { $0["function"] as? String == jit }.compactMap { $0["depth"] as? Int })
        #expect(depths.count == 1, "calls from the same place at depths \(depths.sorted().prefix(5))…")
    }
}

/// A stack mapped just after /proc/PID/maps was read is found at once, not taken for no stack (which
/// made frames on a fiber's stack close by distance when a sigaltstack handler ran, under load).
@Test func aStackMappedJustAfterAReadIsFoundAtOnce() throws {
    let mappings = StackMappings(pid: getpid())
    var local = 0
    let here = withUnsafeMutablePointer(to: &local) { UInt64(UInt(bitPattern: $0)) }
    #expect(mappings.stack(of: here).contains(here), "this thread's own stack")
    // Within the millisecond after that read: a new mapping, split by a guard page as fibers' are.
    let size = 3 * 4096
    let base = try mapUntouched(size, PROT_READ | PROT_WRITE, region: 1)
    defer { munmap(base, size) }
    #expect(mprotect(base + 4096, 4096, PROT_NONE) == 0)
    let start = UInt64(UInt(bitPattern: base))
    #expect(mappings.stack(of: start + 8192 + 64) == (start + 8192)..<(start + UInt64(size)))
    #expect(mappings.stack(of: start + 64) == start..<(start + 4096))
}

/// A thread's stack block read between glibc's mmap (one PROT_NONE mapping, merged with the guard page
/// of the stack above it) and its mprotect (guard, stack, and that guard page: three): frames opened
/// while the stale read held return when the fresh one does. Keyed by the mapping's end, they did not
/// (a return lost now and then when threads started while others ran, seen in CI).
@Test func framesOpenedBeforeAThreadStacksGuardWasMadeReturnAfter() throws {
    let page = 4096, size = 4 * page
    // The guard page of "the stack above" is the top page; the new block is the three below it.
    let base = try mapUntouched(size, PROT_NONE, region: 2)
    defer { munmap(base, size) }
    let start = UInt64(UInt(bitPattern: base))
    let mappings = StackMappings(pid: getpid())
    let entrySP = start + UInt64(2 * page) + 512
    let stale = mappings.stack(of: entrySP)
    #expect(stale == start..<(start + UInt64(size)), "one mapping")
    var shadow = ShadowStack()
    _ = shadow.push(.init(function: TracedFunction(name: "f", module: "test", address: 0x1000, signature: nil), entrySP: entrySP, returnAddress: 0, start: 1))

    #expect(mprotect(base + page, 2 * page, PROT_READ | PROT_WRITE) == 0)
    usleep(2000)
    mappings.refresh()
    let fresh = mappings.stack(of: entrySP + 8)
    #expect(fresh == (start + UInt64(page))..<(start + UInt64(3 * page)), "the stack alone: \(fresh)")
    var closed: [ShadowStack.Closed] = []
    shadow.popFrames(at: nil, sp: entrySP + 8, stack: fresh, into: &closed)
    #expect(closed.count == 1 && shadow.depth == 0, "the frame opened under the stale read is over")
    // A frame on another mapping (the guard page's, standing in for another stack) is left open.
    _ = shadow.push(.init(function: TracedFunction(name: "g", module: "test", address: 0x1000, signature: nil), entrySP: start + UInt64(3 * page) + 64,
                          returnAddress: 0, start: 2))
    shadow.popFrames(at: nil, sp: entrySP + 8, stack: fresh, into: &closed)
    #expect(closed.count == 1 && shadow.depth == 1)
}

/// `size` bytes mapped far from this process's other mappings, in a `region` of the address space
/// each test has to itself (tests run side by side: another's mapping there would merge with these, or
/// still be in this test's read of the maps after it is gone, where these now are), so that the ranges
/// StackMappings finds are exactly these.
private func mapUntouched(_ size: Int, _ protection: Int32, region: UInt) throws -> UnsafeMutableRawPointer {
    for attempt in 0..<64 {
        let address = 0x2a00_0000_0000 + (region << 36) + (UInt(getpid() & 0xfff) << 24) + UInt(attempt) << 20
        let mapped = mmap(UnsafeMutableRawPointer(bitPattern: address), size, protection,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        if let mapped, mapped != MAP_FAILED { return mapped }
    }
    throw POSIXError(.EEXIST)
}

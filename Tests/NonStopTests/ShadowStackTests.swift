import Foundation
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

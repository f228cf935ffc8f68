import Foundation
import Testing
import TestSupport

/// setjmp returns once by its own `ret` and once more for every longjmp to its buffer: each return
/// is reported with its value, under every strategy.
@Suite(.serialized) struct SetjmpReturns {
    @Test(arguments: ["inline", "jump", "step"])
    func everyReturnOfSetjmpIsSeenWithItsValue(strategy: String) throws {
        let binary = try Fixtures.build("setjmps", flags: ["-O1", "-g"])
        let traceFile = Paths.scratch.appendingPathComponent("setjmps-\(strategy).jsonl").path
        // The program's setjmp() is glibc's _setjmp, which tail-calls __sigsetjmp; sigsetjmp() is __sigsetjmp.
        let result = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^(_setjmp|__sigsetjmp)$", "--", binary])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdoutLines
        func pointer(_ prefix: String) -> String? { lines.first { $0.hasPrefix(prefix) }?.split(separator: " ").last.map(String.init) }
        func printed(_ prefix: String) -> [Int] { lines.filter { $0.hasPrefix(prefix + " returned ") }.compactMap { Int($0.split(separator: " ").last ?? "") } }
        #expect(printed("setjmp") == [0, 2, 1, 5])
        #expect(printed("sigsetjmp") == [0, 7, 8])
        let env = try #require(pointer("env "))
        let signalEnv = try #require(pointer("signal env "))

        // The events from the program's own call on (libc's start-up code calls _setjmp first).
        let log = try TraceLog(file: traceFile)
        func from(_ function: String, env: String) -> [[String: Any]] {
            guard let start = log.events.firstIndex(where: { event in
                event["event"] as? String == "call" && event["function"] as? String == function
                    && (event["args"] as? [[String: Any]])?.first?["value"] as? String == env
            }) else { return [] }
            return Array(log.events[start...])
        }
        func returns(of function: String, in events: [[String: Any]]) -> [Int] {
            events.filter { $0["event"] as? String == "return" && $0["function"] as? String == function }.compactMap { $0["retval"] as? Int }
        }
        let afterSetjmp = from("_setjmp", env: env)
        #expect(returns(of: "_setjmp", in: afterSetjmp) == [0, 2, 1, 5], "\(strategy)")
        // __sigsetjmp: once tail-called by that _setjmp (its own return only: the second returns are
        // _setjmp's, whose caller the longjmp comes back to), then sigsetjmp's three returns.
        #expect(returns(of: "__sigsetjmp", in: afterSetjmp) == [0, 0, 7, 8], "\(strategy)")
        let afterSigsetjmp = from("__sigsetjmp", env: signalEnv)
        #expect(returns(of: "__sigsetjmp", in: afterSigsetjmp) == [0, 7, 8], "\(strategy)")
        #expect(log.count("call", function: "_setjmp") == 2, "libc's start-up call and the program's")
        // Nothing was traced between the jumps, so nothing was unwound.
        #expect(log.count("unwound") == 0)
    }
}

import Foundation
import Glibc
import Symbols
import Testing

/// /proc/PID/stat read by the one parser that Symbols (a zombie leader's live thread) and NonStop
/// (exiting threads) share.
@Suite struct ProcStatStates {
    @Test func aCommandNameWithParenthesesAndSpacesDoesNotHideTheState() throws {
        // A stopped `sleep` whose name (its file's) holds ") R (": the state is after the last ")".
        let dir = NSTemporaryDirectory() + "procstat-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let program = dir + "/a) R (b"
        try FileManager.default.createSymbolicLink(atPath: program, withDestinationPath: "/bin/sleep")
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: program)
        sleeper.arguments = ["30"]
        try sleeper.run()
        defer {
            kill(sleeper.processIdentifier, SIGKILL)
            sleeper.waitUntilExit()
        }
        let pid = sleeper.processIdentifier
        kill(pid, SIGSTOP)
        let deadline = Date().addingTimeInterval(10)
        while ProcStat.state(of: pid) != "T", Date() < deadline { usleep(10_000) }
        #expect(ProcStat.state(of: pid) == "T")
        #expect(ProcStat.state(of: pid, task: pid) == "T")
    }

    @Test func aTaskThatIsGoneHasNoState() {
        #expect(ProcStat.state(of: getpid(), task: 0x3fff_ffff) == nil)
    }
}

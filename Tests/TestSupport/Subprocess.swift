import Foundation
import Glibc

/// A child process started with posix_spawn, with every signal unblocked and every disposition at its
/// default. (The test runner's threads block most signals, and Foundation's Process passes that mask
/// on: a fixture would never see its own SIGUSR1s, nor nstrace a SIGINT.)
public final class Subprocess: @unchecked Sendable {
    public let pid: pid_t
    private let exited = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var status: Int32?
    public let stdoutHandle: FileHandle?
    public let stderrHandle: FileHandle?

    public enum Output { case pipe, null, inherit }

    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                stdin: String? = nil, stdout: Output = .pipe, stderr: Output = .pipe) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var closeInParent: [Int32] = []
        func pipeFor(_ target: Int32, _ mode: Output) -> FileHandle? {
            switch mode {
            case .inherit: return nil
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
                return nil
            case .pipe:
                var fds: [Int32] = [0, 0]
                _ = pipe(&fds)
                _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
                posix_spawn_file_actions_adddup2(&actions, fds[1], target)
                posix_spawn_file_actions_addclose(&actions, fds[1])
                closeInParent.append(fds[1])
                return FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
            }
        }
        var inputFds: [Int32] = [0, 0]
        if stdin != nil {
            _ = pipe(&inputFds)
            _ = fcntl(inputFds[1], F_SETFD, FD_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, inputFds[0], 0)
            posix_spawn_file_actions_addclose(&actions, inputFds[0])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        stdoutHandle = pipeFor(1, stdout)
        stderrHandle = pipeFor(2, stderr)

        var env = ProcessInfo.processInfo.environment
        if let environment { env.merge(environment) { _, new in new } }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        closeInParent.forEach { close($0) }
        if stdin != nil { close(inputFds[0]) }
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        pid = child
        if let stdin {
            let fd = inputFds[1]
            Thread.detachNewThread {
                _ = stdin.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
        }
        let spawned = child
        Thread.detachNewThread { [self] in
            var raw: Int32 = 0
            while waitpid(spawned, &raw, 0) < 0 && errno == EINTR {}
            lock.lock()
            status = raw
            lock.unlock()
            exited.signal()
        }
    }

    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return status == nil
    }

    /// Waits up to `timeout` seconds; nil if still running.
    public func wait(timeout: TimeInterval) -> Int32? {
        guard exited.wait(timeout: .now() + timeout) == .success else { return nil }
        exited.signal()  // later waits return at once
        return terminationStatus
    }

    /// The exit code, or 128 + signal for a process killed by a signal (as a shell reports it).
    public var terminationStatus: Int32 {
        lock.lock()
        defer { lock.unlock() }
        guard let raw = status else { return -1 }
        if raw & 0x7f == 0 { return (raw >> 8) & 0xff }
        return 128 + (raw & 0x7f)
    }

    public func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }
}

import Glibc
import Symbols

/// One traced process (thread group).
final class TracedProcess {
    let pid: pid_t
    var space: AddressSpace
    var image: ProcessImage? {
        didSet { unwinder = nil }
    }
    /// libdwfl's CFI unwinder over the same modules, made when a stack trace first needs it.
    var unwinder: StackUnwinder?
    var threads: [pid_t: TraceeThread] = [:]
    /// Whether events about it are reported: false for a child nstrace only cleans up after (a fork
    /// without -f) or carries until its exec (a vfork without -f).
    var reportsEvents: Bool
    /// Breakpoints on its functions are in place (after attach, or once a launched program reaches its
    /// entry point).
    var installed = false
    /// For a fork child without -f: remove every breakpoint and detach at its first stop.
    var cleanUpAndDetach = false
    /// The modules whose functions the pattern has been matched against: a dlopen installs only the
    /// new ones' sites.
    var installedModules: Set<Module> = []
    /// A launched program: nstrace exits with its status.
    let launched: Bool
    /// A notice that a uprobe fired in it was given.
    var toldOfUprobes = false
    /// runtime.g's layout when the program is written in Go.
    var goRuntime: GoRuntime?
    /// Open traced calls per goroutine (Go programs); C keeps them per thread. Kept by the process, not
    /// the thread: a thread's last records may be read after its end was reported.
    var goroutineStacks: [CallContext.Goroutine: ShadowStack] = [:]
    var threadStacks: [pid_t: ThreadShadowStack] = [:]
    /// Which mapping each stack pointer is in: frames on different stacks do not close each other.
    let stacks: StackMappings
    /// What `--follow-calls` has followed in this image.
    var followed = FollowedCalls()

    init(pid: pid_t, space: AddressSpace, reportsEvents: Bool, launched: Bool) {
        self.pid = pid
        self.space = space
        self.reportsEvents = reportsEvents
        self.launched = launched
        stacks = StackMappings(pid: pid)
    }
}

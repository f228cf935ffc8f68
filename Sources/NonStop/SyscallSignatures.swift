/// How to read each argument of the syscalls nstrace knows by shape: the kernel ABI's types (paths,
/// fds, open flags, modes), the rest raw. A syscall missing here shows its six registers in hex.
enum SyscallParameter {
    case signed
    case unsigned
    case hex
    case fd
    /// A directory fd: AT_FDCWD by name.
    case dirfd
    /// A NUL-terminated string read at entry (a path).
    case path
    /// A buffer the tracee hands in, `count` bytes long (the argument at that index): read at entry.
    case inBuffer(count: Int)
    /// A buffer the kernel fills: read at exit, as many bytes as the result says.
    case outBuffer
    case openFlags
    /// A mode, shown only when the flags at that index create a file.
    case createMode(flags: Int)
    case mode
    case signal
}

struct SyscallSignature {
    let parameters: [(name: String, kind: SyscallParameter)]
    var returnsAddress = false

    init(_ parameters: [(String, SyscallParameter)], returnsAddress: Bool = false) {
        self.parameters = parameters.map { (name: $0.0, kind: $0.1) }
        self.returnsAddress = returnsAddress
    }

    /// By name, so that the table reads like the kernel's SYSCALL_DEFINEs.
    static let known: [String: SyscallSignature] = [
        "read": .init([("fd", .fd), ("buf", .outBuffer), ("count", .unsigned)]),
        "write": .init([("fd", .fd), ("buf", .inBuffer(count: 2)), ("count", .unsigned)]),
        "pread64": .init([("fd", .fd), ("buf", .outBuffer), ("count", .unsigned), ("pos", .signed)]),
        "pwrite64": .init([("fd", .fd), ("buf", .inBuffer(count: 2)), ("count", .unsigned), ("pos", .signed)]),
        "open": .init([("filename", .path), ("flags", .openFlags), ("mode", .createMode(flags: 1))]),
        "openat": .init([("dfd", .dirfd), ("filename", .path), ("flags", .openFlags), ("mode", .createMode(flags: 2))]),
        "creat": .init([("pathname", .path), ("mode", .mode)]),
        "close": .init([("fd", .fd)]),
        "stat": .init([("filename", .path), ("statbuf", .hex)]),
        "lstat": .init([("filename", .path), ("statbuf", .hex)]),
        "fstat": .init([("fd", .fd), ("statbuf", .hex)]),
        "newfstatat": .init([("dfd", .dirfd), ("filename", .path), ("statbuf", .hex), ("flag", .hex)]),
        "statx": .init([("dfd", .dirfd), ("filename", .path), ("flags", .hex), ("mask", .hex), ("buffer", .hex)]),
        "access": .init([("filename", .path), ("mode", .signed)]),
        "faccessat": .init([("dfd", .dirfd), ("filename", .path), ("mode", .signed)]),
        "faccessat2": .init([("dfd", .dirfd), ("filename", .path), ("mode", .signed), ("flags", .hex)]),
        "execve": .init([("filename", .path), ("argv", .hex), ("envp", .hex)]),
        "execveat": .init([("fd", .dirfd), ("filename", .path), ("argv", .hex), ("envp", .hex), ("flags", .hex)]),
        "unlink": .init([("pathname", .path)]),
        "unlinkat": .init([("dfd", .dirfd), ("pathname", .path), ("flag", .hex)]),
        "mkdir": .init([("pathname", .path), ("mode", .mode)]),
        "mkdirat": .init([("dfd", .dirfd), ("pathname", .path), ("mode", .mode)]),
        "rmdir": .init([("pathname", .path)]),
        "chdir": .init([("filename", .path)]),
        "rename": .init([("oldname", .path), ("newname", .path)]),
        "renameat2": .init([("olddfd", .dirfd), ("oldname", .path), ("newdfd", .dirfd), ("newname", .path), ("flags", .hex)]),
        "readlink": .init([("path", .path), ("buf", .outBuffer), ("bufsiz", .signed)]),
        "readlinkat": .init([("dfd", .dirfd), ("pathname", .path), ("buf", .outBuffer), ("bufsiz", .signed)]),
        "chmod": .init([("filename", .path), ("mode", .mode)]),
        "truncate": .init([("path", .path), ("length", .signed)]),
        "ftruncate": .init([("fd", .fd), ("length", .signed)]),
        "lseek": .init([("fd", .fd), ("offset", .signed), ("whence", .signed)]),
        "dup": .init([("fildes", .fd)]),
        "dup2": .init([("oldfd", .fd), ("newfd", .fd)]),
        "dup3": .init([("oldfd", .fd), ("newfd", .fd), ("flags", .openFlags)]),
        "pipe2": .init([("fildes", .hex), ("flags", .openFlags)]),
        "fcntl": .init([("fd", .fd), ("cmd", .signed), ("arg", .hex)]),
        "ioctl": .init([("fd", .fd), ("cmd", .hex), ("arg", .hex)]),
        "fsync": .init([("fd", .fd)]),
        "getdents64": .init([("fd", .fd), ("dirent", .hex), ("count", .unsigned)]),
        "mmap": .init([("addr", .hex), ("len", .unsigned), ("prot", .hex), ("flags", .hex), ("fd", .fd), ("off", .hex)],
                      returnsAddress: true),
        "munmap": .init([("addr", .hex), ("len", .unsigned)]),
        "mprotect": .init([("start", .hex), ("len", .unsigned), ("prot", .hex)]),
        "brk": .init([("brk", .hex)], returnsAddress: true),
        "getpid": .init([]), "gettid": .init([]), "getppid": .init([]), "getuid": .init([]), "geteuid": .init([]),
        "getgid": .init([]), "getegid": .init([]), "sched_yield": .init([]), "fork": .init([]), "vfork": .init([]),
        "pause": .init([]), "sync": .init([]),
        "exit": .init([("error_code", .signed)]),
        "exit_group": .init([("error_code", .signed)]),
        "kill": .init([("pid", .signed), ("sig", .signal)]),
        "tkill": .init([("pid", .signed), ("sig", .signal)]),
        "tgkill": .init([("tgid", .signed), ("pid", .signed), ("sig", .signal)]),
        "nanosleep": .init([("rqtp", .hex), ("rmtp", .hex)]),
        "clock_nanosleep": .init([("which_clock", .signed), ("flags", .hex), ("rqtp", .hex), ("rmtp", .hex)]),
        "futex": .init([("uaddr", .hex), ("op", .signed), ("val", .unsigned), ("utime", .hex), ("uaddr2", .hex), ("val3", .unsigned)]),
        "socket": .init([("family", .signed), ("type", .hex), ("protocol", .signed)]),
        "connect": .init([("fd", .fd), ("uservaddr", .hex), ("addrlen", .signed)]),
        "accept": .init([("fd", .fd), ("upeer_sockaddr", .hex), ("upeer_addrlen", .hex)]),
        "accept4": .init([("fd", .fd), ("upeer_sockaddr", .hex), ("upeer_addrlen", .hex), ("flags", .hex)]),
        "bind": .init([("fd", .fd), ("umyaddr", .hex), ("addrlen", .signed)]),
        "listen": .init([("fd", .fd), ("backlog", .signed)]),
        "sendto": .init([("fd", .fd), ("buff", .inBuffer(count: 2)), ("len", .unsigned), ("flags", .hex), ("addr", .hex), ("addr_len", .signed)]),
        "recvfrom": .init([("fd", .fd), ("ubuf", .outBuffer), ("size", .unsigned), ("flags", .hex), ("addr", .hex), ("addr_len", .hex)]),
        "shutdown": .init([("fd", .fd), ("how", .signed)]),
        "poll": .init([("ufds", .hex), ("nfds", .unsigned), ("timeout_msecs", .signed)]),
        "epoll_wait": .init([("epfd", .fd), ("events", .hex), ("maxevents", .signed), ("timeout", .signed)]),
        "rt_sigaction": .init([("sig", .signal), ("act", .hex), ("oact", .hex), ("sigsetsize", .unsigned)]),
        "rt_sigprocmask": .init([("how", .signed), ("nset", .hex), ("oset", .hex), ("sigsetsize", .unsigned)]),
        "set_tid_address": .init([("tidptr", .hex)]),
        "arch_prctl": .init([("option", .hex), ("arg2", .hex)]),
        "prctl": .init([("option", .signed), ("arg2", .hex), ("arg3", .hex), ("arg4", .hex), ("arg5", .hex)]),
        "getrandom": .init([("buf", .hex), ("count", .unsigned), ("flags", .hex)]),
        "wait4": .init([("upid", .signed), ("stat_addr", .hex), ("options", .hex), ("ru", .hex)]),
        "clone": .init([("clone_flags", .hex), ("newsp", .hex), ("parent_tidptr", .hex), ("child_tidptr", .hex), ("tls", .hex)]),
        "clone3": .init([("uargs", .hex), ("size", .unsigned)]),
    ]

    static let byNumber: [SyscallSignature?] = (0...SyscallSelection.highestNumber).map { number in
        SyscallSelection.name(of: number).flatMap { known[$0] }
    }

    static func of(_ number: Int) -> SyscallSignature? {
        number >= 0 && number < byNumber.count ? byNumber[number] : nil
    }
}

/// open(2)'s flags as strace spells them: the access mode, then each flag, then what is left in hex.
func openFlagsText(_ value: UInt64) -> String {
    let modes = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"]
    var parts = [modes[Int(value & 3)]]
    var rest = value & ~3
    // O_SYNC includes O_DSYNC's bit: named first so the bit is not named twice.
    let flags: [(UInt64, String)] = [
        (0o4010000, "O_SYNC"), (0o20200000, "O_TMPFILE"),
        (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
    ]
    for (bits, name) in flags where rest & bits == bits {
        parts.append(name)
        rest &= ~bits
    }
    if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
    return parts.joined(separator: "|")
}

import Glibc
import Symbols

/// A function nstrace has a breakpoint on, shared by every event about it.
public final class TracedFunction: @unchecked Sendable, CustomStringConvertible {
    /// As shown: demangled unless `--no-demangle` (`Function.shownName`).
    public let name: String
    /// The symbol itself (`_ZN4shop5checkERKNS_5OrderE`); the same as `name` for a C function.
    public let symbol: String
    public let module: String
    public let address: UInt64
    public let signature: Signature?
    /// Its returns are seen at its own `ret`s (the inline strategy's windows, or int3s there), not at
    /// its callers' return addresses.
    public let returnsSeenAtExits: Bool
    /// Its number in events (`Event.function`), given by the engine thread when it first reports it;
    /// -1 until then. Read by renderers only through `EventBatch.newFunctions`.
    var eventID: Int32 = -1

    /// setjmp and its kin: besides its own return, it returns again each time a longjmp comes back to
    /// its caller's return address, which is therefore watched by a breakpoint.
    public let returnsTwice: Bool

    /// Traced only because a root calls it (`--follow-calls`): its calls are shown inside a root's
    /// call, to the depth asked for, and nowhere else.
    public let isCallee: Bool

    /// An argument or its result is in an xmm register: a trap pad's stop passes on the xmm0–7 it left
    /// in the stop slot, and no PTRACE_GETFPREGS is needed.
    let usesVectorRegisters: Bool
    /// How a trap pad's stop shows its values from the stop slot: planned at its first such stop (the
    /// plan depends on `--deref`), by the engine's thread alone.
    var slotValues: SlotValuePlan?

    public init(name: String, symbol: String? = nil, module: String, address: UInt64, signature: Signature?,
                returnsSeenAtExits: Bool = false, returnsTwice: Bool = false, isCallee: Bool = false) {
        self.name = name
        self.symbol = symbol ?? name
        self.module = module
        self.address = address
        self.signature = signature
        self.returnsSeenAtExits = returnsSeenAtExits
        self.returnsTwice = returnsTwice
        self.isCallee = isCallee
        usesVectorRegisters = ((signature?.parameters ?? []) + (signature?.results ?? [])).contains { parameter in
            func vector(_ r: Register) -> Bool { if case .xmm = r { return true }; return false }
            switch parameter.location {
            case .register(let r): return vector(r)
            case .pieces(let pieces): return pieces.contains { vector($0.register) }
            default: return false
            }
        }
    }

    public var description: String { name }
}

/// One thing that happened in a tracee, as the engine's slower paths (breakpoint stops, thread and
/// process events) describe it; `Engine.emit` packs it into an `Event` of the batch.
enum TraceEvent {
    /// `stack`: the callers, innermost first, when stack traces were asked for.
    case call(function: TracedFunction, depth: Int, arguments: [ArgumentValue], stack: [StackFrame])
    case ret(function: TracedFunction, depth: Int, value: ArgumentValue?, duration: UInt64)
    /// A frame closed without returning: longjmp, an exception, or the thread ended inside it.
    case unwound(function: TracedFunction, depth: Int, duration: UInt64)
    case threadStart
    case threadExit(status: Int32)
    case signal(Int32)
    case fork(child: pid_t)
    case exec(path: String)
    case exit(ExitStatus)
    case attach
    case detach
    case lost(LostEvents)
    /// Something the user should know that is not a failure: an untraceable function, say.
    case notice(String)
    /// A syscall that returned (`-S`), and how long it took.
    case syscall(SyscallEvent, duration: UInt64)
}

/// Events nstrace could not report, and why.
public struct LostEvents: Sendable, Equatable {
    public let calls: Int
    public let returns: Int
    /// Other events (a record nstrace could not read, an event the output had no room for).
    public let others: Int
    public let cause: String

    public init(calls: Int, returns: Int, others: Int, cause: String) {
        self.calls = calls
        self.returns = returns
        self.others = others
        self.cause = cause
    }

    public var count: Int { calls &+ returns &+ others }

    /// Both counts together, under this cause.
    public func adding(_ other: LostEvents) -> LostEvents {
        LostEvents(calls: calls &+ other.calls, returns: returns &+ other.returns, others: others &+ other.others, cause: cause)
    }
}

/// One caller in a stack trace: a return address and what it falls in.
public struct StackFrame: Sendable, Equatable {
    public let address: UInt64
    public let function: String?
    public let offset: UInt64
    public let module: String?

    public init(address: UInt64, function: String?, offset: UInt64, module: String?) {
        self.address = address
        self.function = function
        self.offset = offset
        self.module = module
    }
}

public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case killed(signal: Int32, coreDumped: Bool)

    public var description: String {
        switch self {
        case .exited(let code): return "exited with \(code)"
        case .killed(let signal, let core): return "killed by \(signalName(signal))\(core ? " (core dumped)" : "")"
        }
    }
}

/// A value read from a tracee as the function saw it: at entry for arguments, at return for results.
public enum ArgumentValue: Sendable, Equatable {
    case signed(Int64)
    case unsigned(UInt64)
    case bool(Bool)
    case char(UInt8)
    case float(Double)
    case pointer(UInt64)
    /// A C string: its bytes (without the NUL), whether it went on past the limit, its address.
    case string([UInt8], truncated: Bool, address: UInt64)
    /// A pointer to char that does not point at readable memory.
    case badString(address: UInt64)
    /// A Go string or slice header: data pointer and length (and a preview of the bytes for strings).
    case goString([UInt8], truncated: Bool, length: UInt64)
    /// A Go slice header and its first elements.
    case goSlice(address: UInt64, length: UInt64, capacity: UInt64, elements: [ArgumentValue])
    /// A Go interface value: its type (or itab) word and data word; both zero for nil.
    case goInterface(type: UInt64, data: UInt64)
    /// A struct or union whose fields DWARF does not describe (Go's, an opaque one): its raw bytes.
    case aggregate([UInt8])
    /// Several results (Go).
    case tuple([ArgumentValue])
    case unavailable
    /// `__int128` or `unsigned __int128`: its two words, low first.
    case int128(low: UInt64, high: UInt64, signed: Bool)
    /// An x87 `long double`: its 80 bits exactly.
    case longDouble(X87Bits)
    /// A struct or union (or `_Complex`) by its fields, in order; nested ones to a bound.
    case structure([Field])
    /// A C array: its first elements, and how many it has.
    case array([ArgumentValue], count: Int)
    /// A pointer followed one level (`--deref`): its address and what is there.
    indirect case pointee(address: UInt64, value: ArgumentValue)
    /// A pointer `--deref` could not follow: nothing readable at the address.
    case unreadablePointer(UInt64)

    public struct Field: Sendable, Equatable {
        public let name: String
        public let value: ArgumentValue

        public init(_ name: String, _ value: ArgumentValue) {
            self.name = name
            self.value = value
        }
    }
}

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// SIGUSR1 rather than 10.
public func signalName(_ signal: Int32) -> String {
    let names = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
                 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
                 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
                 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
                 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"]
    if let name = names[Int(signal)] { return name }
    if signal >= 34 && signal <= 64 { return "SIGRTMIN+\(signal - 34)" }
    return "signal \(signal)"
}

/// An x87 `long double`'s 80 bits, held as integers. Values carry these rather than a `Float80`: the
/// compiler moves a `Float80` in an enum's payload with `fldt`/`fstpt`, whatever case the enum holds
/// — exact on the CPU, but valgrind computes x87 in 64 bits, and under callgrind that garbled the
/// other cases' payloads (a string's pointer). A `Float80` is made only where a number is printed.
public struct X87Bits: Hashable, Sendable {
    /// The significand, integer bit included.
    public var significand: UInt64
    /// The sign and the exponent.
    public var signAndExponent: UInt16

    public init(significand: UInt64, signAndExponent: UInt16) {
        self.significand = significand
        self.signAndExponent = signAndExponent
    }

    /// The first ten of `bytes`, little-endian, as the x87 stores them; nil if there are fewer.
    public init?<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count >= 10 else { return nil }
        significand = littleEndianWord(bytes.prefix(8))
        signAndExponent = UInt16(truncatingIfNeeded: littleEndianWord(bytes.dropFirst(8).prefix(2)))
    }

    /// The number, bit for bit (pseudo-denormals and unnormals as they are).
    public var value: Float80 {
        var value = Float80(0)
        withUnsafeMutableBytes(of: &value) { out in
            out.storeBytes(of: significand.littleEndian, toByteOffset: 0, as: UInt64.self)
            out.storeBytes(of: signAndExponent.littleEndian, toByteOffset: 8, as: UInt16.self)
        }
        return value
    }
}


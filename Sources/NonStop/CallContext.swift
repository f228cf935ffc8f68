import Glibc
import Symbols

/// Whose calls a stop belongs to. In C that is the thread's. In a Go program it is the goroutine's
/// running on the thread: goroutines move between threads, so their calls and returns can happen on
/// different ones, and a goroutine's stack is copied elsewhere when it grows, so raw stack pointers
/// cannot be compared across a call either.
struct CallContext {
    /// The goroutine (its g's address, and its id for people), or nil for the thread itself.
    let goroutine: Goroutine?
    /// The stack pointer on a scale that survives stack copying: for a goroutine, measured down from
    /// the top of its stack (the runtime copies the used part to the top of the new stack).
    let stackPointer: UInt64

    struct Goroutine: Hashable {
        let g: UInt64
        let id: Int64
    }

    /// A goroutine's stack pointer measured down from the top of its stack, which survives the
    /// runtime copying the stack (values from the tracee: wrapping arithmetic, no trap).
    static func goroutineScale(sp: UInt64, stackHigh: UInt64) -> UInt64 {
        (1 << 62) &- (stackHigh &- sp)
    }
}

extension Engine {
    /// Under the register ABI R14 holds the running goroutine's g in Go code. Trusted only when that
    /// g's stack bounds hold the thread's stack pointer.
    func callContext(_ thread: TraceeThread, regs: user_regs_struct) -> CallContext {
        guard let go = thread.process.goRuntime, regs.r14 != 0 else {
            return CallContext(goroutine: nil, stackPointer: regs.rsp)
        }
        let span = max(go.goidOffset, go.stackLowOffset, go.stackHighOffset) + 8
        guard let bytes = try? thread.process.space.memory.read(regs.r14, count: span), bytes.count == span else {
            return CallContext(goroutine: nil, stackPointer: regs.rsp)
        }
        func word(_ offset: Int) -> UInt64 { littleEndianWord(bytes[offset..<offset + 8]) }
        let low = word(go.stackLowOffset), high = word(go.stackHighOffset)
        guard low < high, regs.rsp >= low, regs.rsp < high else {
            return CallContext(goroutine: nil, stackPointer: regs.rsp)
        }
        let goroutine = CallContext.Goroutine(g: regs.r14, id: Int64(bitPattern: word(go.goidOffset)))
        return CallContext(goroutine: goroutine, stackPointer: CallContext.goroutineScale(sp: regs.rsp, stackHigh: high))
    }

    /// The shadow stack of the context: the goroutine's, else the thread's.
    /// Mutated in place (no copy of its frames per call). A thread's stays, empty or not, until the
    /// thread ends; a goroutine's is dropped when it empties (goroutines come and go by the million).
    func withShadowStack<T>(_ process: TracedProcess, _ tid: pid_t, _ goroutine: CallContext.Goroutine?,
                            _ body: (inout ShadowStack) -> T) -> T {
        if let goroutine {
            let result = body(&process.goroutineStacks[goroutine, default: ShadowStack()])
            if process.goroutineStacks[goroutine]?.depth == 0 { process.goroutineStacks[goroutine] = nil }
            return result
        }
        // Records come in runs of one thread's: no lookup per record. Stops of threads taking turns
        // look the thread up once each, and its stack is changed where it is kept.
        if lastStackOwner?.tid != tid || lastStackOwner?.process != ObjectIdentifier(process) { findStack(process, tid) }
        return body(&lastStack.stack)
    }

    /// Makes the thread's shadow stack the last one (`lastStack`), found in its process's table or
    /// put there. Apart, so that `withShadowStack` stays small enough to be inlined where it is used
    /// (its callers' closures then capture nothing by copy).
    @inline(never)
    private func findStack(_ process: TracedProcess, _ tid: pid_t) {
        if let known = process.threadStacks[tid] {
            lastStack = known
        } else {
            lastStack = ThreadShadowStack()
            process.threadStacks[tid] = lastStack
        }
        lastStackOwner = (ObjectIdentifier(process), tid)
        lastStackProcess = process
    }
}

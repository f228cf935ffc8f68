extension RelocationPlan {
    /// For a plan single-stepped in a per-thread slot: the code that goes right after the relocated
    /// instruction when a thread may run on past it with no tracer to fix it up (a detach that could
    /// not wait for its step lets it go from inside the slot). It does what the engine's fix-up does —
    /// the borrowed register gets the thread's own value back (`savedScratch`), a stepped pushf's flags
    /// lose the trap flag — then jumps to `resumeAt`. `base` is where the code goes.
    public func slotWayBack(at base: UInt64, savedScratch: UInt64?) -> [UInt8] {
        var writer = X86Writer(base: base)
        if let scratch, let savedScratch { writer.putMovImm64(scratch.register, savedScratch) }
        if clearsTrapFlagOnStack {
            // [rsp] holds the flags the pushf pushed, which are the program's flags: the `and` clears
            // TF there (and clobbers the live flags), popfq takes them back without it, pushfq puts them
            // back where they were. Nothing is written below the stack pointer (a red zone may be there).
            writer.putAndStore(~0x100, base: .rsp, displacement: 0)
            writer.putPopfq()
            writer.putPushfq()
        }
        // A jump out of rel32 reach reads its target from memory: aligned, so that a program running
        // with the alignment-check flag set (a relocated popf can set it) takes no #AC there.
        if Int32(exactly: Int64(bitPattern: resumeAt) &- Int64(bitPattern: writer.pc &+ 5)) == nil {
            while (writer.pc &+ 6) % 8 != 0 { writer.putNop() }
        }
        writer.putJmpAddress(resumeAt)
        return writer.code
    }
}

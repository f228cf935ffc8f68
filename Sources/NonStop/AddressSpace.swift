import Glibc
import Relocator
import Symbols

/// One address space's breakpoints and scratch memory. Threads of a process share it, and so does a
/// vfork child until it execs.
final class AddressSpace {
    let memory: TraceeMemory
    private(set) var sites: [UInt64: Site] = [:]
    /// The site each trampoline serves, by the trampoline's address.
    private(set) var trampolines: [UInt64: Site] = [:]
    private(set) var regions: [ScratchRegion] = []
    /// Step slots handed out to threads, by tid.
    var slots: [pid_t: UInt64] = [:]
    private var freeSlots: [UInt64] = []
    /// Inline windows written into the code, by their start.
    private(set) var windows: [UInt64: InstalledWindow] = [:]
    /// The int3s of the jump strategy's trap pads, by address.
    private(set) var traps: [UInt64: TrapSite] = [:]
    /// Where the trap pads' relocated instructions came from, by their address in a pad: only the ones
    /// a signal handler may return to (not inside the bytes the window's jump overwrote).
    private(set) var padOrigins: [UInt64: UInt64] = [:]
    /// The inline strategy's ring and probes (shared with a fork child nstrace follows).
    var inline: InlineTrace?
    /// Functions whose sites are decided as windows (inline pads or trap pads) or int3 fallbacks, by
    /// address.
    var inlineFunctions: Set<UInt64> = []
    /// Functions whose returns are watched by windows for the traced functions that tail-call them.
    var watchedFunctions: Set<UInt64> = []
    /// How pads here learn their thread id, once worked out.
    var threadIdentity: PadEnvironment.ThreadIdentity?
    /// Where trap pads leave a stopping thread's registers (shared with a fork child, as the memory is);
    /// nil until made, or when they cannot be (`stopSlotsTried`).
    var stopSlots: StopSlots?
    var stopSlotsTried = false

    static let regionSize: UInt64 = 256 * 1024
    static let slotSize = 32

    /// This address space's patches in the crash guard's table, by the site, window or trap they
    /// belong to.
    private let guardOwner = CrashGuard.newOwner()
    private var guarded: [UInt64: [Int32]] = [:]

    init(memory: TraceeMemory) {
        self.memory = memory
    }

    deinit { CrashGuard.forget(owner: guardOwner) }

    /// Registers patches with the crash guard before they are written.
    private func guardPatches(_ key: UInt64, _ patches: [(address: UInt64, original: [UInt8], patched: [UInt8])], kind: CrashGuard.Kind) {
        for patch in patches {
            let index = CrashGuard.patch(owner: guardOwner, pid: memory.pid, at: patch.address, original: patch.original,
                                         patched: patch.patched, kind: kind)
            if index >= 0 { guarded[key, default: []].append(index) }
        }
    }

    private func unguard(_ key: UInt64) {
        for index in guarded.removeValue(forKey: key) ?? [] { CrashGuard.unpatch(index) }
    }

    private func unguard(where gone: (UInt64) -> Bool) {
        for key in guarded.keys where gone(key) { unguard(key) }
    }

    /// Forgets every patch of this address space in the crash guard (an exec replaced it).
    func forgetGuarded() {
        CrashGuard.forget(owner: guardOwner)
        guarded = [:]
    }

    /// The bookkeeping of a forked child: the same sites and regions at the same addresses (fork
    /// copied the memory), reached through the child's own /proc/PID/mem. Only the sites whose int3 is
    /// in the child's memory: one armed by another thread after the kernel copied the memory, but before
    /// nstrace saw the fork event, exists in the parent alone. (Regions are shared objects, so the two
    /// processes never hand out the same chunk.)
    func copy(for memory: TraceeMemory) -> AddressSpace {
        let space = AddressSpace(memory: memory)
        space.sites = sites.filter { address, _ in (try? memory.read(address, count: 1)) == [0xcc] }
        space.trampolines = trampolines.filter { space.sites[$0.value.address] != nil }
        space.regions = regions
        space.freeSlots = freeSlots + slots.values
        space.windows = windows.filter { _, installed in installed.isPresent(in: memory) }
        space.traps = traps
        space.padOrigins = padOrigins
        space.inline = inline
        space.inlineFunctions = inlineFunctions
        space.watchedFunctions = watchedFunctions
        space.threadIdentity = threadIdentity
        space.stopSlots = stopSlots
        space.stopSlotsTried = stopSlotsTried
        for site in space.sites.values { space.guardPatches(site.address, [(site.address, [site.originalByte], [0xcc])], kind: .int3) }
        for installed in space.windows.values { space.guardWindow(installed) }
        for trap in space.traps.values { space.guardPatches(trap.address, [(trap.address, [0x90], [0xcc])], kind: .trapPad) }
        return space
    }

    func site(at address: UInt64) -> Site? { sites[address] }

    func trap(at address: UInt64) -> TrapSite? { traps[address] }

    /// The program's address of the trap-pad instruction at `address`, where a fault there belongs.
    func padOrigin(of address: UInt64) -> UInt64? { padOrigins[address] }

    /// Code bytes as the program has them: any int3 of ours in the range replaced by its original byte.
    func originalCode(at address: UInt64, count: Int) throws(TraceError) -> [UInt8] {
        var bytes = try memory.read(address, count: count)
        for i in bytes.indices where bytes[i] == 0xcc {
            if let site = sites[address &+ UInt64(i)] { bytes[i] = site.originalByte }
        }
        return bytes
    }

    /// Arms a site: its trampoline (if any) first, then the int3.
    func arm(_ site: Site) throws(TraceError) {
        if let plan = site.jumpPlan, plan.kind == .trampoline {
            try memory.write(plan.code, at: plan.runAt)
            trampolines[plan.runAt] = site
        }
        if sites[site.address] == nil { guardPatches(site.address, [(site.address, [site.originalByte], [0xcc])], kind: .int3) }
        try memory.write([0xcc], at: site.address)
        sites[site.address] = site
    }

    /// Forgets a site whose code someone else replaced (it is not nstrace's to restore any more).
    func forget(_ site: Site) {
        sites[site.address] = nil
        if let plan = site.jumpPlan, plan.kind == .trampoline { trampolines[plan.runAt] = nil }
        unguard(site.address)
    }

    /// Puts back every original byte where nstrace's int3 still is. Memory that is gone (a dlclose'd
    /// library) or that now holds something else is left alone.
    func disarmAll() -> Int {
        var restored = 0
        for site in sites.values where (try? memory.read(site.address, count: 1)) == [0xcc] {
            if (try? memory.write([site.originalByte], at: site.address)) != nil { restored += 1 }
        }
        for address in sites.keys { unguard(address) }
        sites.removeAll()
        trampolines.removeAll()
        return restored
    }

    /// The address ranges of modules unmapped since the sites were last checked (dlclose).
    var vanishedModules: [Range<UInt64>] = []

    /// Forgets the sites, windows and decisions of the modules that are gone (after dlclose): only
    /// theirs, so a dlopen or dlclose costs what changed, not a read of every site.
    func forgetVanishedSites() {
        guard !vanishedModules.isEmpty else { return }
        let gone = vanishedModules
        vanishedModules = []
        func vanished(_ address: UInt64) -> Bool { gone.contains { $0.contains(address) } }
        unguard(where: vanished)
        sites = sites.filter { !vanished($0.key) }
        trampolines = trampolines.filter { sites[$0.value.address] != nil }
        windows = windows.filter { !vanished($0.key) }
        traps = traps.filter { windows[$0.value.window] != nil }
        inlineFunctions = inlineFunctions.filter { !vanished($0) }
        watchedFunctions = watchedFunctions.filter { !vanished($0) }
    }

    // MARK: Inline windows

    /// Writes a window's jump (the padding slot first, then the site); `originals` (the file's bytes
    /// there) go back at detach. Only while no thread of the address space runs.
    func install(_ window: InlineWindow, patches: [(address: UInt64, bytes: [UInt8])], originals: [[UInt8]]) throws(TraceError) {
        let installed = InstalledWindow(window: window, originals: zip(patches, originals).map { ($0.address, $1) },
                                        patches: patches.map { ($0.address, $0.bytes) })
        guardWindow(installed)
        for patch in patches { try memory.write(patch.bytes, at: patch.address) }
        windows[window.start] = installed
    }

    private func guardWindow(_ installed: InstalledWindow) {
        let pairs = zip(installed.originals, installed.patches).map { original, patch in (patch.0, original.1, patch.1) }
        guardPatches(installed.window.start, pairs, kind: .other)
    }

    /// Writes a trap pad's window (as `install` does) and records its int3s and where its relocated
    /// instructions came from. Only while no thread of the address space runs.
    func install(_ window: InlineWindow, trapPad pad: TrapPad, traps newTraps: [TrapSite],
                 patches: [(address: UInt64, bytes: [UInt8])], originals: [[UInt8]]) throws(TraceError) {
        for trap in newTraps {
            traps[trap.address] = trap
            guardPatches(trap.address, [(trap.address, [0x90], [0xcc])], kind: .trapPad)
        }
        let patchedEnd = window.start &+ UInt64(window.shortJumpSlot == nil ? window.patchLength : 2)
        for origin in pad.origins where origin.original == window.start || origin.original >= patchedEnd {
            padOrigins[origin.pad] = origin.original
        }
        try install(window, patches: patches, originals: originals)
    }

    /// Puts back the code of every window whose jump is still there, and turns the trap pads' int3s
    /// into `nop`s: a thread that already jumped into a pad (its RIP, or a signal frame's, anywhere
    /// before an int3 there) runs through it unstopped once nstrace is gone, instead of dying of a
    /// SIGTRAP no one catches. Only while no thread runs.
    func restoreWindows() -> Int {
        var restored = 0
        for trap in traps.values {
            try? memory.write([0x90], at: trap.address)
            unguard(trap.address)
        }
        traps.removeAll()
        for installed in windows.values where installed.isPresent(in: memory) {
            // The site first: once it is back, nothing jumps to the padding slot any more.
            for (address, bytes) in installed.originals.reversed() where (try? memory.write(bytes, at: address)) != nil {
                restored += 1
            }
            unguard(installed.window.start)
        }
        for start in windows.keys { unguard(start) }
        windows.removeAll()
        return restored
    }

    /// The window whose relocated instructions include the one at `address`, if any: it runs from the
    /// pad, not from here.
    func window(covering address: UInt64) -> InstalledWindow? {
        windows.values.first { $0.window.start <= address && address < $0.window.end }
    }

    /// A window covering `address` (strictly inside the bytes its jump overwrote), if any.
    func windowInterior(containing address: UInt64) -> InstalledWindow? {
        windows.values.first { $0.window.interiorBoundaries.contains(address) }
    }

    // MARK: Scratch memory

    func region(near address: UInt64) -> ScratchRegion? {
        regions.first { $0.isNear(address) }
    }

    /// `count` bytes within disp32 reach of `address`, if a region there has room.
    func allocate(_ count: Int, near address: UInt64) -> UInt64? {
        for region in regions where region.isNear(address) {
            if let chunk = region.allocate(count) { return recorded(chunk, in: region) }
        }
        return nil
    }

    func allocateAnywhere(_ count: Int) -> UInt64? {
        for region in regions {
            if let chunk = region.allocate(count) { return recorded(chunk, in: region) }
        }
        return nil
    }

    private func recorded(_ chunk: UInt64, in region: ScratchRegion) -> UInt64 {
        try? memory.writeWord(region.used, at: region.start + ScratchRegion.usedOffset)
        return chunk
    }

    /// Regions an earlier nstrace left in the process (`[anon:nstrace]` with nstrace's header),
    /// taken up again instead of mapping new ones on every attach.
    func adoptLeftRegions() {
        guard regions.isEmpty, let maps = ProcFS.text("/proc/\(memory.pid)/maps") else { return }
        for line in maps.split(separator: "\n") {
            // Named where the kernel can name it; else an unnamed executable anonymous mapping,
            // recognised by nstrace's header.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[1].contains("x"),
                  line.hasSuffix("[anon:nstrace]") || (fields.count == 5 && fields[4] == "0")
            else { continue }
            let range = line.prefix { $0 != " " }.split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
                  let head = try? memory.read(start, count: Int(ScratchRegion.usedOffset) + 8),
                  head.count == Int(ScratchRegion.usedOffset) + 8,
                  Array(head[0..<2]) == ScratchRegion.gadget,
                  Array(head[Int(ScratchRegion.nameOffset)..<Int(ScratchRegion.nameOffset) + 8]) == Array("nstrace".utf8) + [0]
            else { continue }
            let used = littleEndianWord(head[Int(ScratchRegion.usedOffset)...])
            guard used <= end - start else { continue }
            let region = ScratchRegion(start: start, size: end - start, used: used)
            regions.append(region)
            CrashGuard.region(region)
        }
        if !regions.isEmpty { DebugLog.log("\(memory.pid): adopted \(regions.count) scratch regions") }
    }

    var syscallGadget: UInt64? { regions.first?.syscallAddress }

    /// Addresses where `size` bytes fit between the mappings of `maps`, nearest to `near` first, all
    /// within ±1.5 GiB of it, a guard page clear of each neighbour.
    static func freePlaces(for size: UInt64, near: UInt64, maps: String) -> [UInt64] {
        struct Mapping { let start: UInt64; let end: UInt64; let name: Substring }
        var mappings: [Mapping] = []
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let range = fields.first?.split(separator: "-") ?? []
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { continue }
            mappings.append(Mapping(start: start, end: end, name: fields.count > 5 ? fields[5] : ""))
        }
        mappings.sort { $0.start < $1.start }
        let guardSize: UInt64 = 0x10000, reach: UInt64 = 0x6000_0000, floor: UInt64 = 0x10_0000
        let ceiling: UInt64 = 0x7fff_0000_0000
        var places: [UInt64] = []
        var previousEnd = floor, previousName: Substring = ""
        for mapping in mappings + [Mapping(start: ceiling, end: ceiling, name: "")] {
            defer { previousEnd = max(previousEnd, mapping.end); previousName = mapping.name }
            // Room for the heap to grow after [heap], and for a stack to grow down to its guard.
            let low = previousEnd + (previousName == "[heap]" ? 0x1000_0000 : guardSize)
            let high = mapping.start > guardSize ? mapping.start - guardSize - (mapping.name.hasPrefix("[stack") ? 0x100_0000 : 0) : 0
            guard high > low, high - low >= size else { continue }
            // The end of the gap nearest to `near`, aligned to 64 KiB.
            let top = (high - size) & ~0xffff, bottom = (low + 0xffff) & ~0xffff
            for candidate in [top, bottom] where candidate >= bottom && candidate <= top {
                let distance = candidate > near ? candidate - near : near - candidate
                if distance < reach, !places.contains(candidate) { places.append(candidate) }
            }
        }
        return places.sorted { a, b in
            (a > near ? a - near : near - a) < (b > near ? b - near : near - b)
        }
    }

    func isScratch(_ address: UInt64) -> Bool { regions.contains { $0.contains(address) } }

    /// Maps a new region inside the tracee, through `thread` (stopped), in a free gap of
    /// /proc/PID/maps as close to `near` as there is one (within disp32 reach), MAP_FIXED_NOREPLACE so
    /// a mapping that appeared meanwhile is never replaced. Gaps just above the heap and just below a
    /// stack are left alone: those grow.
    func mapRegion(near: UInt64, using injection: inout SyscallInjection) throws(TraceError) -> ScratchRegion? {
        let size = AddressSpace.regionSize
        let hints = AddressSpace.freePlaces(for: size, near: near, maps: ProcFS.text("/proc/\(memory.pid)/maps") ?? "")
        let protRX: UInt64 = UInt64(PROT_READ | PROT_EXEC)
        let flags: UInt64 = UInt64(MAP_PRIVATE | MAP_ANONYMOUS) | 0x100000  // MAP_FIXED_NOREPLACE
        for hint in hints.prefix(16) {
            let rc = try injection.call(SystemCall.mmap, [hint, size, protRX, flags, UInt64.max, 0], gadget: syscallGadget)
            DebugLog.log("\(memory.pid): mmap at \(hex(hint)) → \(rc < 0 ? "-\(-rc)" : hex(UInt64(rc)))")
            if rc == Int64(-EEXIST) || rc == Int64(-ENOMEM) { continue }
            guard rc > 0, UInt64(rc) == hint else {
                if rc > 0 { _ = try injection.call(SystemCall.munmap, [UInt64(rc), size], gadget: syscallGadget) }
                continue
            }
            let region = ScratchRegion(start: hint, size: size)
            CrashGuard.region(region)
            try memory.write(ScratchRegion.gadget, at: region.start)
            try memory.write(Array("nstrace".utf8) + [0], at: region.start + ScratchRegion.nameOffset)
            regions.append(region)
            // PR_SET_VMA / PR_SET_VMA_ANON_NAME: `[anon:nstrace]` in /proc/PID/maps for whoever looks.
            // Kernels without CONFIG_ANON_VMA_NAME refuse; the region works the same unnamed. Not under
            // a seccomp filter, which may kill the process for a prctl it did not expect.
            if ProcFS.statusField("Seccomp", of: memory.pid) != "2" {
                _ = try injection.call(SystemCall.prctl, [0x5356_4d41, 0, hint, size, hint + ScratchRegion.nameOffset],
                                       gadget: region.syscallAddress)
            }
            return region
        }
        return nil
    }

    /// The thread's step slot, allocated on first use.
    func slot(for tid: pid_t) -> UInt64? {
        if let slot = slots[tid] { return slot }
        let slot = freeSlots.popLast() ?? allocateAnywhere(AddressSpace.slotSize)
        if let slot { slots[tid] = slot }
        return slot
    }

    func releaseSlot(of tid: pid_t) {
        if let slot = slots.removeValue(forKey: tid) { freeSlots.append(slot) }
    }

    /// A slot a thread may still run in after nstrace has let it go: never handed out again.
    func abandonSlot(of tid: pid_t) {
        slots[tid] = nil
    }
}

/// A window written into a tracee's code, with what it replaced.
struct InstalledWindow {
    let window: InlineWindow
    let originals: [(UInt64, [UInt8])]
    let patches: [(UInt64, [UInt8])]

    /// Whether the jump is still in memory (not restored, not overwritten, not unmapped).
    func isPresent(in memory: TraceeMemory) -> Bool {
        patches.allSatisfy { address, bytes in (try? memory.read(address, count: bytes.count)) == bytes }
    }
}

/// x86-64 system call numbers nstrace injects.
enum SystemCall {
    static let mmap = 9
    static let munmap = 11
    static let prctl = 157
    static let exit = 60
    static let exitGroup = 231
    static let close = 3
    static let ftruncate = 77
    static let memfdCreate = 319

    static func name(_ number: Int) -> String {
        [mmap: "mmap", munmap: "munmap", prctl: "prctl", close: "close", ftruncate: "ftruncate", memfdCreate: "memfd_create"][number]
            ?? "system call \(number)"
    }
}

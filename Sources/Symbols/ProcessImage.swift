import CElfutils
import CShim
import Foundation
import Glibc

/// The modules of a live process, or of one ELF file, as elfutils' libdwfl sees them: symbol tables,
/// separate debuginfo (by build-id or .gnu_debuglink), DWARF. Not thread-safe: one owner at a time.
public final class ProcessImage {
    public enum Origin: Sendable, Equatable {
        case process(pid_t)
        case file(String)
    }

    public let origin: Origin
    public private(set) var modules: [Module] = []
    private let session: OpaquePointer
    private var dwfl: OpaquePointer { nst_dwfl_session_dwfl(session) }
    private var handles: [Module: OpaquePointer] = [:]
    private var functionCache: [Module: [Function]] = [:]
    private var unitIndexes: [Module: CompileUnitIndex] = [:]
    private var goRuntimes: [Module: GoRuntime?] = [:]
    private var landingPadTables: [Module: LandingPadTable] = [:]
    private var relocationTables: [Module: DynamicRelocations] = [:]

    /// Where separate debuginfo is looked for when the caller does not say, in elfutils' syntax
    /// (":.debug:/usr/lib/debug"); `NSTRACE_DEBUGINFO_PATH` overrides it.
    public static var defaultDebuginfoPath: String? {
        getenv("NSTRACE_DEBUGINFO_PATH").map { String(cString: $0) }
    }

    /// Every module mapped in process `pid` now.
    public init(pid: pid_t, debuginfoPath: String? = ProcessImage.defaultDebuginfoPath) throws(SymbolError) {
        guard kill(pid, 0) == 0 || errno != ESRCH else { throw .noSuchProcess(pid) }
        guard let session = nst_dwfl_session_begin(true, debuginfoPath) else {
            throw .elfutils(Self.lastError, context: "process \(pid)")
        }
        self.session = session
        origin = .process(pid)
        // Every stored property is set from here on, so a throw runs deinit, which ends the session.
        try refresh()
    }

    /// One ELF file on disk, at its link-time addresses.
    public init(file path: String, debuginfoPath: String? = ProcessImage.defaultDebuginfoPath) throws(SymbolError) {
        try Self.checkELF(path)
        guard let session = nst_dwfl_session_begin(false, debuginfoPath) else {
            throw .elfutils(Self.lastError, context: path)
        }
        self.session = session
        origin = .file(path)
        dwfl_report_begin(dwfl)
        // base 0 with add_p_vaddr: a PIE or shared library stays at its own p_vaddr, as nm shows it.
        let reported = dwfl_report_elf(dwfl, path, path, -1, 0, true)
        dwfl_report_end(dwfl, nil, nil)
        guard reported != nil else { throw .elfutils(Self.lastError, context: path) }
        modules = collectModules()
    }

    deinit { nst_dwfl_session_end(session) }

    /// Re-reads the process's mappings: after dlopen, dlclose or exec. A file never changes.
    public func refresh() throws(SymbolError) {
        guard case .process(let pid) = origin else { return }
        dwfl_report_begin(dwfl)
        let rc = dwfl_linux_proc_report(dwfl, Self.liveTask(of: pid))
        dwfl_report_end(dwfl, nil, nil)
        switch rc {
        case 0: break
        case ENOENT, ESRCH: throw .noSuchProcess(pid)
        case EACCES, EPERM: throw .processPermissionDenied(pid)
        case let code where code > 0: throw .elfutils(String(cString: strerror(code)), context: "process \(pid)")
        default: throw .elfutils(Self.lastError, context: "process \(pid)")
        }
        let old = Set(modules)
        modules = collectModules()
        for gone in old.subtracting(modules) {
            functionCache[gone] = nil
            unitIndexes[gone] = nil
            landingPadTables[gone] = nil
            relocationTables[gone] = nil
        }
    }

    /// The module an address falls in.
    public func module(containing address: UInt64) -> Module? {
        modules.first { $0.contains(address) }
    }

    /// Every function one of whose names matches (`NamePattern.matches`), in module then address order.
    public func functions(matching pattern: NamePattern) -> [Function] {
        modules.flatMap { module in
            functions(in: module).filter(pattern.matches)
        }
    }

    /// Every function of a module, one per address.
    public func functions(in module: Module) -> [Function] {
        if let cached = functionCache[module] { return cached }
        guard let handle = handles[module] else { return [] }
        let found = FunctionTable.read(handle, module: module)
        functionCache[module] = found
        return found
    }

    /// The function whose body holds `address` (for return sites and stack frames).
    public func function(containing address: UInt64) -> Function? {
        guard let module = module(containing: address) else { return nil }
        // Sorted by address: the last function starting at or below it, if it reaches that far.
        let all = functions(in: module)
        var low = 0, high = all.count
        while low < high {
            let mid = (low + high) / 2
            if all[mid].address <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let candidate = all[low - 1]
        return address &- candidate.address < max(candidate.size, 1) ? candidate : nil
    }

    /// What DWARF says about a function; for a function of the C library DWARF says nothing of (its
    /// assembly string functions, or no debuginfo at all), the prototype nstrace ships; else nil.
    public func signature(of function: Function) -> Signature? {
        let described = dwarfSignature(of: function)
        if let described, Self.saysSomething(described) { return described }
        // The dynamic linker has its own copies of the string functions (ld.so's `strcmp`).
        let module = function.module.name
        guard module.hasPrefix("libc.so") || module.hasPrefix("ld-linux") || module.hasPrefix("ld64") else { return described }
        return LibcPrototypes.signature(for: function.names.filter { !function.resolverNames.contains($0) }) ?? described
    }

    /// What DWARF alone says about a function.
    func dwarfSignature(of function: Function) -> Signature? {
        guard let handle = handles[function.module] else { return nil }
        return SignatureReader.signature(module: handle, address: function.address) {
            if let index = unitIndexes[function.module] { return index }
            let index = CompileUnitIndex(module: handle)
            unitIndexes[function.module] = index
            return index
        }
    }

    /// Assembly's DWARF (libc6-dbg's `__strcmp_avx2`) has the function but neither parameters nor a
    /// return type: that says nothing.
    private static func saysSomething(_ signature: Signature) -> Bool {
        !signature.parameters.isEmpty || signature.isVariadic || signature.results.contains { $0.type != TypeReader.unknown }
    }

    /// Whether DWARF describes the function as compiled code (C, C++, Go…) rather than assembly, or not
    /// at all: compiled code never branches into the middle of another function, assembly may.
    public func isCompiledCode(_ function: Function) -> Bool {
        dwarfSignature(of: function).map(Self.saysSomething) ?? false
    }

    /// The layout of runtime.g when the module is a Go program built with DWARF, else nil.
    public func goRuntime(in module: Module) -> GoRuntime? {
        if let known = goRuntimes[module] { return known }
        let found = handles[module].flatMap { GoRuntime.read(module: $0) }
        goRuntimes[module] = found
        return found
    }

    /// Where the C++ unwinder can jump into a module's code: its LSDAs' landing pads, with what could
    /// not be read.
    public func landingPadTable(in module: Module) -> LandingPadTable {
        if let known = landingPadTables[module] { return known }
        let found = handles[module].map(LandingPads.read) ?? .empty
        landingPadTables[module] = found
        return found
    }

    /// The function that starts at `address` though no symbol names it (a stripped binary's static
    /// function), its extent from its unwind information (`.eh_frame`); nil if there is none, or a
    /// symbol names a function there or around it.
    public func unnamedFunction(at address: UInt64) -> Function? {
        guard function(containing: address) == nil, let module = module(containing: address),
              let range = landingPadTable(in: module).functionRange(startingAt: address)
        else { return nil }
        return Function(name: "fde_\(String(address &- module.bias, radix: 16))", aliases: [], module: module,
                        address: address, size: range.upperBound &- range.lowerBound, isIndirect: false)
    }

    /// The slots a module's dynamic relocations have the dynamic linker fill.
    func dynamicRelocations(in module: Module) -> DynamicRelocations {
        if let known = relocationTables[module] { return known }
        let found = handles[module].map(DynamicRelocations.read) ?? .empty
        relocationTables[module] = found
        return found
    }

    /// Every landing pad of a module, sorted.
    public func landingPads(in module: Module) -> [UInt64] { landingPadTable(in: module).pads }

    /// The landing pads inside a function's body.
    public func landingPads(of function: Function) -> [UInt64] {
        landingPadTable(in: function.module).pads(in: function.address..<function.end)
    }

    /// The bytes of a function as the file holds them (not as a live process may have patched them).
    public func fileBytes(of function: Function, limit: Int? = nil) -> [UInt8]? {
        guard let handle = handles[function.module] else { return nil }
        let wanted = limit.map { min(UInt64($0), max(function.size, 1)) } ?? max(function.size, 1)
        return ELFBytes.read(handle, address: function.address, count: Int(clamping: wanted))
    }

    /// The bytes at any address of a module, as its file holds them.
    public func fileBytes(at address: UInt64, count: Int) -> [UInt8]? {
        guard let module = module(containing: address), let handle = handles[module] else { return nil }
        return ELFBytes.read(handle, address: address, count: count)
    }

    /// The runtime address of a symbol (any type) in a module, e.g. `_r_debug` in the dynamic linker.
    public func address(ofSymbol name: String, in module: Module) -> UInt64? {
        guard let handle = handles[module] else { return nil }
        return FunctionTable.address(ofSymbol: name, in: handle)
    }

    private func collectModules() -> [Module] {
        final class Box { var found: [(Module, OpaquePointer)] = [] }
        let box = Box()
        _ = withExtendedLifetime(box) {
            dwfl_getmodules(dwfl, { mod, _, _, _, arg in
                guard let mod, let arg else { return Int32(DWARF_CB_OK) }
                let box = Unmanaged<Box>.fromOpaque(arg).takeUnretainedValue()
                if let module = ProcessImage.describe(mod) { box.found.append((module, mod)) }
                return Int32(DWARF_CB_OK)
            }, Unmanaged.passUnretained(box).toOpaque(), 0)
        }
        handles = Dictionary(box.found.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        return box.found.map(\.0).sorted { $0.start < $1.start }
    }

    private static func describe(_ mod: OpaquePointer) -> Module? {
        var start: Dwarf_Addr = 0, end: Dwarf_Addr = 0
        guard let name = dwfl_module_info(mod, nil, &start, &end, nil, nil, nil, nil) else { return nil }
        var bias: GElf_Addr = 0
        // Loads the ELF (libdwfl is lazy), which the bias and build-id need.
        _ = dwfl_module_getelf(mod, &bias)
        return Module(path: String(cString: name), start: start, end: end, bias: bias,
                      buildID: buildID(mod))
    }

    private static func buildID(_ mod: OpaquePointer) -> String? {
        var bits: UnsafePointer<UInt8>?
        var vaddr: GElf_Addr = 0
        let n = dwfl_module_build_id(mod, &bits, &vaddr)
        guard n > 0, let bits else { return nil }
        return UnsafeBufferPointer(start: bits, count: Int(n)).map { hex2($0) }.joined()
    }

    /// The process's maps are read through a live thread: a leader that called pthread_exit is a
    /// zombie whose /proc/PID/maps is empty while the other threads run on.
    static func liveTask(of pid: pid_t) -> pid_t {
        guard ProcStat.state(of: pid) == "Z",
              let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        else { return pid }
        for name in tasks {
            guard let tid = pid_t(name), tid != pid, let state = ProcStat.state(of: pid, task: tid), state != "Z"
            else { continue }
            return tid
        }
        return pid
    }

    private static func checkELF(_ path: String) throws(SymbolError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            switch errno {
            case ENOENT, ENOTDIR: throw .noSuchFile(path)
            case EACCES, EPERM: throw .filePermissionDenied(path)
            default: throw .elfutils(String(cString: strerror(errno)), context: path)
            }
        }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = read(fd, &magic, 4)
        if n < 0, errno == EISDIR { throw .notAnELFFile(path) }
        guard n == 4, magic == [0x7f, 0x45, 0x4c, 0x46] else { throw .notAnELFFile(path) }
    }

    static var lastError: String {
        dwfl_errmsg(-1).map { String(cString: $0) } ?? "unknown elfutils error"
    }
}

func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
}

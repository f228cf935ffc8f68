/// A function in a module: one entry per address, however many symbols name it.
public struct Function: Sendable, Hashable, CustomStringConvertible {
    /// The preferred of the symbols at this address (`read` over `__read` and `__libc_read`).
    public let name: String
    /// The other symbols at the same address, in preference order.
    public let aliases: [String]
    /// `name` demangled with its parameter list (`shop::check(shop::Order const&)`), what a person reads
    /// and what is shown unless `--no-demangle`; nil when `name` is not a mangled name (C, most of libc).
    public let demangledName: String?
    /// `name` demangled without its parameter list (`shop::check`), C++ only: overloads share it, and a
    /// regexp anchored at both ends (`^shop::check$`) is written against it.
    public let qualifiedName: String?
    public let module: Module
    /// Runtime address in a live process; link-time address when inspecting a file.
    public let address: UInt64
    /// Size in bytes from the symbol table; 0 when the symbol does not say.
    public let size: UInt64
    /// A GNU indirect function: the symbol's address is the resolver, which runs once at load time.
    public let isIndirect: Bool
    /// Of an indirect function's names, those that are plain function symbols: the resolver's own
    /// (`strcmp_ifunc`, where glibc's debuginfo names it). Tracing by one of these traces the resolver.
    public let resolverNames: [String]
    /// For an implementation an indirect function selected in a running process, traced under the
    /// indirect function's name: that function's address (its resolver). nil otherwise.
    public let selectedBy: UInt64?

    /// `demangledName` and `qualifiedName` are `Demangler`'s, computed here once per function, never per
    /// event.
    public init(name: String, aliases: [String], module: Module, address: UInt64, size: UInt64,
                isIndirect: Bool, resolverNames: [String] = [], selectedBy: UInt64? = nil) {
        self.name = name
        self.aliases = aliases
        demangledName = Demangler.demangle(name)
        qualifiedName = demangledName == nil ? nil : Demangler.qualifiedName(name)
        self.module = module
        self.address = address
        self.size = size
        self.isIndirect = isIndirect
        self.resolverNames = resolverNames
        self.selectedBy = selectedBy
    }

    /// Its symbols: the preferred one, then its aliases.
    public var names: [String] { [name] + aliases }

    /// What is shown for it: the demangled name (`demangling`), else the symbol.
    public func shownName(demangling: Bool) -> String {
        demangling ? demangledName ?? name : name
    }

    /// The names that call the indirect function (what its callers are bound to), not its resolver.
    public var indirectNames: [String] { isIndirect ? names.filter { !resolverNames.contains($0) } : [] }

    /// setjmp and its kin (`_setjmp`, `sigsetjmp`, `__sigsetjmp`): a call that returns again, with
    /// another value, each time a longjmp comes back to it.
    public var returnsTwice: Bool { names.contains { Function.returningTwice.contains($0) } }

    static let returningTwice: Set<String> = ["setjmp", "_setjmp", "__setjmp", "sigsetjmp", "__sigsetjmp", "savectx"]

    /// The first address past its body (one byte when the size is unknown), the top of the address
    /// space for a body that would run past it: a symbol table is untrusted input.
    public var end: UInt64 {
        let (end, overflow) = address.addingReportingOverflow(max(size, 1))
        return overflow ? .max : end
    }

    public var description: String { "\(demangledName ?? name) (\(module.name))" }
}

/// Symbol binding, in the order a name is preferred when several symbols share an address.
enum SymbolBinding: Int, Comparable {
    case global = 0, weak = 1, local = 2

    static func < (a: SymbolBinding, b: SymbolBinding) -> Bool { a.rawValue < b.rawValue }
}

struct SymbolName {
    let name: String
    let binding: SymbolBinding

    /// `read` before `__read` before `__libc_read`: fewer leading underscores, then a global or weak
    /// symbol over a local one, then the shorter name.
    static func preferred(_ a: SymbolName, _ b: SymbolName) -> Bool {
        let ua = a.name.prefix(while: { $0 == "_" }).count
        let ub = b.name.prefix(while: { $0 == "_" }).count
        if ua != ub { return ua < ub }
        if a.binding != b.binding { return a.binding < b.binding }
        if a.name.utf8.count != b.name.utf8.count { return a.name.utf8.count < b.name.utf8.count }
        return a.name < b.name
    }
}

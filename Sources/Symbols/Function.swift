/// A function in a module: one entry per address, however many symbols name it.
public struct Function: Sendable, Hashable, CustomStringConvertible {
    /// The preferred of the symbols at this address (`read` over `__read` and `__libc_read`).
    public let name: String
    /// The other symbols at the same address, in preference order.
    public let aliases: [String]
    public let module: Module
    /// Runtime address in a live process; link-time address when inspecting a file.
    public let address: UInt64
    /// Size in bytes from the symbol table; 0 when the symbol does not say.
    public let size: UInt64
    /// A GNU indirect function: the symbol's address is the resolver, which runs once at load time.
    public let isIndirect: Bool

    public init(name: String, aliases: [String], module: Module, address: UInt64, size: UInt64,
                isIndirect: Bool) {
        self.name = name
        self.aliases = aliases
        self.module = module
        self.address = address
        self.size = size
        self.isIndirect = isIndirect
    }

    public var names: [String] { [name] + aliases }

    /// The first address past its body (one byte when the size is unknown), the top of the address
    /// space for a body that would run past it: a symbol table is untrusted input.
    public var end: UInt64 {
        let (end, overflow) = address.addingReportingOverflow(max(size, 1))
        return overflow ? .max : end
    }

    public var description: String { "\(name) (\(module.name))" }
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

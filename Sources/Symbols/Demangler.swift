import CShim
import Glibc

/// Readable names for C++ (Itanium), Rust (legacy and v0) and Swift symbols: libiberty's
/// `cplus_demangle` (what binutils, GDB and perf use) and the Swift runtime's `swift_demangle`. A name
/// that is none of those, malformed, or longer than `maxLength`, has none: it is shown as it is.
public enum Demangler {
    /// Past this a symbol is left as it is: real names reach a few KiB (Boost, Eigen templates); a
    /// symbol table is untrusted input.
    public static let maxLength = 16 << 10

    /// The full name: `shop::check(shop::Order const&)`, `int shop::largest<int>(int const*, int)`,
    /// `rust_names::shop::check`, `fixture.check(order: fixture.Order) -> Swift.Int`.
    public static func demangle(_ symbol: String) -> String? {
        call(symbol, withParameters: true)
    }

    /// The name without its parameter list (`shop::check`), which C++ alone has; nil for the others.
    public static func qualifiedName(_ symbol: String) -> String? {
        guard symbol.hasPrefix("_Z") else { return nil }
        return call(symbol, withParameters: false)
    }

    private static func call(_ symbol: String, withParameters: Bool) -> String? {
        guard symbol.utf8.count <= maxLength,
              let demangled = nst_demangle(symbol, maxLength, withParameters)
        else { return nil }
        defer { free(demangled) }
        let name = String(cString: demangled)
        return name.isEmpty || name == symbol ? nil : name
    }
}

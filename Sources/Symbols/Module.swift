/// One ELF object mapped into a process (or the single file being inspected).
public struct Module: Sendable, Hashable, CustomStringConvertible {
    /// Path as the process maps it, or as given on the command line.
    public let path: String
    /// Lowest and one-past-highest address the module occupies (runtime addresses in a process).
    public let start: UInt64
    public let end: UInt64
    /// What to add to a link-time address in this module to get its runtime address.
    public let bias: UInt64
    /// The GNU build-id, hex, when the module has one.
    public let buildID: String?

    public init(path: String, start: UInt64, end: UInt64, bias: UInt64, buildID: String?) {
        self.path = path
        self.start = start
        self.end = end
        self.bias = bias
        self.buildID = buildID
    }

    /// The file name alone: what a person calls the module (`libc.so.6`, `server`).
    public var name: String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    public var description: String { name }
}

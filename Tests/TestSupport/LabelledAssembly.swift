import Foundation

/// A fixture compiled to assembly, then assembled with its local labels kept (`as -L`): the
/// compiler's own tables (jump tables, call-site tables) name their targets by label in the
/// assembly, and `nm` says where each label landed. That is an answer to compare with which shares
/// nothing with nstrace's readers.
public struct LabelledAssembly {
    public let binary: String
    public let assembly: String

    /// clang (or clang++ with `plusPlus`), when one is installed: Swift's own, else Debian's.
    public static func clang(plusPlus: Bool = false) -> String? {
        let name = plusPlus ? "clang++" : "clang"
        return ["/opt/swift/usr/bin/\(name)", "/usr/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Compiles fixture `source` with `compiler` and `flags` to assembly, and links it with `driver`
    /// (gcc or g++) under the name `<source's stem>-<variant>` in the scratch folder.
    public init(source: String, compiler: String, flags: [String], driver: String, variant: String) throws {
        let path = Paths.fixtures.appendingPathComponent(source).path
        let stem = (source as NSString).deletingPathExtension
        binary = Paths.scratch.appendingPathComponent("\(stem)-\(variant)").path
        assembly = binary + ".s"
        // clang's address-significance tables are a directive GNU as does not know.
        let extra = compiler.contains("clang") ? ["-fno-addrsig"] : []
        try Fixtures.tool(compiler, flags + extra + ["-S", path, "-o", assembly])
        try Fixtures.tool(driver, flags + ["-Wa,-L", assembly, "-o", binary])
    }

    /// Every symbol `nm` lists, local labels included.
    public func symbolAddresses() throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in try run("/usr/bin/nm", [binary]).stdoutLines {
            let f = line.split(separator: " ")
            if f.count == 3, let address = UInt64(f[0], radix: 16) { out[String(f[2])] = address }
        }
        return out
    }

    /// The lines of the assembly.
    public func assemblyLines() throws -> [Substring] {
        try String(contentsOfFile: assembly, encoding: .utf8).split(separator: "\n")
    }
}

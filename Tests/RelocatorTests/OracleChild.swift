import Foundation
import OracleSupport
@testable import Relocator
import Symbols
import Testing
import TestSupport

/// The oracle's child, stopped and ready: relocator_cases with every other C fixture loaded into it
/// as a library, pinned to the test thread's CPU, with what it mapped for the oracle.
struct OracleChild {
    let tracee: OracleTracee
    let image: ProcessImage
    let libc: Module
    let fixture: Module
    /// The other fixtures, each built as a library at -O0 and at -O2.
    let fixtureLibraries: [Module]
    let layout: OracleLayout

    /// Every module whose functions are in the corpus.
    var modules: [Module] { [libc, fixture] + fixtureLibraries }

    /// Past this the watchdog kills the child, and whatever waits on it fails instead of hanging.
    static let deadline: TimeInterval = 300

    init(cpu: Int32) throws {
        let executable = try Fixtures.build("relocator_cases", flags: ["-O2"], variant: "oracle")
        let libraries = try Self.otherFixturesAsLibraries()
        // A throw from here on kills the child: the tracee's deinit does.
        let tracee = try OracleTracee(executable: executable, arguments: libraries, cpu: cpu, deadline: Self.deadline)
        let image = try ProcessImage(pid: tracee.pid)
        let modules = image.modules
        let fixture = try #require(modules.first { Self.sameFile($0.path, executable) }, "relocator_cases in the child")
        let loaded = libraries.compactMap { library in modules.first { Self.sameFile($0.path, library) } }
        try #require(loaded.count == libraries.count, "every fixture library loaded: \(libraries)")
        self.libc = try #require(modules.first { $0.name == "libc.so.6" }, "libc.so.6 in the child")
        self.layout = try Self.readLayout(image: image, module: fixture, tracee: tracee)
        self.tracee = tracee
        self.image = image
        self.fixture = fixture
        self.fixtureLibraries = loaded
    }

    /// Every other C fixture, built as a shared library at -O0 and -O2 for the child to dlopen, so
    /// that their functions run at their real addresses too. Hidden visibility lets hand-written
    /// RIP-relative references to their own globals link into a library (no GOT, no interposition).
    /// The other C fixtures as shared libraries, at -O0 and -O2 (with `flags` added, under `variant`).
    static func otherFixturesAsLibraries(flags extra: [String] = [], variant: String = "oracle") throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: Paths.fixtures.path)
            .filter { $0.hasSuffix(".c") && !$0.hasPrefix("relocator_") }
            .map { String($0.dropLast(2)) }.sorted()
        // A fixture that calls into a companion library of its own (`filters` and `filters_lib`) is
        // built together with it, so that its library loads (RTLD_NOW) with nothing undefined.
        return try names.flatMap { name in
            try ["-O0", "-O2"].map { level in
                try Fixtures.build(name, flags: ["-shared", "-fPIC", "-fvisibility=hidden", "-g", level] + extra,
                                   variant: "\(variant)\(level).so", extraSources: names.contains(name + "_lib") ? [name + "_lib"] : [])
            }
        }
    }

    static func readLayout(image: ProcessImage, module: Module, tracee: OracleTracee) throws -> OracleLayout {
        let address = try #require(image.address(ofSymbol: "relocator_layout", in: module), "relocator_layout")
        var raw = oracle_layout()
        let bytes = try #require(tracee.read(address, count: MemoryLayout<oracle_layout>.size), "read relocator_layout")
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        return try #require(OracleLayout(raw), "relocator_layout is filled in")
    }

    /// The near page of each module is within ±2 GiB of all of it; the far page more than 4 GiB from
    /// every module.
    func expectPagesWhereTheyBelong() {
        func distance(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : b - a }
        for module in modules {
            guard let near = layout.nearPage(for: module.start) else {
                Issue.record("no near page for \(module.name)")
                continue
            }
            #expect(distance(near, module.start) < 1 << 31 && distance(near, module.end) < 1 << 31,
                    "near page 0x\(String(near, radix: 16)) within ±2 GiB of \(module.name)")
            #expect(distance(layout.far, module.start) > 1 << 32 && distance(layout.far, module.end) > 1 << 32,
                    "far page more than 4 GiB from \(module.name)")
        }
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        URL(fileURLWithPath: a).resolvingSymlinksInPath().path == URL(fileURLWithPath: b).resolvingSymlinksInPath().path
    }
}

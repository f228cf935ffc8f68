import Foundation
@testable import Relocator
import Symbols
import Testing
import TestSupport

/// A child for the window oracle: the execution oracle's relocator_cases with C fixtures loaded into it
/// as libraries, stopped with the oracle's data, stack and code pages mapped, and a ring mapped for
/// the pads. Two are made: one with the fixtures as the execution oracle builds them and the
/// hand-written windows (libc's windows are run there too), and one with the fixtures built with
/// `-fcf-protection=full` (an `endbr64` first, so the entry window starts at the second instruction).
/// Each library is a module of its own, and relocator_cases maps a near page for each up to
/// ORACLE_MAX_MODULES: the two sets of fixtures do not fit in one child.
struct WindowOracleChild {
    enum Kind: String {
        case plain
        case cet
    }

    let kind: Kind
    let tracee: OracleTracee
    let image: ProcessImage
    let layout: OracleLayout
    let ring: ChildRing
    /// The modules whose functions' windows this child runs, with the origin each is tallied under.
    let modules: [(module: Module, origin: WindowCase.Origin)]

    static let handWrittenFixture = "relocator_windows"

    init(_ kind: Kind, cpu: Int32, deadline: TimeInterval) throws {
        let executable = try Fixtures.build("relocator_cases", flags: ["-O2"], variant: "oracle")
        let fixtures = kind == .plain ? try OracleChild.otherFixturesAsLibraries() : try Self.cetFixturesAsLibraries()
        let handWritten = kind == .plain
            ? [try Fixtures.build(Self.handWrittenFixture, flags: ["-shared", "-fPIC", "-g", "-O2"], variant: "oracle.so")] : []
        let tracee = try OracleTracee(executable: executable, arguments: fixtures + handWritten, cpu: cpu, deadline: deadline)
        let image = try ProcessImage(pid: tracee.pid)
        func module(_ path: String) throws -> Module {
            try #require(image.modules.first { Self.sameFile($0.path, path) }, "\(path) loaded in the child")
        }
        let main = try module(executable)
        var modules: [(Module, WindowCase.Origin)] = []
        if kind == .plain {
            modules.append((try #require(image.modules.first { $0.name == "libc.so.6" }, "libc.so.6 in the child"), .libc))
            modules.append((main, .fixture(cet: false)))
        }
        modules += try fixtures.map { (try module($0), .fixture(cet: kind == .cet)) }
        modules += try handWritten.map { (try module($0), .handWritten) }
        self.kind = kind
        self.tracee = tracee
        self.image = image
        self.modules = modules
        layout = try OracleChild.readLayout(image: image, module: main, tracee: tracee)
        ring = try ChildRing(in: tracee, syscallPage: layout.far)
    }

    /// The other C fixtures as shared libraries, as OracleChild builds them, with CET's `endbr64`s.
    static func cetFixturesAsLibraries() throws -> [String] {
        try OracleChild.otherFixturesAsLibraries(flags: ["-fcf-protection=full"], variant: "window-cet")
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        URL(fileURLWithPath: a).resolvingSymlinksInPath().path == URL(fileURLWithPath: b).resolvingSymlinksInPath().path
    }
}

import Foundation
import Glibc
import Testing
import TestSupport

/// The release tarball on a server with no Swift toolchain: Scripts/package builds it once per run (a
/// release build takes minutes on two cores), and each test runs what it unpacked to, with the
/// toolchain's directory hidden in a mount namespace of its own.
@Suite(.serialized) struct ReleasePackage {
    static let unpacked = Result { try packageAndUnpack() }

    static func packageAndUnpack() throws -> URL {
        let dist = Paths.scratch.appendingPathComponent("dist")
        let script = Paths.packageRoot.appendingPathComponent("Scripts/package").path
        // At the lowest priority: the other suites' fixtures run beside this build on two cores.
        let packaged = try run("/usr/bin/nice", ["-n", "19", "/bin/bash", script, dist.path], timeout: 2400)
        guard packaged.status == 0, let tarball = packaged.stdoutLines.last else {
            throw TestFailure("Scripts/package failed: \(packaged)")
        }
        try Fixtures.tool("/bin/tar", ["-xzf", tarball, "-C", Paths.scratch.path])
        let name = URL(fileURLWithPath: tarball).lastPathComponent.replacingOccurrences(of: ".tar.gz", with: "")
        return Paths.scratch.appendingPathComponent(name)
    }

    /// The toolchain's root: `swift` is `<root>/usr/bin/swift`, as the toolchain's own tarball lays it
    /// out (/opt/swift here).
    static func toolchainRoot() throws -> String {
        let found = try run("/bin/sh", ["-c", "command -v swift"])
        let swift = found.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard found.status == 0, swift.hasSuffix("/usr/bin/swift") else {
            throw TestFailure("no swift on PATH laid out as <root>/usr/bin/swift: \(found)")
        }
        let root = String(swift.dropLast("/usr/bin/swift".count))
        // Hiding /usr would hide the system the binary is meant to run on.
        guard !root.isEmpty, root != "/usr" else { throw TestFailure("the toolchain is the system's (\(swift)): nothing to hide") }
        return root
    }

    /// Runs `command` in a new mount namespace with an empty directory mounted over the toolchain.
    func withoutToolchain(_ command: [String], timeout: TimeInterval = 120) throws -> CommandResult {
        let empty = Paths.scratch.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let root = try Self.toolchainRoot()
        return try run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                            #"mount --bind "$1" "$2" && test ! -e "$2/usr/bin/swift" && shift 2 && exec "$@""#,
                                            "sh", empty.path, root] + command, timeout: timeout)
    }

    @Test func releaseBinaryRunsAndTracesEveryCallWithTheToolchainHidden() throws {
        let tree = try Self.unpacked.get()
        let nstrace = tree.appendingPathComponent("bin/nstrace").path
        let root = try Self.toolchainRoot()

        let libraries = try withoutToolchain(["/usr/bin/ldd", nstrace])
        #expect(libraries.status == 0, "\(libraries)")
        #expect(!libraries.stdout.contains("not found"), "\(libraries)")
        #expect(!libraries.stdout.contains(root), "a library from the toolchain: \(libraries)")
        for system in ["libdw.so", "libelf.so", "libcapstone.so", "libc.so"] {
            #expect(libraries.stdout.contains(system), "\(libraries)")
        }

        let version = try withoutToolchain([nstrace, "--version"])
        #expect(version.status == 0, "\(version)")
        let head = try run("/usr/bin/git", ["-C", Paths.packageRoot.path, "rev-parse", "--short=12", "HEAD"])
        let line = version.stdout.trimmingCharacters(in: .newlines)
        #expect(line.hasPrefix("nstrace ") && line.contains("(commit \(head.stdout.trimmingCharacters(in: .newlines))"),
                "\(version)")

        let binary = try Fixtures.build("workers", flags: ["-O1", "-g", "-pthread"], variant: "release")
        let traceFile = Paths.scratch.appendingPathComponent("release-workers.jsonl").path
        let traced = try withoutToolchain([nstrace, "--json", "-o", traceFile, "^fx_", "--", binary, "4", "200"],
                                          timeout: 300)
        #expect(traced.status == 0, "\(traced)")
        #expect(traced.stdoutLines.contains("wrong results 0"), "\(traced)")
        let log = try TraceLog(file: traceFile)
        let expected = fixtureCounts(traced.stdout)
        #expect(expected["fx_riprel"] == 800, "\(traced)")
        let mainPid = try #require(log.of("exit").first?["pid"] as? Int)
        #expect(log.calls(pid: mainPid) == expected, "calls seen vs calls made")
        #expect(log.returns(pid: mainPid) == expected, "returns seen vs calls made")
        #expect(log.count("thread_start") == 5)
    }

    @Test func manPageDescribesEveryOptionHelpLists() throws {
        let tree = try Self.unpacked.get()
        let nstrace = tree.appendingPathComponent("bin/nstrace").path
        var options: Set<String> = []
        for help in [["--help"], ["list", "--help"]] {
            let printed = try run(nstrace, help)
            #expect(printed.status == 0, "\(printed)")
            options.formUnion(Self.options(inHelp: printed.stdout))
        }
        #expect(options.isSuperset(of: ["-p", "--follow-forks", "--strategy", "--ring-size", "--json", "--version", "--help"]),
                "\(options.sorted())")

        let page = tree.appendingPathComponent("share/man/man1/nstrace.1").path
        let rendered = try run("/usr/bin/man", ["-E", "ascii", "-l", page], environment: ["MANWIDTH": "100", "MANPAGER": "cat"])
        #expect(rendered.status == 0, "\(rendered)")
        let text = rendered.stdout
        for option in options.sorted() {
            #expect(text.range(of: "(?<![\\w-])\(option)(?![\\w-])", options: .regularExpression) != nil,
                    "\(option) is in --help but not in the man page")
        }
        for section in ["SYNOPSIS", "OUTPUT FORMATS", "HOW IT WORKS", "EXIT STATUS"] {
            #expect(text.contains("\n\(section)\n"), "no \(section) section")
        }
        #expect(text.contains("128 + the signal"), "the exit status is the README's, not a generic one")
    }

    /// Option names from swift-argument-parser's help: the lines under OPTIONS that start with a dash.
    static func options(inHelp help: String) -> Set<String> {
        var names: Set<String> = []
        for line in help.split(separator: "\n") where line.hasPrefix("  -") {
            for word in line.split(separator: " ").prefix(while: { $0.hasPrefix("-") || $0.hasPrefix("<") }) {
                if word.hasPrefix("-") { names.insert(String(word.trimmingCharacters(in: CharacterSet(charactersIn: ",")))) }
            }
        }
        return names
    }

    @Test func installPutsBinaryManPageAndCompletionsUnderThePrefix() throws {
        let tree = try Self.unpacked.get()
        let prefix = Paths.scratch.appendingPathComponent("prefix")
        let installed = try run(tree.appendingPathComponent("install").path, [prefix.path])
        #expect(installed.status == 0, "\(installed)")
        let version = try run(prefix.appendingPathComponent("bin/nstrace").path, ["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("nstrace "), "\(version)")
        let completions = ["share/bash-completion/completions/nstrace", "share/zsh/site-functions/_nstrace",
                           "share/fish/vendor_completions.d/nstrace.fish"]
        for file in ["share/man/man1/nstrace.1"] + completions {
            let text = try String(contentsOf: prefix.appendingPathComponent(file), encoding: .utf8)
            #expect(text.contains("follow-forks"), "\(file) does not know --follow-forks")
        }
        let bash = try run("/bin/bash", ["-n", prefix.appendingPathComponent(completions[0]).path])
        #expect(bash.status == 0, "the bash completion does not parse: \(bash)")
    }
}

import Foundation

/// Where the suite's inputs are: the package (for Benchmarks/C and for building nstrace) and the
/// build directory nstrace-bench itself runs from.
struct Location {
    let packageRoot: String
    /// The directory holding nstrace-bench, e.g. .build/x86_64-unknown-linux-gnu/release.
    let binaryDirectory: String

    var cSources: String { packageRoot + "/Benchmarks/C" }

    static func find() throws -> Location {
        // This file is Benchmarks/Sources/nstrace-bench/Location.swift in the package.
        let fromSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let candidates = [fromSource, FileManager.default.currentDirectoryPath]
        guard let root = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/Benchmarks/C/workload.c") })
        else { throw BenchError("cannot find Benchmarks/C/workload.c; run nstrace-bench from the package directory") }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return Location(packageRoot: root, binaryDirectory: URL(fileURLWithPath: exe).deletingLastPathComponent().path)
    }

    /// nstrace from the same build as nstrace-bench. `swift run nstrace-bench` builds only
    /// nstrace-bench, so build the nstrace product into the same scratch directory first (a no-op
    /// when it is up to date). The scratch directory is two levels above the binaries
    /// (<scratch>/<triple>/release).
    func nstraceBinary(log: Progress) throws -> String {
        let binary = binaryDirectory + "/nstrace"
        let configuration = URL(fileURLWithPath: binaryDirectory).lastPathComponent
        let scratch = URL(fileURLWithPath: binaryDirectory).deletingLastPathComponent().deletingLastPathComponent().path
        guard configuration == "release" || configuration == "debug" else {
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw BenchError("no nstrace beside \(binaryDirectory); pass --nstrace PATH")
            }
            return binary
        }
        log.note("building nstrace (\(configuration)) into \(scratch)")
        let status = try Command.run(["swift", "build", "-c", configuration, "--product", "nstrace",
                                      "--package-path", packageRoot, "--scratch-path", scratch],
                                     quiet: true)
        guard status == 0, FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("could not build nstrace (swift build exited with \(status)); pass --nstrace PATH")
        }
        if configuration == "debug" { log.note("warning: a debug nstrace; its figures are not the product's") }
        return binary
    }
}

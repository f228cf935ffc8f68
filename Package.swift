// swift-tools-version:6.0
import PackageDescription

// Scripts/package sets NSTRACE_COMMIT to the commit it builds; a plain `swift build` needs no git and
// leaves it empty. Nothing but ASCII letters, digits and "-" gets into the C string.
let buildCommit = String((Context.environment["NSTRACE_COMMIT"] ?? "").filter {
    $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-")
})

let package = Package(
    name: "nstrace",
    products: [
        .executable(name: "nstrace", targets: ["CLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The micro-benchmarks' harness (Benchmarks/): small, and needs nothing but ArgumentParser.
        .package(url: "https://github.com/google/swift-benchmark", from: "0.1.2"),
    ],
    targets: [
        // System libraries, found through pkg-config; Debian names the packages that provide them.
        .systemLibrary(
            name: "CCapstone",
            pkgConfig: "capstone",
            providers: [.apt(["libcapstone-dev"])]
        ),
        .systemLibrary(
            name: "CElfutils",
            pkgConfig: "libdw",
            providers: [.apt(["libdw-dev", "libelf-dev"])]
        ),
        // What Swift cannot call directly: variadic ptrace, wait-status macros, fork+exec for launch,
        // libdwfl's callback tables, the demanglers (libiberty: Debian's libiberty-dev, static only).
        .target(
            name: "CShim",
            linkerSettings: [.linkedLibrary("dw"), .linkedLibrary("elf"), .linkedLibrary("iberty")]
        ),

        // The commit `nstrace --version` names; see buildCommit.
        .target(name: "CBuildInfo", cSettings: [.define("NSTRACE_COMMIT", to: "\"\(buildCommit)\"")]),

        .target(name: "Symbols", dependencies: ["CElfutils", "CShim"]),
        .target(name: "Relocator", dependencies: ["CCapstone"]),
        // Dynamic exclusivity checks cost the engine's per-record path a tenth of its time (measured with
        // perf on a redis trace); the engine owns its state on one thread.
        .target(name: "NonStop", dependencies: ["Symbols", "Relocator", "CShim"],
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // How events look: the renderers, the filters before them, `nstrace list`'s lines. A library so
        // that the CLI and the render benchmark run the same code. The renderers write every event byte
        // by byte through one buffer: dynamic exclusivity checks on it cost them more than the
        // formatting does.
        .target(name: "Rendering", dependencies: ["Symbols", "Relocator", "NonStop", "CShim"],
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .executableTarget(
            name: "CLI",
            dependencies: [
                "Symbols", "Relocator", "NonStop", "Rendering", "CBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "SymbolsTests", dependencies: ["Symbols", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["CLI", "TestSupport"]),
        .testTarget(name: "NonStopTests", dependencies: ["Symbols", "NonStop", "TestSupport"]),
        // Builds the release tarball (Scripts/package) and runs it with the toolchain hidden.
        .testTarget(name: "ReleaseTests", dependencies: ["TestSupport"]),
        .testTarget(
            name: "RelocatorTests",
            dependencies: ["Relocator", "Symbols", "NonStop", "CShim", "TestSupport", "OracleSupport"]
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // The Relocator execution oracle's C side: fork with PTRACE_TRACEME, affinity, CPUID.
        .target(name: "OracleSupport", path: "Tests/OracleSupport"),

        // `swift run -c release nstrace-bench`: the overhead suite against other tracers, and
        // micro-benchmarks of the hot paths. Its C programs are compiled with gcc when it runs.
        .executableTarget(
            name: "nstrace-bench",
            dependencies: [
                "Symbols", "Relocator", "NonStop", "Rendering", "CShim", "BenchSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Benchmark", package: "swift-benchmark"),
            ],
            path: "Benchmarks/Sources/nstrace-bench"
        ),
        .target(name: "BenchSupport", path: "Benchmarks/Sources/BenchSupport"),
    ],
    swiftLanguageModes: [.v5]
)

// The fuzzers (Fuzz/, run by Scripts/fuzz): libFuzzer harnesses built with `-sanitize=fuzzer`, which
// only Scripts/fuzz passes, into their own build directory. They exist only when NSTRACE_FUZZ=1, so a
// plain `swift build` or `swift test` neither sees nor builds them.
if Context.environment["NSTRACE_FUZZ"] == "1" {
    package.targets += [
        .executableTarget(name: "fuzz-relocator", dependencies: ["Relocator"], path: "Fuzz/Relocator",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "fuzz-symbols", dependencies: ["Symbols", "Relocator", "NonStop"], path: "Fuzz/Symbols",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ]
}

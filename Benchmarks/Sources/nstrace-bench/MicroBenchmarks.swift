import ArgumentParser
import Benchmark
import Foundation
import NonStop
import Relocator
import Symbols

/// In-process micro-benchmarks of nstrace's hot paths, with google/swift-benchmark: relocating an
/// instruction (per breakpoint set, and per hit under the step strategy's emulation), symbol lookup
/// (start-up, and every return site and stack frame). Events per second from records to bytes are
/// `nstrace-bench render`'s.
enum MicroBenchmarks {
    static func settings(quick: Bool) -> [BenchmarkSetting] {
        [MinTime(seconds: quick ? 0.2 : 1.0), TimeUnit(.ns), Quiet(true)]
    }

    /// One benchmark's median time per operation.
    struct Result {
        let name: String
        let medianNanoseconds: Double
        let iterations: Int
    }

    /// Runs the suites; the harness prints its own table on stdout. Each iteration is timed on its
    /// own, so a figure of about a microsecond includes the clock read.
    @discardableResult
    static func run(programs: Programs, settings: [BenchmarkSetting]) throws -> [Result] {
        // What the harness itself costs per iteration (two clock reads): the floor of every figure.
        let harness = BenchmarkSuite(name: "harness") { $0.benchmark("an empty iteration") { blackHole(0) } }
        let suites = [harness, try relocation(), try symbols(programs)]
        var runner = BenchmarkRunner(suites: suites, settings: settings)
        try runner.run()
        return runner.results.map { r in
            Result(name: "\(r.suiteName): \(r.benchmarkName)",
                   medianNanoseconds: Report.median(r.measurements) ?? 0, iterations: r.measurements.count)
        }
    }

    // MARK: Relocating an instruction

    /// Instructions at a site, and the address of the copy: each exercises one plan of the Relocator.
    private static let site: UInt64 = 0x5555_5555_1000
    private static let near: UInt64 = 0x5555_5556_0000
    private static let far: UInt64 = 0x7fff_f000_0000

    static func relocation() throws -> BenchmarkSuite {
        let decoder = try Decoder()
        let cases: [(String, [UInt8], (Instruction) -> RelocationPlan)] = [
            ("lea 1(%rdi), %rax → trampoline (copy)", [0x48, 0x8d, 0x47, 0x01], { Relocator.trampolinePlan($0, at: near) }),
            ("lock addq $1, x(%rip) → trampoline (re-targeted disp32)", [0xf0, 0x48, 0x83, 0x05, 0x10, 0x20, 0x00, 0x00, 0x01],
             { Relocator.trampolinePlan($0, at: near) }),
            ("mov x(%rip), %rax → far step slot (scratch register)", [0x48, 0x8b, 0x05, 0x10, 0x20, 0x00, 0x00],
             { Relocator.stepPlan($0, slot: far) }),
            ("jmp rel32 → emulated", [0xe9, 0x00, 0x01, 0x00, 0x00], { Relocator.stepPlan($0, slot: far) }),
        ]
        return BenchmarkSuite(name: "relocate") { suite in
            for (name, bytes, plan) in cases {
                guard let insn = decoder.decode(bytes, at: site) else { continue }
                precondition(plan(insn).kind != .refuse, "\(name) was refused: \(plan(insn))")
                suite.benchmark("decode + plan: \(name)") {
                    guard let decoded = decoder.decode(bytes, at: site) else { fatalError("\(name) did not decode") }
                    blackHole(plan(decoded))
                }
            }
        }
    }

    // MARK: Symbol lookup

    static func symbols(_ programs: Programs) throws -> BenchmarkSuite {
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .first { FileManager.default.fileExists(atPath: $0) } ?? programs.workload
        let image = try ProcessImage(file: libc)
        let read = try NamePattern("^read$"), everything = try NamePattern(".")
        let all = image.functions(matching: everything)
        // Addresses inside functions, spread over the module: what a return site or a stack frame asks.
        let step = max(1, all.count / 64)
        let addresses = stride(from: 0, to: all.count, by: step).map { all[$0].address + all[$0].size / 2 }
        let library = try ProcessImage(file: programs.signatureLibrary)
        guard let handle = library.functions(matching: try NamePattern("^nsb_handle$")).first else {
            throw BenchError("nsb_handle not found in \(programs.signatureLibrary)")
        }
        let name = URL(fileURLWithPath: libc).lastPathComponent
        return BenchmarkSuite(name: "symbols") { suite in
            suite.benchmark("open \(name) and find ^read$ (\(all.count) functions)") {
                let fresh = try ProcessImage(file: libc)
                blackHole(fresh.functions(matching: read))
            }
            suite.benchmark("match ^read$ against every function of \(name) (table cached)") {
                blackHole(image.functions(matching: read))
            }
            suite.benchmark("function containing an address in \(name), ×\(addresses.count)") {
                for a in addresses { blackHole(image.function(containing: a)) }
            }
            suite.benchmark("DWARF signature of a 5-parameter function") {
                blackHole(library.signature(of: handle))
            }
        }
    }
}

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// `nstrace-bench micro`: only the micro-benchmarks, with the harness's own options.
struct MicroCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "micro",
        abstract: "Only the in-process micro-benchmarks (relocating, symbol lookup).")

    @OptionGroup var arguments: BenchmarkArguments

    func run() throws {
        let log = Progress()
        let programs = try Programs.build(sources: try Location.find().cSources, log: log)
        defer { programs.remove() }
        try MicroBenchmarks.run(programs: programs, settings: arguments.settings)
    }
}

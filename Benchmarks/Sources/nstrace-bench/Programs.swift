import Foundation
import Symbols

/// The suite's C programs, compiled with gcc into a fresh temporary directory at the start of each
/// run (never committed as binaries), and what the suite needs to know about them.
struct Programs {
    let directory: String
    /// Benchmarks/C/workload.c: T threads calling one function K times; prints its ground truth.
    let workload: String
    /// The same built with -fpatchable-function-entry=5 and nsb_tiny, nsb_work given patchable nops:
    /// what uftrace's dynamic patching needs for nsb_tiny (see workload.c).
    let patchableWorkload: String
    /// The small ptrace tracers: the floor and the two baselines nstrace is measured against.
    let floor: String
    let liftReinsert: String
    let allStop: String
    /// A shared library with DWARF, whose function signature the formatting micro-benchmark reads.
    let signatureLibrary: String
    /// Link-time addresses of the workload's functions (it is a PIE; the tracers add the load base).
    let addresses: [String: UInt64]
    /// Iterations of nsb_work's loop that take about one microsecond on this machine.
    let workIterations: Int

    static func build(sources: String, log: Progress) throws -> Programs {
        guard let gcc = Command.which("gcc") else { throw BenchError("gcc is needed to build the workload (apt-get install gcc)") }
        let dir = NSTemporaryDirectory() + "nstrace-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        log.note("compiling the workload and the baseline tracers into \(dir)")
        func cc(_ output: String, _ arguments: [String]) throws -> String {
            let path = "\(dir)/\(output)"
            let status = try Command.run([gcc, "-O2", "-g", "-Wall", "-Wextra", "-o", path] + arguments, quiet: true)
            guard status == 0 else { throw BenchError("gcc failed for \(output)") }
            return path
        }
        let workload = try cc("workload", ["-pthread", "\(sources)/workload.c"])
        let patchable = try cc("workload-patchable", ["-pthread", "-fpatchable-function-entry=5", "-DNSB_PATCHABLE_ENTRY",
                                                       "\(sources)/workload.c"])
        let floor = try cc("floor", ["\(sources)/floor.c"])
        let lift = try cc("lift_reinsert", ["\(sources)/lift_reinsert.c"])
        let allStop = try cc("all_stop", ["\(sources)/all_stop.c"])
        let library = try cc("libsignature.so", ["-shared", "-fPIC", "\(sources)/signature.c"])

        let image = try ProcessImage(file: workload)
        var addresses: [String: UInt64] = [:]
        for name in ["nsb_tiny", "nsb_work", "nsb_floor", "nsb_floor_work"] {
            guard let f = image.functions(matching: try NamePattern("^\(name)$")).first else {
                throw BenchError("\(name) not found in the workload's symbols")
            }
            addresses[name] = f.address
        }
        let iterations = try calibrate(workload: workload, scratch: dir)
        log.note("nsb_work: \(iterations) iterations take about 1 µs here")
        return Programs(directory: dir, workload: workload, patchableWorkload: patchable, floor: floor, liftReinsert: lift, allStop: allStop,
                        signatureLibrary: library, addresses: addresses, workIterations: iterations)
    }

    /// The median of five calibrations (each already the fastest of seven timings).
    private static func calibrate(workload: String, scratch: String) throws -> Int {
        var values: [Int] = []
        for _ in 0..<5 {
            let outcome = try Command.run([workload, "calibrate"], timeout: 60, scratch: scratch, name: "calibrate")
            guard outcome.exitCode == 0, let n = Int(outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0
            else { throw BenchError("workload calibrate failed: \(outcome.stderr)") }
            values.append(n)
        }
        return values.sorted()[values.count / 2]
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

import Foundation

/// The other tracers (and redis) as installed on this machine: where they are, and the version each
/// reports, so a table says what it measured. A peer that is missing is nil, and every contender
/// built on it is reported as skipped, never faked.
struct Peers {
    let ltrace: String?
    let gdb: String?
    let bpftrace: String?
    let uftrace: String?
    /// A python3 that can `import frida`, and the suite's driver script for it.
    let fridaPython: String?
    let fridaDriver: String
    let redisServer: String?
    let redisBenchmark: String?
    let redisCLI: String?
    /// "name version" of each peer found.
    let versions: [String]

    static func find(packageRoot: String, scratch: String) -> Peers {
        let ltrace = Command.which("ltrace"), gdb = Command.which("gdb"), bpftrace = Command.which("bpftrace")
        let uftrace = Command.which("uftrace")
        let redisServer = Command.which("redis-server"), redisBenchmark = Command.which("redis-benchmark")
        let redisCLI = Command.which("redis-cli")
        let python = Command.which("python3")
        var versions: [String] = []
        func version(_ name: String, _ argv: [String]?, pattern: String = #"\d+\.\d+(\.\d+)?"#) -> String? {
            guard let argv, let o = try? Command.run(argv, timeout: 30, scratch: scratch, name: "version-\(name)"),
                  o.exitCode == 0 else { return nil }
            let text = o.stdout + o.stderr
            guard let range = text.range(of: pattern, options: .regularExpression) else { return nil }
            let v = String(text[range])
            versions.append("\(name) \(v)")
            return v
        }
        _ = version("ltrace", ltrace.map { [$0, "-V"] })
        _ = version("gdb", gdb.map { [$0, "--version"] })
        _ = version("bpftrace", bpftrace.map { [$0, "--version"] })
        _ = version("uftrace", uftrace.map { [$0, "--version"] })
        let frida = version("frida", python.map { [$0, "-c", "import frida; print(frida.__version__)"] })
        _ = version("redis", redisServer.map { [$0, "--version"] })
        return Peers(ltrace: ltrace, gdb: gdb, bpftrace: bpftrace, uftrace: uftrace,
                     fridaPython: frida == nil ? nil : python,
                     fridaDriver: packageRoot + "/Benchmarks/frida/trace.py",
                     redisServer: redisServer, redisBenchmark: redisBenchmark, redisCLI: redisCLI,
                     versions: versions)
    }
}

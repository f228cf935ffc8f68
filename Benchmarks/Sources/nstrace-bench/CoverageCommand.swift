import ArgumentParser
import Foundation

/// `nstrace-bench coverage`: the share of functions the inline strategy traces with no int3 at all,
/// from `nstrace list --json` (the same decision the engine takes): libc.so.6 as a file, and a
/// running redis-server (whose GOT says where its tail calls through the PLT go), with the reasons
/// the other functions keep int3s, counted.
struct CoverageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coverage",
        abstract: "The share of functions traced inline with no int3, for libc and a running redis-server."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("The libc to list.", valueName: "PATH"))
    var libc = "/lib/x86_64-linux-gnu/libc.so.6"

    struct Tally: Codable {
        let target: String
        let functions: Int
        let fullyInline: Int
        /// Fallback sites by kind and reason (addresses and names taken out), most frequent first.
        let reasons: [Reason]

        struct Reason: Codable {
            let kind: String
            let reason: String
            let sites: Int
            let functions: Int
        }

        var share: Double { functions == 0 ? 0 : Double(fullyInline) / Double(functions) }
    }

    func run() throws {
        let log = Progress()
        let location = try Location.find()
        let binary = try options.nstrace ?? location.nstraceBinary(log: log)
        var tallies: [Tally] = []
        log.note("listing \(libc)")
        tallies.append(try tally(nstrace: binary, arguments: [libc, "."], target: "libc.so.6 (file)", module: nil))

        let scratch = NSTemporaryDirectory() + "nstrace-bench-coverage-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let peers = Peers.find(packageRoot: location.packageRoot, scratch: scratch)
        if let redis = peers.redisServer, let cli = peers.redisCLI {
            let server = try RedisServer(server: redis, cli: cli, scratch: scratch, name: "coverage-redis")
            defer { server.stop() }
            log.note("listing redis-server (pid \(server.pid))")
            tallies.append(try tally(nstrace: binary, arguments: ["-p", "\(server.pid)", "."],
                                     target: "redis-server (running)", module: "redis-check-rdb"))
            tallies.append(try tally(nstrace: binary, arguments: ["-p", "\(server.pid)", "."],
                                     target: "libc.so.6 in redis-server (running)", module: "libc.so.6"))
        } else {
            log.note("redis-server not installed: only libc")
        }
        let text = Self.markdown(tallies)
        print(text)
        if let json = options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(tallies).write(to: URL(fileURLWithPath: json))
        }
        if let markdown = options.markdown { try text.write(toFile: markdown, atomically: true, encoding: .utf8) }
    }

    /// `module`: only the functions of that module (a running process lists every module's).
    private func tally(nstrace: String, arguments: [String], target: String, module: String?) throws -> Tally {
        let scratch = NSTemporaryDirectory()
        let outcome = try Command.run([nstrace, "list", "--json"] + arguments, timeout: 600, scratch: scratch,
                                      name: "nstrace-bench-coverage-\(getpid())")
        guard outcome.exitCode == 0 else { throw BenchError("nstrace list failed: \(outcome.stderr)") }
        var functions = 0, inline = 0
        var sites: [String: (kind: String, reason: String, sites: Int, functions: Set<String>)] = [:]
        for line in outcome.stdout.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if let module, object["module"] as? String != module { continue }
            functions += 1
            if object["inline"] as? Bool == true { inline += 1 }
            let name = object["function"] as? String ?? "?"
            for fallback in object["fallback"] as? [[String: Any]] ?? [] {
                let kind = fallback["kind"] as? String ?? "?"
                let reason = Self.generic(fallback["reason"] as? String ?? "?")
                let key = kind + " " + reason
                var entry = sites[key] ?? (kind, reason, 0, [])
                entry.sites += 1
                entry.functions.insert(name)
                sites[key] = entry
            }
        }
        let reasons = sites.values.sorted { ($0.functions.count, $0.sites) > ($1.functions.count, $1.sites) }
            .map { Tally.Reason(kind: $0.kind, reason: $0.reason, sites: $0.sites, functions: $0.functions.count) }
        return Tally(target: target, functions: functions, fullyInline: inline, reasons: reasons)
    }

    /// A reason without the addresses, instructions and names that make each one different.
    static func generic(_ reason: String) -> String {
        var text = reason.replacingOccurrences(of: #"0x[0-9a-f]+"#, with: "X", options: .regularExpression)
        text = text.replacingOccurrences(of: #"\(([^()]*)\)"#, with: "(…)", options: .regularExpression)
        return text
    }

    static func markdown(_ tallies: [Tally]) -> String {
        var out = ["| target | functions | traced with no int3 | share |", "|---|---:|---:|---:|"]
        for t in tallies {
            out.append("| \(t.target) | \(t.functions) | \(t.fullyInline) | \(String(format: "%.1f%%", 100 * t.share)) |")
        }
        for t in tallies {
            out += ["", "Why the other functions of \(t.target) keep int3s (functions, sites), most frequent first:", "",
                    "| kind | reason | functions | sites |", "|---|---|---:|---:|"]
            for r in t.reasons.prefix(12) {
                out.append("| \(r.kind) | \(r.reason.replacingOccurrences(of: "|", with: "\\|")) | \(r.functions) | \(r.sites) |")
            }
        }
        return out.joined(separator: "\n") + "\n"
    }
}

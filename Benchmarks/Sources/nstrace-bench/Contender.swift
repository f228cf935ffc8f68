import Foundation

enum ContenderID: String, CaseIterable, Codable {
    case untraced
    case floor
    case nstraceJump = "nstrace-jump"
    case nstraceStep = "nstrace-step"
    case liftReinsert = "lift-reinsert"
    case allStop = "all-stop"
    case ltrace
    case gdb = "gdb-nonstop"
    case bpftrace
}

/// One way of running the workload, and how to count the calls it saw.
struct Contender {
    let id: ContenderID
    /// Tracer stops per call: what a ptrace tracer pays for (nstrace and ltrace stop at returns too).
    let stopsPerCall: String
    /// Why it is not run (a peer that is not installed), or nil.
    let skipReason: String?
    /// The command, given the workload's own command line and a file for the tracer's output.
    let command: (_ run: RunSpec) -> [String]
    /// Calls the tracer reported; nil for the untraced run, which sees nothing.
    let seen: (_ run: RunSpec, _ outcome: Command.Outcome) -> Int?

    /// What one run needs to know.
    struct RunSpec {
        let workload: Workload
        let threads: Int
        let calls: Int
        let programs: Programs
        /// Where the tracer writes its trace (nstrace's JSON Lines, ltrace's -o).
        let traceFile: String

        var program: [String] { workload.command(programs, threads: threads, calls: calls) }
        var function: String { workload.function }
        func address(_ name: String) -> String { "0x" + String(programs.addresses[name] ?? 0, radix: 16) }
    }

    static func all(nstrace: String, programs: Programs) -> [Contender] {
        let ltrace = Command.which("ltrace"), gdb = Command.which("gdb"), bpftrace = Command.which("bpftrace")
        return [
            Contender(id: .untraced, stopsPerCall: "0", skipReason: nil,
                      command: { $0.program }, seen: { _, _ in nil }),
            Contender(id: .floor, stopsPerCall: "1", skipReason: nil,
                      command: { r in [r.programs.floor, r.address(r.workload.floorFunction), "--"]
                                     + r.workload.command(r.programs, threads: r.threads, calls: r.calls, floor: true) },
                      seen: { _, o in hits(o) }),
            nstraceContender(.nstraceJump, binary: nstrace, strategy: "jump"),
            nstraceContender(.nstraceStep, binary: nstrace, strategy: "step"),
            Contender(id: .liftReinsert, stopsPerCall: "1", skipReason: nil,
                      command: { r in [r.programs.liftReinsert, r.address(r.function), "--"] + r.program },
                      seen: { _, o in hits(o) }),
            Contender(id: .allStop, stopsPerCall: "1 + T−1 interrupts", skipReason: nil,
                      command: { r in [r.programs.allStop, r.address(r.function), "--"] + r.program },
                      seen: { _, o in hits(o) }),
            // -L: no library calls, only the function -x names; -f: every thread.
            Contender(id: .ltrace, stopsPerCall: "2", skipReason: ltrace == nil ? "not installed" : nil,
                      command: { r in [ltrace ?? "ltrace", "-f", "-L", "-x", r.function, "-o", r.traceFile] + r.program },
                      seen: { r, _ in occurrences(of: "\(r.function)(", inFile: r.traceFile) }),
            Contender(id: .gdb, stopsPerCall: "1", skipReason: gdb == nil ? "not installed" : nil,
                      command: { r in [gdb ?? "gdb", "-nx", "-batch", "-ex", "set non-stop on", "-ex", "set pagination off",
                                       "-ex", "set confirm off", "-ex", "set startup-with-shell off",
                                       "-ex", "dprintf \(r.function),\"nsb-hit\\n\"", "-ex", "run", "--args"] + r.program },
                      seen: { _, o in o.stdout.split(separator: "\n").filter { $0 == "nsb-hit" }.count }),
            Contender(id: .bpftrace, stopsPerCall: "0 (in kernel)", skipReason: bpftrace == nil ? "not installed" : nil,
                      command: { r in [bpftrace ?? "bpftrace", "-e", "uprobe:\(r.programs.workload):\(r.function) { @c = count(); }",
                                       "-c", r.program.joined(separator: " ")] },
                      seen: { _, o in bpftraceCount(o.stdout) }),
        ]
    }

    private static func nstraceContender(_ id: ContenderID, binary: String, strategy: String) -> Contender {
        Contender(id: id, stopsPerCall: "2", skipReason: nil,
                  command: { r in [binary, "--strategy", strategy, "--json", "-o", r.traceFile, "^\(r.function)$", "--"] + r.program },
                  seen: { r, _ in
                      occurrences(of: "\"event\":\"call\"", inFile: r.traceFile, lineAlsoContaining: "\"function\":\"\(r.function)\"")
                  })
    }

    /// `nsb-hits N` from a baseline tracer's stderr.
    private static func hits(_ outcome: Command.Outcome) -> Int? {
        for line in outcome.stderr.split(separator: "\n") where line.hasPrefix("nsb-hits ") {
            return Int(line.dropFirst("nsb-hits ".count))
        }
        return nil
    }

    /// `@c: N`; bpftrace prints no line for a map that was never written.
    private static func bpftraceCount(_ stdout: String) -> Int {
        for line in stdout.split(separator: "\n") where line.hasPrefix("@c: ") {
            return Int(line.dropFirst(4)) ?? 0
        }
        return 0
    }

    /// Lines of a file containing `needle` (and `also`, when given).
    private static func occurrences(of needle: String, inFile path: String, lineAlsoContaining also: String? = nil) -> Int? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        var count = 0
        for line in text.split(separator: "\n") where line.contains(needle) {
            if let also, !line.contains(also) { continue }
            count += 1
        }
        return count
    }
}

import Foundation

enum ContenderID: String, CaseIterable, Codable {
    case untraced
    case floor
    case nstraceJump = "nstrace-jump"
    case nstraceJumpSummary = "nstrace-jump-summary"
    case nstraceStep = "nstrace-step"
    case nstraceInline = "nstrace-inline"
    case liftReinsert = "lift-reinsert"
    case allStop = "all-stop"
    case ltrace
    case gdb = "gdb-nonstop"
    case bpftrace
    case bpftraceRet = "bpftrace-ret"
    case uftrace
    case fridaJS = "frida-js"
    case fridaCModule = "frida-cmodule"
}

/// One way of running the workload, and how to count the calls it saw.
struct Contender {
    let id: ContenderID
    /// Tracer stops per call: what a ptrace tracer pays for (nstrace and ltrace stop at returns too).
    let stopsPerCall: String
    /// Tracer stops per call as a number, where it is one whole ptrace stop count (not in-process tools,
    /// not all-stop's interrupts): what per-stop figures divide by.
    var stopsPerCallCount: Int? { Int(stopsPerCall).flatMap { $0 > 0 ? $0 : nil } }
    /// Why it is not run (a peer that is not installed), or nil.
    let skipReason: String?
    /// The command, given the workload's own command line and a file for the tracer's output.
    let command: (_ run: RunSpec) -> [String]
    /// Calls the tracer reported; nil for the untraced run, which sees nothing.
    let seen: (_ run: RunSpec, _ outcome: Command.Outcome) -> Int?
    /// Returns the tracer reported, for those that record them and say how many.
    var returns: ((_ run: RunSpec, _ outcome: Command.Outcome) -> Int?)? = nil

    /// What one run needs to know.
    struct RunSpec {
        let workload: Workload
        let threads: Int
        let calls: Int
        let programs: Programs
        /// Where the tracer writes its trace (nstrace's JSON Lines, ltrace's -o, uftrace's -d).
        let traceFile: String

        var program: [String] { workload.command(programs, threads: threads, calls: calls) }
        var function: String { workload.function }
        func address(_ name: String) -> String { "0x" + String(programs.addresses[name] ?? 0, radix: 16) }
    }

    static func all(nstrace: String, programs: Programs, peers: Peers) -> [Contender] {
        func missing(_ path: String?) -> String? { path == nil ? "not installed" : nil }
        return [
            Contender(id: .untraced, stopsPerCall: "0", skipReason: nil,
                      command: { $0.program }, seen: { _, _ in nil }),
            Contender(id: .floor, stopsPerCall: "1", skipReason: nil,
                      command: { r in [r.programs.floor, r.address(r.workload.floorFunction), "--"]
                                     + r.workload.command(r.programs, threads: r.threads, calls: r.calls, floor: true) },
                      seen: { _, o in hits(o) }),
            nstraceContender(.nstraceJump, binary: nstrace, strategy: "jump", stops: "2"),
            summaryContender(.nstraceJumpSummary, binary: nstrace, strategy: "jump", stops: "2"),
            nstraceContender(.nstraceStep, binary: nstrace, strategy: "step", stops: "2"),
            nstraceContender(.nstraceInline, binary: nstrace, strategy: "inline", stops: "0 (in process)"),
            Contender(id: .liftReinsert, stopsPerCall: "1", skipReason: nil,
                      command: { r in [r.programs.liftReinsert, r.address(r.function), "--"] + r.program },
                      seen: { _, o in hits(o) }),
            Contender(id: .allStop, stopsPerCall: "1 + T−1 interrupts", skipReason: nil,
                      command: { r in [r.programs.allStop, r.address(r.function), "--"] + r.program },
                      seen: { _, o in hits(o) }),
            // -L: no library calls, only the function -x names; -f: every thread.
            Contender(id: .ltrace, stopsPerCall: "2", skipReason: missing(peers.ltrace),
                      command: { r in [peers.ltrace ?? "ltrace", "-f", "-L", "-x", r.function, "-o", r.traceFile] + r.program },
                      seen: { r, _ in occurrences(of: "\(r.function)(", inFile: r.traceFile) }),
            Contender(id: .gdb, stopsPerCall: "1", skipReason: missing(peers.gdb),
                      command: { r in [peers.gdb ?? "gdb", "-nx", "-batch", "-ex", "set non-stop on", "-ex", "set pagination off",
                                       "-ex", "set confirm off", "-ex", "set startup-with-shell off",
                                       "-ex", "dprintf \(r.function),\"nsb-hit\\n\"", "-ex", "run", "--args"] + r.program },
                      seen: { _, o in o.stdout.split(separator: "\n").filter { $0 == "nsb-hit" }.count }),
            Contender(id: .bpftrace, stopsPerCall: "0 (in kernel)", skipReason: missing(peers.bpftrace),
                      command: { r in [peers.bpftrace ?? "bpftrace", "-e", "uprobe:\(r.programs.workload):\(r.function) { @c = count(); }",
                                       "-c", r.program.joined(separator: " ")] },
                      seen: { _, o in bpftraceCount("@c", o.stdout) }),
            // uretprobe: the kernel swaps the return address on the stack for a trampoline's.
            Contender(id: .bpftraceRet, stopsPerCall: "0 (in kernel)", skipReason: missing(peers.bpftrace),
                      command: { r in [peers.bpftrace ?? "bpftrace", "-e",
                                       "uprobe:\(r.programs.workload):\(r.function) { @c = count(); } "
                                       + "uretprobe:\(r.programs.workload):\(r.function) { @r = count(); }",
                                       "-c", r.program.joined(separator: " ")] },
                      seen: { _, o in bpftraceCount("@c", o.stdout) },
                      returns: { _, o in bpftraceCount("@r", o.stdout) }),
            uftraceContender(peers),
            fridaContender(.fridaJS, mode: "js", peers),
            fridaContender(.fridaCModule, mode: "cmodule", peers),
        ]
    }

    private static func nstraceContender(_ id: ContenderID, binary: String, strategy: String, stops: String) -> Contender {
        func events(_ kind: String) -> (RunSpec, Command.Outcome) -> Int? {
            { r, _ in occurrences(of: "\"event\":\"\(kind)\"", inFile: r.traceFile, lineAlsoContaining: "\"function\":\"\(r.function)\"") }
        }
        return Contender(id: id, stopsPerCall: stops, skipReason: nil,
                         command: { r in
                             [binary, "--strategy", strategy] + (strategy == "inline" ? ["--ring-size", "\(ringMegabytes(r))"] : [])
                                 + ["--json", "-o", r.traceFile, "^\(r.function)$", "--"] + r.program
                         },
                         seen: events("call"), returns: events("return"))
    }

    /// nstrace writing only the summary (`-c`): the engine's cost per stop without a JSON event per
    /// call and per return to format on the same CPUs. Counted from the summary's `calls` column and
    /// its histogram's `(ns, N returns)` heading.
    private static func summaryContender(_ id: ContenderID, binary: String, strategy: String, stops: String) -> Contender {
        func summary(_ r: RunSpec) -> [Substring] {
            ((try? String(contentsOfFile: r.traceFile, encoding: .utf8)) ?? "").split(separator: "\n")
        }
        return Contender(id: id, stopsPerCall: stops, skipReason: nil,
                         command: { r in [binary, "--strategy", strategy, "-c", "-o", r.traceFile, "^\(r.function)$", "--"] + r.program },
                         seen: { r, _ in
                             summary(r).first { $0.hasPrefix(r.function + " ") }
                                 .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } }
                         },
                         returns: { r, _ in
                             summary(r).first { $0.hasPrefix("@\(r.function) (ns, ") }
                                 .flatMap { $0.split(separator: " ").dropFirst(2).first.flatMap { Int($0) } }
                         })
    }

    /// A ring that holds the whole run (two 64-byte records a call; a bucket may take two threads' —
    /// threads are spread by their tid's low bits): what is measured is then the pads' cost in the
    /// program, with nstrace reading the ring beside it — not how fast nstrace turns records into JSON,
    /// which a full ring would make the program lose (or, with --lossless, wait for).
    private static func ringMegabytes(_ r: RunSpec) -> Int {
        let perBucket = r.calls * 2 * 64 * min(r.threads, 2)
        var megabytes = 16
        while megabytes << 20 < perBucket * 16 * 5 / 4, megabytes < 4096 { megabytes *= 2 }
        return megabytes
    }

    /// uftrace's dynamic patching runs the workload built with patchable entries (see workload.c):
    /// `-P` turns the five nops into a call to its trampoline, which records entry and return (by
    /// swapping the return address) into per-thread shared-memory buffers that uftrace writes to
    /// files. `--no-libcall`: only the function -P names, as ltrace's -L.
    private static func uftraceContender(_ peers: Peers) -> Contender {
        func records(_ kind: String) -> (RunSpec, Command.Outcome) -> Int? {
            { r, _ in
                guard let uftrace = peers.uftrace,
                      let dump = try? Command.run([uftrace, "dump", "--no-pager", "-d", r.traceFile], timeout: 120,
                                                  scratch: r.programs.directory, name: "uftrace-dump"),
                      dump.exitCode == 0 else { return nil }
                return dump.stdout.split(separator: "\n").filter { $0.contains("[\(kind)] \(r.function)(") }.count
            }
        }
        return Contender(id: .uftrace, stopsPerCall: "0 (in process)", skipReason: peers.uftrace == nil ? "not installed" : nil,
                         command: { r in [peers.uftrace ?? "uftrace", "record", "--no-libcall", "-d", r.traceFile, "-P", "^\(r.function)$"]
                                        + r.workload.command(r.programs, threads: r.threads, calls: r.calls, patchable: true) },
                         seen: records("entry"), returns: records("exit "))
    }

    /// Benchmarks/frida/trace.py spawns the workload, attaches Interceptor callbacks at the function's
    /// address (it is not exported), resumes it and prints what the callbacks counted.
    private static func fridaContender(_ id: ContenderID, mode: String, _ peers: Peers) -> Contender {
        func count(_ field: String) -> (RunSpec, Command.Outcome) -> Int? {
            { _, o in
                for line in o.stdout.split(separator: "\n") where line.hasPrefix("nsb-frida ") {
                    let words = line.split(separator: " ")
                    if let i = words.firstIndex(of: Substring(field)), i + 1 < words.count { return Int(words[i + 1]) }
                }
                return nil
            }
        }
        return Contender(id: id, stopsPerCall: "0 (in process)",
                         skipReason: peers.fridaPython == nil ? "not installed (python3 -m pip install frida)" : nil,
                         command: { r in [peers.fridaPython ?? "python3", peers.fridaDriver, "--mode", mode,
                                          "--offset", r.address(r.function), "--"] + r.program },
                         seen: count("entries"), returns: count("returns"))
    }

    /// `nsb-hits N` from a baseline tracer's stderr.
    private static func hits(_ outcome: Command.Outcome) -> Int? {
        for line in outcome.stderr.split(separator: "\n") where line.hasPrefix("nsb-hits ") {
            return Int(line.dropFirst("nsb-hits ".count))
        }
        return nil
    }

    /// `@map: N`; bpftrace prints no line for a map that was never written.
    static func bpftraceCount(_ map: String, _ stdout: String) -> Int {
        for line in stdout.split(separator: "\n") where line.hasPrefix("\(map): ") {
            return Int(line.dropFirst(map.count + 2)) ?? 0
        }
        return 0
    }

    /// Lines of a file containing `needle` (and `also`, when given).
    static func occurrences(of needle: String, inFile path: String, lineAlsoContaining also: String? = nil) -> Int? {
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

import Foundation

enum RedisToolID: String, CaseIterable {
    case untraced
    case nstraceJump = "nstrace-jump"
    case nstraceInline = "nstrace-inline"
    case bpftrace
    case bpftraceRet = "bpftrace-ret"
    case fridaCModule = "frida-cmodule"
    case fridaJS = "frida-js"
    case ltrace
}

/// One tool attached to the running server, tracing libc's read and write.
struct RedisTool {
    let id: RedisToolID
    let skipReason: String?
    /// How it is known to be attached before the benchmark starts.
    let readiness: Readiness
    /// The command, given the server and a file for its output; nil for the untraced run.
    let command: ((_ run: Target) -> [String])?
    /// (calls, returns) of read and write together that the tool reported, read from its output.
    let counts: (_ run: Target, _ outcome: Command.Outcome) -> (calls: Int?, returns: Int?)
    /// Send SIGINT again, every second, until it exits: for the frida driver only, which takes a
    /// repeated SIGINT as the same request, and which now and then never sees the first one.
    var resendsStopSignal = false

    enum Readiness {
        /// Nothing to wait for.
        case none
        /// The first bytes of every traced function changed (an int3, a jmp): the probes are in;
        /// and the tool printed `marker` (on stdout or stderr), when given: its set-up is done.
        case codePatched(marker: String?)
        /// ltrace's breakpoints are in the server's PLT, not in libc: a PING must show up as a
        /// `read(` line in its output.
        case traceShows(String)
    }

    struct Target {
        let pid: pid_t
        let functions: [ServerFunction]
        let outputFile: String
    }

    static func all(nstrace: String, peers: Peers) -> [RedisTool] {
        [
            RedisTool(id: .untraced, skipReason: nil, readiness: .none, command: nil, counts: { _, _ in (nil, nil) }),
            nstraceTool(.nstraceJump, binary: nstrace, strategy: "jump"),
            nstraceTool(.nstraceInline, binary: nstrace, strategy: "inline"),
            bpftraceTool(.bpftrace, peers, returns: false),
            bpftraceTool(.bpftraceRet, peers, returns: true),
            fridaTool(.fridaCModule, mode: "cmodule", peers),
            fridaTool(.fridaJS, mode: "js", peers),
            // -e read+write: breakpoints on the server's PLT entries for read and write (ltrace 0.7's
            // -x does not place breakpoints inside libc when attaching here); -f: every thread.
            RedisTool(id: .ltrace, skipReason: peers.ltrace == nil ? "not installed" : nil, readiness: .traceShows("->read("),
                      command: { t in [peers.ltrace ?? "ltrace", "-f", "-p", "\(t.pid)", "-e", "read+write", "-o", t.outputFile] },
                      counts: { t, _ in
                          let calls = ["->read(", "->write("].compactMap { Contender.occurrences(of: $0, inFile: t.outputFile) }
                          return (calls.count == 2 ? calls.reduce(0, +) : nil, nil)
                      }),
        ]
    }

    /// `nstrace -p PID -c -o FILE '^(read|write)$'`: the summary table at detach has one line per
    /// function (`read  10036  …`) and a histogram heading per function (`@read (ns, 10036 returns):`).
    private static func nstraceTool(_ id: RedisToolID, binary: String, strategy: String) -> RedisTool {
        RedisTool(id: id, skipReason: nil, readiness: .codePatched(marker: nil),
                  command: { t in [binary, "-p", "\(t.pid)", "--strategy", strategy, "-c", "-o", t.outputFile, "^(read|write)$"] },
                  counts: { t, _ in
                      guard let data = FileManager.default.contents(atPath: t.outputFile) else { return (nil, nil) }
                      var calls: [String: Int] = [:], returns: [String: Int] = [:]
                      for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                          let words = line.split(separator: " ")
                          guard words.count >= 2 else { continue }
                          let name = String(words[0])
                          if t.functions.contains(where: { $0.name == name }), let n = Int(words[1]) { calls[name] = n }
                          if name.hasPrefix("@"), t.functions.contains(where: { "@" + $0.name == name }),
                             let i = words.firstIndex(where: { $0.hasSuffix("returns):") }), i > 0,
                             let n = Int(words[i - 1]) {
                              returns[String(name.dropFirst())] = n
                          }
                      }
                      return (calls.isEmpty ? nil : calls.values.reduce(0, +), returns.isEmpty ? nil : returns.values.reduce(0, +))
                  })
    }

    /// uprobes (and uretprobes) on libc's read and write, counting in BPF maps that bpftrace prints
    /// when it gets SIGINT. bpftrace 0.17's `-p PID` does not confine a uprobe on a library to that
    /// process: every process mapping libc traps on read and write while it runs, so the count is
    /// filtered by pid in the probe. BEGIN fires once every probe is attached.
    private static func bpftraceTool(_ id: RedisToolID, _ peers: Peers, returns: Bool) -> RedisTool {
        RedisTool(id: id, skipReason: peers.bpftrace == nil ? "not installed" : nil, readiness: .codePatched(marker: "nsb-ready"),
                  command: { t in
                      var program = "BEGIN { printf(\"nsb-ready\\n\"); } "
                      for f in t.functions {
                          program += "uprobe:\(f.library):\(f.name) /pid == \(t.pid)/ { @\(f.name) = count(); } "
                          if returns { program += "uretprobe:\(f.library):\(f.name) /pid == \(t.pid)/ { @\(f.name)_ret = count(); } " }
                      }
                      return [peers.bpftrace ?? "bpftrace", "-B", "line", "-p", "\(t.pid)", "-e", program]
                  },
                  counts: { t, o in
                      let calls = t.functions.map { Contender.bpftraceCount("@\($0.name)", o.stdout) }.reduce(0, +)
                      let rets = t.functions.map { Contender.bpftraceCount("@\($0.name)_ret", o.stdout) }.reduce(0, +)
                      return (calls, returns ? rets : nil)
                  })
    }

    /// Benchmarks/frida/trace.py attached to the server: Interceptor on libc's read and write with
    /// JavaScript or CModule callbacks; prints `nsb-frida NAME entries N returns M` at SIGINT.
    private static func fridaTool(_ id: RedisToolID, mode: String, _ peers: Peers) -> RedisTool {
        RedisTool(id: id, skipReason: peers.fridaPython == nil ? "not installed (python3 -m pip install frida)" : nil,
                  readiness: .codePatched(marker: "nsb-frida ready"),
                  command: { t in
                      [peers.fridaPython ?? "python3", peers.fridaDriver, "--mode", mode, "-p", "\(t.pid)"]
                          + t.functions.flatMap { ["--export", URL(fileURLWithPath: $0.library).lastPathComponent + ":" + $0.name] }
                  },
                  counts: { t, o in
                      var calls = 0, returns = 0, lines = 0
                      for line in o.stdout.split(separator: "\n") where line.hasPrefix("nsb-frida ") {
                          let w = line.split(separator: " ")
                          guard w.count == 6, let c = Int(w[3]), let r = Int(w[5]) else { continue }
                          calls += c
                          returns += r
                          lines += 1
                      }
                      return lines == t.functions.count ? (calls, returns) : (nil, nil)
                  },
                  resendsStopSignal: true)
    }
}

import Foundation
import Glibc
import Testing
import TestSupport

@Suite struct ListCommand {
    /// What `nstrace list --strategy S` calls untraceable is exactly what a trace with S refuses: one
    /// decision (Traceability), not two that can drift apart. A `syscall` first is the step strategy's
    /// refusal alone.
    @Test(arguments: ["inline", "jump", "step"])
    func listAndTraceRefuseTheSameFunctions(strategy: String) throws {
        let binary = try Fixtures.build("entries", flags: ["-g", "-O1"])
        let listing = try nstrace(["list", "--json", "--strategy", strategy, binary, "^ent_"])
        #expect(listing.status == 0, "\(listing)")
        let listed = try jsonLines(listing.stdout)
        #expect(listed.count == 2)
        let untraceable = Set(listed.filter { $0["traceable"] as? Bool == false }.compactMap { $0["function"] as? String })
        let traceFile = Paths.scratch.appendingPathComponent("entries-\(strategy).jsonl").path
        let trace = try nstrace(["--strategy", strategy, "--json", "-o", traceFile, "^ent_", "--", binary, "5"])
        #expect(trace.status == 0, "\(trace)")
        let log = try TraceLog(file: traceFile)
        let refused = Set(log.of("notice").compactMap { $0["message"] as? String }.compactMap { (message: String) -> String? in
            message.range(of: " is untraceable:").map { String(message[..<$0.lowerBound]) }
        })
        #expect(untraceable == refused, "list says \(untraceable), the trace refused \(refused)")
        #expect(untraceable == (strategy == "step" ? ["ent_starts_with_syscall"] : []))
        // What was not refused was traced, every call.
        let made = fixtureCounts(trace.stdout)
        for (function, count) in made where !refused.contains(function) {
            #expect(log.calls()[function] == count, "\(function)")
        }
    }

    @Test func jsonListsEveryMatchingFunctionWithItsParameters() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O0"], variant: "list")
        let result = try nstrace(["list", "--json", binary, "^fx_(add|scale)$"])
        #expect(result.status == 0, "\(result)")
        let objects = try jsonLines(result.stdout)
        #expect(objects.map { $0["function"] as? String } == ["fx_add", "fx_scale"])
        for object in objects {
            for key in ["function", "module", "address", "size", "aliases", "params"] {
                #expect(object[key] != nil, "missing \(key) in \(object)")
            }
            let address = try #require(object["address"] as? String)
            #expect(address.hasPrefix("0x") && UInt64(address.dropFirst(2), radix: 16) != nil)
        }
        let params = try #require(objects[1]["params"] as? [[String: Any]])
        #expect(params.map { $0["name"] as? String } == ["value", "factor", "label"])
        #expect(params.map { $0["type"] as? String } == ["double", "float", "const char *"])
        #expect(params.map { $0["size"] as? Int } == [8, 4, 8])
    }

    @Test func textListsOneLinePerFunctionAndNamesAliases() throws {
        let result = try nstrace(["list", "/lib/x86_64-linux-gnu/libc.so.6", "^read$"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdoutLines.count == 1)
        let line = try #require(result.stdoutLines.first)
        #expect(line.contains(" read"))
        #expect(line.contains("aliases:") && line.contains("__read"))
    }

    @Test func aLiveProcessIsListedByPid() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1"], variant: "live-list")
        let fixture = try RunningFixture(binary, ["wait"])
        defer { fixture.stop() }
        let result = try nstrace(["list", "--json", "-p", "\(fixture.pid)", "^(fx_add|write)$"])
        #expect(result.status == 0, "\(result)")
        let objects = try jsonLines(result.stdout)
        #expect(Set(objects.compactMap { $0["function"] as? String }) == ["fx_add", "write"])
        #expect(Set(objects.compactMap { $0["module"] as? String }) == ["libc.so.6", URL(fileURLWithPath: binary).lastPathComponent])
    }

    /// In a file an indirect function is its resolver, and says so; in a running process it is listed
    /// as the implementation the process runs, under its public name, with libc's prototype — beside
    /// the dynamic linker's own private strcmp, a different function in another module.
    @Test func anIndirectFunctionIsListedAsTheImplementationAProcessRuns() throws {
        let file = try nstrace(["list", "/lib/x86_64-linux-gnu/libc.so.6", "^strcmp$"])
        #expect(file.status == 0, "\(file)")
        #expect(file.stdoutLines.count == 1 && file.stdoutLines[0].contains("[ifunc: its implementation is chosen at load"), "\(file)")

        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1"], variant: "live-list-ifunc")
        let fixture = try RunningFixture(binary, ["wait"])
        defer { fixture.stop() }
        let result = try nstrace(["list", "--json", "-p", "\(fixture.pid)", "^strcmp$"])
        #expect(result.status == 0, "\(result)")
        let objects = try jsonLines(result.stdout)
        #expect(objects.map { $0["module"] as? String } == ["libc.so.6", "ld-linux-x86-64.so.2"], "\(result)")
        #expect(objects.allSatisfy { $0["function"] as? String == "strcmp" && $0["ifunc"] == nil })
        let libc = try #require(objects.first)
        let resolver = try #require(libc["ifunc_resolver"] as? String)
        #expect(resolver != libc["address"] as? String)
        #expect((libc["aliases"] as? [String])?.contains { $0.hasPrefix("__strcmp_") } == true, "the implementation's own name")
        let params = try #require(libc["params"] as? [[String: Any]])
        #expect(params.map { $0["name"] as? String } == ["s1", "s2"])
        #expect(params.map { $0["type"] as? String } == ["const char *", "const char *"])
        #expect(libc["return_type"] as? String == "int")
        #expect(objects.last?["ifunc_resolver"] == nil)
    }

    /// Every bad input: one line on stderr naming the problem, nothing on stdout, a non-zero exit.
    @Test(arguments: [
        (["list", "-p", "99999999", "x"], "no such process: 99999999"),
        (["list", "/nonexistent/prog", "x"], "no such file: /nonexistent/prog"),
        (["list", "/etc/hostname", "x"], "not an ELF file: /etc/hostname"),
        (["list", "/lib/x86_64-linux-gnu/libc.so.6", "re(ad"], "invalid regexp \"re(ad\" at column 6: expected ')'"),
        (["list", "/lib/x86_64-linux-gnu/libc.so.6", "^no_such_function_xyz$"], "no function matches \"^no_such_function_xyz$\""),
        (["list", "/lib/x86_64-linux-gnu/libc.so.6"], "expected BINARY and REGEX"),
    ])
    func badInputGetsOneClearLine(arguments: [String], message: String) throws {
        let result = try nstrace(arguments)
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        #expect(result.stderrLines == ["nstrace: \(message)"], "\(result)")
    }

    @Test(.enabled(if: getuid() == 0, "needs root to run nstrace as another user"))
    func permissionDeniedForSomeoneElsesProcess() throws {
        let binary = try Fixtures.build("symbols", flags: ["-O1"], variant: "root-owned")
        let fixture = try RunningFixture(binary, ["wait"])
        defer { fixture.stop() }
        let result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                  Paths.nstrace, "list", "-p", "\(fixture.pid)", "x"])
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1, "\(result)")
        #expect(result.stderr.hasPrefix("nstrace: permission denied"), "\(result)")
    }
}

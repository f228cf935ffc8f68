import Foundation
import Glibc
import Symbols
import Testing
import TestSupport

@Suite struct IndirectFunctionsOfALiveProcess {
    /// What the resolver returns when gdb calls it in the process now: an independent answer to which
    /// implementation the dynamic linker installed (the resolver decides by CPU features alone).
    func gdbCallsResolver(pid: pid_t, _ resolver: String) throws -> UInt64 {
        let result = try run("/usr/bin/gdb", ["-batch", "-nx", "-p", "\(pid)", "-ex", "p/x ((unsigned long (*)(void))\(resolver))()"],
                             timeout: 120)
        guard let line = result.stdoutLines.first(where: { $0.hasPrefix("$1 = 0x") }),
              let address = UInt64(line.dropFirst("$1 = 0x".count), radix: 16)
        else { throw TestFailure("gdb could not call \(resolver): \(result)") }
        return address
    }

    @Test func theImplementationIsWhatTheResolverReturnsAndTakesThePublicName() throws {
        let binary = try Fixtures.build("symbols", flags: ["-g", "-O1"], variant: "live-ifunc")
        let fixture = try RunningFixture(binary, ["wait"])
        defer { fixture.stop() }
        let image = try ProcessImage(pid: fixture.pid)
        let mem = open("/proc/\(fixture.pid)/mem", O_RDONLY)
        defer { close(mem) }
        let memory: (UInt64, Int) -> [UInt8]? = { address, count in
            var bytes = [UInt8](repeating: 0, count: count)
            return pread(mem, &bytes, count, off_t(Int64(bitPattern: address))) == count ? bytes : nil
        }
        for name in ["strcmp", "memcpy", "memset", "strlen"] {
            let pattern = try NamePattern("^\(name)$")
            let matched = image.functions(matching: pattern).filter { $0.module.name == "libc.so.6" && $0.isIndirect }
            let ifunc = try #require(matched.first, "\(name) is an indirect function of libc")
            let (targets, unresolved) = image.traceTargets(matched, pattern: pattern, memory: memory)
            #expect(unresolved.isEmpty, "\(unresolved)")
            let target = try #require(targets.first)
            #expect(targets.count == 1 && target.name == name && target.selectedBy == ifunc.address)
            #expect(target.address != ifunc.address && target.size > 0)
            let resolver = try #require(ifunc.resolverNames.first, "libc6-dbg names \(name)'s resolver")
            #expect(target.address == (try gdbCallsResolver(pid: fixture.pid, resolver)), "\(name)")
            // libc's prototype, since the assembly has none in DWARF.
            #expect(image.signature(of: target)?.parameters.first?.location == .register(.rdi))
        }
        // Asked for by its own name, the resolver is what is traced.
        let resolverPattern = try NamePattern("^strcmp_ifunc$")
        let resolver = image.traceTargets(image.functions(matching: resolverPattern), pattern: resolverPattern, memory: memory).targets
        #expect(resolver.map(\.name) == ["strcmp_ifunc"], "libc6-dbg names the resolver")
        #expect(resolver.first?.selectedBy == nil)
    }

    @Test func theResolverIsNamedApartFromTheIndirectFunction() throws {
        let image = try ProcessImage(file: "/lib/x86_64-linux-gnu/libc.so.6")
        let memset = try #require(image.functions(matching: try NamePattern("^memset$")).first { $0.isIndirect })
        #expect(memset.resolverNames == ["memset_ifunc"])
        #expect(memset.indirectNames.contains("memset") && !memset.indirectNames.contains("memset_ifunc"))
    }
}

import ArgumentParser
import Foundation
import NonStop
import Relocator
import Rendering
import Symbols

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the functions a pattern matches, in a binary or a running process.",
        discussion: """
            Examples:
              nstrace list ./server 'handle_'
              nstrace list ./shop '^shop::check$'
              nstrace list -p 1234 '^(read|write)$'
              nstrace list --json /lib/x86_64-linux-gnu/libc.so.6 .
            """
    )

    @Flag(help: "One JSON object per line.")
    var json = false

    @Flag(help: "Name each function by its symbol first (_ZN4shop5checkERKNS_5OrderE), its demangled name beside.")
    var noDemangle = false

    @Option(name: .short, help: "A running process.")
    var pid: Int32?

    @Option(help: "Which strategy's view: inline, jump or step (what a trace with it would refuse).")
    var strategy: String = Strategy.inline.rawValue

    @Argument(help: "BINARY, then REGEX (with -p PID: only REGEX).")
    var arguments: [String]

    func validate() throws {
        let expected = pid == nil ? 2 : 1
        guard arguments.count == expected else {
            throw ValidationError(pid == nil ? "expected BINARY and REGEX" : "expected REGEX (with -p PID, no BINARY)")
        }
        guard Strategy(rawValue: strategy) != nil else { throw ValidationError("--strategy must be inline, jump or step") }
    }

    func run() throws {
        let pattern = try NamePattern(arguments.last ?? "")
        let image = try pid.map { try ProcessImage(pid: $0) } ?? ProcessImage(file: arguments[0])
        let matched = image.functions(matching: pattern)
        guard !matched.isEmpty else { throw NoFunctionMatches(pattern: pattern.source) }
        let decoder = try Decoder()
        // A running process's GOT says where its tail calls through the PLT go, and which implementation
        // each indirect function runs (a file's does not).
        let memory = pid.flatMap { MemoryFile(pid: $0) }
        let (functions, unresolved) = image.traceTargets(matched, pattern: pattern, memory: memory.map { m in m.read })
        for failure in unresolved {
            // Listing never stops the process; tracing it does, and calls the resolver to find out.
            FileHandle.standardError.write(Data("nstrace: \(failure); a trace asks its resolver in the process\n".utf8))
        }
        for function in functions {
            let signature = image.signature(of: function)
            let plan = InlineSites.plan(for: function, in: image, decoder: decoder, memory: memory.map { m in m.read })
            let refusal = Traceability.refusal(of: function, in: image, decoder: decoder, strategy: Strategy(rawValue: strategy) ?? .inline, plan: plan)
            print(json ? FunctionListing.json(function, signature, refusal, plan, demangling: !noDemangle)
                       : FunctionListing.text(function, signature, refusal, plan, demangling: !noDemangle))
        }
    }
}

/// A process's memory read through /proc/PID/mem (nil where it cannot be opened).
final class MemoryFile {
    private let fd: Int32

    init?(pid: Int32) {
        fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    func read(_ address: UInt64, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = pread(fd, &bytes, count, off_t(Int64(bitPattern: address)))
        return n == count ? bytes : nil
    }
}

struct NoFunctionMatches: Error, CustomStringConvertible {
    let pattern: String
    var description: String { "no function matches \"\(pattern)\"" }
}

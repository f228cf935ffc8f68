import ArgumentParser
import Foundation

@main
struct NSTrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nstrace",
        abstract: "Non-stop function tracer for Linux x86-64.",
        version: Version.description,
        subcommands: [TraceCommand.self, ListCommand.self],
        defaultSubcommand: TraceCommand.self
    )

    static func main() {
        // The trace command is the default one: plain `nstrace --help` describes it, as strace's does.
        if let first = CommandLine.arguments.dropFirst().first, ["--help", "-h", "help"].contains(first) {
            print(NSTrace.helpMessage(for: TraceCommand.self))
            return
        }
        // `--syscalls` with no value means every syscall: -S (`--syscalls=NAMES` names some).
        var arguments = Array(CommandLine.arguments.dropFirst())
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        for i in arguments[..<end].indices where arguments[i] == "--syscalls" { arguments[i] = "-S" }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exitReporting(error)
        }
    }

    /// Bad input gets one line on stderr and a non-zero exit; help and --version print as usual.
    static func exitReporting(_ error: Error) -> Never {
        if exitCode(for: error) == .success || error is ExitCode { exit(withError: error) }
        let message: String
        if !(error is ValidationError), !isArgumentParserError(error) {
            message = String(describing: error)
        } else {
            message = NSTrace.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
        }
        FileHandle.standardError.write(Data("nstrace: \(message)\n".utf8))
        Foundation.exit(exitCode(for: error) == .validationFailure ? 2 : 1)
    }

    private static func isArgumentParserError(_ error: Error) -> Bool {
        String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
    }
}

import ArgumentParser

/// Options both the overhead suite and `nstrace-bench redis` take. ArgumentParser lets a parent
/// command consume its options wherever they appear, even after a subcommand's name, so options the
/// two share live in one group that both declare: the subcommand receives what the parent decoded.
struct CommonOptions: ParsableArguments {
    @Flag(help: "A shorter run: fewer rounds (and thread counts, or shorter redis runs).")
    var quick = false

    @Option(help: ArgumentHelp("Rounds of every contender (default 7, redis 5; --quick 3).", valueName: "N"))
    var rounds: Int?

    @Option(help: ArgumentHelp("Contenders to run besides untraced (and the floor), comma-separated (default: all).", valueName: "TOOL,..."))
    var only: String?

    @Option(help: ArgumentHelp("Seconds one traced run (redis: one redis-benchmark run) may take before it is killed and recorded as a timeout (default 120, redis 60).", valueName: "SECONDS"))
    var timeout: Double?

    @Option(help: ArgumentHelp("Write the results as JSON to FILE: one object per workload, contender and thread count (redis: per tool).", valueName: "FILE"))
    var json: String?

    @Option(help: ArgumentHelp("Write the tables as Markdown to FILE.", valueName: "FILE"))
    var markdown: String?

    @Option(help: ArgumentHelp("The nstrace binary (default: the one beside nstrace-bench, built first if need be).", valueName: "PATH"))
    var nstrace: String?

    func validate() throws {
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be positive") }
    }

    /// The names `--only` lists, each checked against `known`.
    func selected(known: [String], what: String) throws -> [String]? {
        guard let only else { return nil }
        let names = only.split(separator: ",").map(String.init)
        for name in names where !known.contains(name) {
            throw ValidationError("unknown \(what) \(name); known: \(known.joined(separator: ", "))")
        }
        return names
    }
}

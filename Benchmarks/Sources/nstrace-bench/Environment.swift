import Foundation

/// The machine and the command a report was measured with.
struct Environment {
    let date: String
    let kernel: String
    let cpu: String
    let cpus: Int
    let loadAverage: String
    let workIterations: Int
    let command: String
    /// "name version" of each peer tool found.
    let peers: [String]

    static func current(workIterations: Int, peers: [String]) -> Environment {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        let formatter = ISO8601DateFormatter()
        let args = CommandLine.arguments.dropFirst().joined(separator: " ")
        return Environment(date: formatter.string(from: Date()), kernel: release, cpu: model,
                           cpus: ProcessInfo.processInfo.activeProcessorCount, loadAverage: load,
                           workIterations: workIterations,
                           command: "swift run -c release nstrace-bench" + (args.isEmpty ? "" : " " + args),
                           peers: peers)
    }
}

import CBuildInfo

/// What `nstrace --version` prints: the release number, set here by hand when a release is cut, and
/// the commit stamped in by Scripts/package (empty in a plain `swift build`).
enum Version {
    static let number = "0.1.0"

    static var commit: String? {
        let stamped = String(cString: nstrace_build_commit())
        return stamped.isEmpty ? nil : stamped
    }

    static var description: String { "nstrace \(number) (commit \(commit ?? "unknown"))" }
}

/// What the traced program does: T threads, each calling one function K times.
enum Workload: String, CaseIterable, Codable {
    /// `lea 1(%rdi), %rax; ret`: the tracer's cost is all there is.
    case tiny
    /// About a microsecond of dependent multiplies per call: a function that does something.
    case work

    /// The traced function.
    var function: String { self == .tiny ? "nsb_tiny" : "nsb_work" }

    /// The same body behind a one-byte `nop`, for the floor tracer.
    var floorFunction: String { self == .tiny ? "nsb_floor" : "nsb_floor_work" }

    var title: String {
        switch self {
        case .tiny: return "tiny function (`lea 1(%rdi), %rax; ret`)"
        case .work: return "function doing ~1 µs of work"
        }
    }

    /// The workload's command line for `threads` × `calls`; `floor` selects the nop-prefixed function,
    /// `patchable` the build whose functions begin with patchable nops (for uftrace).
    func command(_ programs: Programs, threads: Int, calls: Int, floor: Bool = false, patchable: Bool = false) -> [String] {
        let mode: String
        switch (self, floor) {
        case (.tiny, false): mode = "tiny"
        case (.tiny, true): mode = "floor"
        case (.work, false): mode = "work"
        case (.work, true): mode = "floorwork"
        }
        return [patchable ? programs.patchableWorkload : programs.workload, mode, "\(threads)", "\(calls)"] + (self == .work ? ["\(programs.workIterations)"] : [])
    }
}

/// What the workload says it did: its own ground truth, written to NSB_RESULT.
struct GroundTruth {
    let calls: Int
    let loopNanoseconds: Int

    /// Parses `calls N loop_ns NS`.
    init?(_ text: String) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard words.count >= 4, words[0] == "calls", words[2] == "loop_ns",
              let calls = Int(words[1]), let loop = Int(words[3]) else { return nil }
        self.calls = calls
        loopNanoseconds = loop
    }
}

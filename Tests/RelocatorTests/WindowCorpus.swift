import CCapstone
import Foundation
import NonStop
@testable import Relocator
import Symbols

/// One inline window the oracle runs, and where it comes from.
struct WindowCase: CustomStringConvertible {
    enum Origin: Hashable, CustomStringConvertible {
        case libc
        /// A C fixture: relocator_cases itself, or one built as a library, with CET's `endbr64`s or not.
        case fixture(cet: Bool)
        /// A `window_<rule>` function of relocator_windows.c.
        case handWritten

        var description: String {
            switch self {
            case .libc: return "libc.so.6"
            case .fixture(let cet): return cet ? "fixtures -fcf-protection=full" : "fixtures"
            case .handWritten: return "hand-written"
            }
        }
    }

    let window: InlineWindow
    let function: Function
    let origin: Origin
    /// From the plan of a function watched only for its returns (InlineSites.returnSites): a traced
    /// function tail-calls it.
    var forTailCaller = false

    var description: String {
        let offset = window.start - function.address
        let roles = [window.recordsEntry ? "entry" : nil, window.recordsReturn ? "return" : nil,
                     window.tailCallTarget.map { "tail call to 0x\(String($0, radix: 16))" }].compactMap { $0 }
        var shape = roles.isEmpty ? "no probe" : roles.joined(separator: " and ")
        if window.entryStackAdjust != 0 { shape += ", entry SP +\(window.entryStackAdjust)" }
        if let slot = window.shortJumpSlot { shape += ", short jump via 0x\(String(slot, radix: 16))" }
        if intoPadding { shape += ", patched \(window.patchLength) bytes into padding" }
        return "\(function.name)+0x\(String(offset, radix: 16)) (\(function.module.name)) at 0x\(String(window.start, radix: 16)) "
            + "[\(window.instructions.map(\.description).joined(separator: "; "))] (\(shape))"
    }

    /// The jump is longer than the window's instructions: its tail lies in the padding after them.
    var intoPadding: Bool {
        window.shortJumpSlot == nil && window.patchLength > Int(window.end - window.start)
    }

    var endsInCall: Bool { window.instructions.last.map(InlinePlanner.isCall) ?? false }

    /// A conditional branch (jcc, loop, jrcxz/jecxz): its outcome depends on the flags or RCX.
    var branchesConditionally: Bool {
        window.instructions.contains { insn in
            WindowRelocator.conditions[insn.id] != nil || Self.countedBranches.contains(insn.id)
        }
    }

    var countsInRCX: Bool { window.instructions.contains { Self.countedBranches.contains($0.id) } }

    static let countedBranches: Set<UInt32> = Set([X86_INS_LOOP, X86_INS_LOOPE, X86_INS_LOOPNE, X86_INS_JRCXZ, X86_INS_JECXZ]
        .map(\.rawValue))

    /// What the window is, for the tally: each shape the corpus must have.
    var shapes: [String] {
        var out: [String] = []
        if window.recordsEntry { out.append("records an entry") }
        if window.recordsReturn { out.append("records a return") }
        if window.recordsEntry && window.recordsReturn { out.append("records an entry and a return") }
        if window.entryStackAdjust != 0 { out.append("entry SP above the window's") }
        if window.shortJumpSlot != nil { out.append("reached by a short jump") }
        if intoPadding { out.append("patched into padding") }
        if endsInCall { out.append("ends in a call") }
        if let last = window.instructions.last, last.id == X86_INS_JMP.rawValue {
            out.append(window.tailCallTarget == nil ? "ends in a jump" : "ends in a tail call")
        }
        if branchesConditionally { out.append("branches conditionally") }
        if countsInRCX { out.append("loop or jrcxz") }
        if window.instructions.contains(where: \.isRIPRelative) { out.append("RIP-relative") }
        if window.instructions.count > 1 { out.append("several instructions") }
        if forTailCaller { out.append("a tail-callee's return") }
        return out
    }
}

/// Every window the engine's planner makes for the chosen functions of the given modules, with what
/// the planner left as int3s (by reason) and the plans themselves, to be held to `nstrace list`.
struct WindowCorpus {
    private(set) var cases: [WindowCase] = []
    /// Functions of the modules, and those planned, by origin.
    private(set) var functions: [WindowCase.Origin: Int] = [:]
    private(set) var planned: [WindowCase.Origin: Int] = [:]
    /// Sites that keep an int3 instead of a window, by reason (addresses and names dropped).
    private(set) var fallbacks: [String: Int] = [:]
    /// Each function planned, with its plan and origin.
    private(set) var plans: [(function: Function, plan: InlinePlan, origin: WindowCase.Origin)] = []

    /// The functions chosen, and the functions they tail-call (whose returns the engine watches with a
    /// plan of their own, without the entry) when those are in the modules too.
    init(modules: [(module: Module, origin: WindowCase.Origin)], image: ProcessImage, decoder: Decoder,
         memory: (UInt64, Int) -> [UInt8]?, choosing chosen: (Function, WindowCase.Origin) -> Bool) {
        var tailCallees: [UInt64: Function] = [:]
        for (module, origin) in modules {
            for function in image.functions(in: module) {
                functions[origin, default: 0] += 1
                guard chosen(function, origin) else { continue }
                let decision = withoutActuallyEscaping(memory) {
                    InlineSites.decide(for: function, in: image, decoder: decoder, memory: $0)
                }
                planned[origin, default: 0] += 1
                plans.append((function, decision.plan, origin))
                for fallback in decision.plan.fallbacks { fallbacks[Self.generic(fallback.reason), default: 0] += 1 }
                cases += decision.plan.windows.map { WindowCase(window: $0, function: function, origin: origin) }
                for callee in decision.tailCallees { tailCallees[callee.address] = callee }
            }
        }
        var seen = Set(cases.map(\.window))
        for (_, callee) in tailCallees.sorted(by: { $0.key < $1.key }) {
            guard let origin = modules.first(where: { $0.module == callee.module })?.origin else { continue }
            for window in InlineSites.returnSites(of: callee, in: image, decoder: decoder).windows
            where seen.insert(window).inserted {
                cases.append(WindowCase(window: window, function: callee, origin: origin, forTailCaller: true))
            }
        }
    }

    /// A reason without the addresses and instructions that make each one different.
    static func generic(_ reason: String) -> String {
        reason.replacingOccurrences(of: #"0x[0-9a-f]+"#, with: "…", options: .regularExpression)
            .replacingOccurrences(of: #"\([^()]*\)"#, with: "(…)", options: .regularExpression)
    }
}

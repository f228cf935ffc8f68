import CCapstone
@testable import Relocator
import Symbols

/// What each hand-written function of relocator_windows.c must get from the planner: a window that
/// exercises its rule. A rule the planner stopped giving would leave the oracle checking nothing for it.
enum WindowRules {
    struct Rule {
        let promise: String
        /// Whether the function must be traced with no int3 at all.
        var inline = true
        let holds: ([InlineWindow]) -> Bool
    }

    static let byFunction: [String: Rule] = [
        "window_helper": Rule(promise: "an entry window of the ret alone, patched into padding") { ws in
            ws.contains { $0.recordsEntry && $0.recordsReturn && $0.instructions.count == 1 && $0.patchLength == 5 }
        },
        "window_riprel_load": Rule(promise: "one window for entry and return after push rbp, with RIP-relative loads") { ws in
            ws.contains { $0.recordsEntry && $0.recordsReturn && $0.entryStackAdjust == 8 && ripRelative($0) >= 4 }
        },
        "window_riprel_store": Rule(promise: "RIP-relative stores in an entry window") { ws in
            ws.contains { $0.recordsEntry && ripRelative($0) == 3 }
        },
        "window_jcc_rel8": Rule(promise: "a jcc rel8 leaving the entry window, an exit window at its target") { ws in
            ws.contains { $0.recordsEntry && $0.instructions.contains { isJcc($0) && $0.length == 2 } }
                && ws.contains { !$0.recordsEntry && $0.recordsReturn }
        },
        "window_jcc_rel32": Rule(promise: "a jcc rel32 leaving the entry window") { ws in
            ws.contains { $0.recordsEntry && $0.instructions.contains { isJcc($0) && $0.length == 6 } }
        },
        "window_loop": Rule(promise: "loop in a window") { ws in ws.contains { has($0, X86_INS_LOOP) } },
        "window_loopne": Rule(promise: "loopne in a window") { ws in ws.contains { has($0, X86_INS_LOOPNE) } },
        "window_jrcxz": Rule(promise: "jrcxz in a window") { ws in ws.contains { has($0, X86_INS_JRCXZ) } },
        "window_jecxz": Rule(promise: "jecxz in a window") { ws in ws.contains { has($0, X86_INS_JECXZ) } },
        "window_loop_to_start": Rule(promise: "an exit window whose jcc goes back to the window's start") { ws in
            ws.contains { w in w.recordsReturn && w.instructions.contains { isJcc($0) && target($0) == w.start } }
        },
        "window_ret_imm16": Rule(promise: "ret 16 ending an entry window and an exit window") { ws in
            ws.contains { $0.recordsEntry && endsInRetImm16($0) } && ws.contains { !$0.recordsEntry && endsInRetImm16($0) }
        },
        "window_jmp_rel8": Rule(promise: "a window ending in jmp rel8 within the function") { ws in
            ws.contains { $0.instructions.last.map { $0.id == X86_INS_JMP.rawValue && $0.length == 2 } ?? false }
        },
        "window_jmp_rel32": Rule(promise: "a window ending in jmp rel32 within the function") { ws in
            ws.contains { $0.instructions.last.map { $0.id == X86_INS_JMP.rawValue && $0.length == 5 } ?? false }
        },
        "window_call_direct": Rule(promise: "an entry window ending in a direct call") { ws in
            ws.contains { w in w.recordsEntry && endsInCall(w) { if case .immediate? = $0 { return true }; return false } }
        },
        "window_call_register": Rule(promise: "an entry window ending in call rax") { ws in
            ws.contains { w in w.recordsEntry && endsInCall(w) { if case .register(.rax?, 8)? = $0 { return true }; return false } }
        },
        "window_call_r11": Rule(promise: "an entry window ending in call r11") { ws in
            ws.contains { w in w.recordsEntry && endsInCall(w) { if case .register(.r11?, 8)? = $0 { return true }; return false } }
        },
        // The emulated call pushes the return address before it jumps, and `call rsp` goes where RSP
        // pointed before the push: the pad jumped 8 bytes short until WindowRelocator refused it.
        "window_call_rsp": Rule(promise: "no window ending in call rsp (its entry keeps an int3)", inline: false) { ws in
            !ws.contains { w in endsInCall(w) { if case .register(.rsp?, _)? = $0 { return true }; return false } }
        },
        "window_call_memory": Rule(promise: "an entry window ending in a call through [rdi + 8]") { ws in
            ws.contains { w in w.recordsEntry && endsInCall(w) { if case .memory(let m)? = $0 { return m.base == .rdi }; return false } }
        },
        "window_call_riprel": Rule(promise: "an entry window ending in a call through RIP-relative memory") { ws in
            ws.contains { w in w.recordsEntry && endsInCall(w) { if case .memory(let m)? = $0 { return m.base == .rip }; return false } }
        },
        "window_padding_exit": Rule(promise: "an exit window patched on into the padding") { ws in
            ws.contains { !$0.recordsEntry && $0.recordsReturn && intoPadding($0) }
        },
        "window_padding_entry": Rule(promise: "an entry window patched on into the padding") { ws in
            ws.contains { $0.recordsEntry && intoPadding($0) }
        },
        "window_short_jump": Rule(promise: "an exit window reached by a short jump to the padding") { ws in
            ws.contains { $0.recordsReturn && $0.shortJumpSlot != nil }
        },
        "window_stack": Rule(promise: "push, sub rsp, add rsp and pop in one window from entry to return") { ws in
            ws.contains { w in
                w.recordsEntry && w.recordsReturn && has(w, X86_INS_PUSH) && has(w, X86_INS_SUB) && has(w, X86_INS_ADD) && has(w, X86_INS_POP)
            }
        },
        "window_stack_apart": Rule(promise: "a prologue window with pushes and an epilogue window with pops") { ws in
            ws.contains { $0.recordsEntry && !$0.recordsReturn && has($0, X86_INS_PUSH) && has($0, X86_INS_SUB) }
                && ws.contains { !$0.recordsEntry && $0.recordsReturn && has($0, X86_INS_POP) && has($0, X86_INS_ADD) }
        },
        "window_sub_first": Rule(promise: "an entry window after sub rsp, 0x18 (the entry's SP 0x18 above the window's)") { ws in
            ws.contains { $0.recordsEntry && $0.entryStackAdjust == 0x18 }
        },
        "window_flags": Rule(promise: "an entry window of one flag-neutral instruction, between a cmp and the cmovl that reads it") { ws in
            ws.contains { $0.recordsEntry && !$0.recordsReturn && $0.instructions.count == 1 && has($0, X86_INS_MOV) }
        },
        "window_fault_load": Rule(promise: "an entry window whose load faults") { ws in
            ws.contains { $0.recordsEntry && $0.recordsReturn && has($0, X86_INS_MOV) }
        },
        "window_fault_divide": Rule(promise: "an entry window that divides by zero") { ws in
            ws.contains { $0.recordsEntry && $0.recordsReturn && has($0, X86_INS_DIV) }
        },
    ]

    /// Each hand-written function's rule, checked against its plan: what does not hold. Every rule must
    /// have its function, every function a rule, and each be traced with no int3.
    static func violations(_ plans: [(function: Function, plan: InlinePlan)]) -> [String] {
        var out: [String] = []
        let byName = Dictionary(plans.map { ($0.function.name, $0.plan) }, uniquingKeysWith: { a, _ in a })
        for (name, rule) in byFunction.sorted(by: { $0.key < $1.key }) {
            guard let plan = byName[name] else {
                out.append("\(name): not in relocator_windows")
                continue
            }
            if !rule.holds(plan.windows) { out.append("\(name): the planner broke its promise (\(rule.promise)); windows: \(plan.windows.map(describe))") }
            if rule.inline, !plan.isFullyInline { out.append("\(name): int3s \(plan.fallbacks.map(\.reason))") }
        }
        for name in byName.keys where name.hasPrefix("window_") && byFunction[name] == nil {
            out.append("\(name): a hand-written function with no rule")
        }
        return out
    }

    private static func describe(_ w: InlineWindow) -> String {
        "[\(w.instructions.map(\.description).joined(separator: "; "))]"
    }

    private static func has(_ w: InlineWindow, _ id: x86_insn) -> Bool {
        w.instructions.contains { $0.id == id.rawValue }
    }

    private static func ripRelative(_ w: InlineWindow) -> Int { w.instructions.filter(\.isRIPRelative).count }

    private static func isJcc(_ insn: Instruction) -> Bool { WindowRelocator.conditions[insn.id] != nil }

    private static func target(_ insn: Instruction) -> UInt64? {
        if case .immediate(let raw)? = insn.operands.first { return UInt64(bitPattern: raw) }
        return nil
    }

    private static func endsInRetImm16(_ w: InlineWindow) -> Bool {
        w.instructions.last.map { $0.id == X86_INS_RET.rawValue && $0.bytes == [0xc2, 0x10, 0x00] } ?? false
    }

    private static func endsInCall(_ w: InlineWindow, _ operand: (Operand?) -> Bool) -> Bool {
        guard let last = w.instructions.last, InlinePlanner.isCall(last) else { return false }
        return operand(last.operands.first)
    }

    private static func intoPadding(_ w: InlineWindow) -> Bool {
        w.shortJumpSlot == nil && w.patchLength > Int(w.end - w.start)
    }
}

import NonStop
import Relocator
import Symbols

/// How `nstrace list` shows one function.
public enum FunctionListing {
    /// `demangling`: the demangled name first and the symbol beside it, else the other way round.
    public static func text(_ f: Function, _ signature: Signature?, _ refusal: Refusal?, _ plan: InlinePlan,
                     demangling: Bool = true) -> String {
        var line = "\(hex(f.address)) \(String(f.size).leftPadded(to: 6)) \(f.module.name)  \(f.shownName(demangling: demangling))"
        if let signature { line += prototype(signature) }
        if let demangled = f.demangledName {
            line += demangling ? "  (symbol: \(f.name))" : "  (demangled: \(demangled))"
        }
        // In a file, an indirect function is its resolver: the implementation is chosen in a process.
        if f.isIndirect { line += "  [ifunc: its implementation is chosen at load; list a running process with -p]" }
        if let resolver = f.selectedBy { line += "  [ifunc implementation, resolver at \(hex(resolver))]" }
        if !f.aliases.isEmpty { line += "  (aliases: \(f.aliases.joined(separator: ", ")))" }
        if let refusal { line += "  [untraceable: \(refusal.reason)]" } else { line += "  " + inline(plan) }
        return line
    }

    /// `[inline]`, or where the inline strategy keeps an int3 and why.
    static func inline(_ plan: InlinePlan) -> String {
        if plan.isFullyInline { return "[inline]" }
        if !plan.returnsSeenAtExits { return "[int3s: \(plan.fallbacks.first?.reason ?? "its exits are unknown")]" }
        let sites = plan.fallbacks.map { "\(hex($0.address)) \($0.kind.rawValue): \($0.reason)" }
        return "[inline but \(sites.count) int3\(sites.count == 1 ? "" : "s"): \(sites.joined(separator: "; "))]"
    }

    static func prototype(_ s: Signature) -> String {
        var params = s.parameters.map { $0.type.name.hasSuffix("*") ? "\($0.type.name)\($0.name)" : "\($0.type.name) \($0.name)" }
        if s.isVariadic { params.append("...") }
        return "(\(params.joined(separator: ", "))) -> \(s.returnType?.name ?? "void")"
    }

    /// `function` as shown (see `text`); `symbol` when it differs, as in trace events; `demangled` when
    /// `function` is the symbol of a mangled name.
    public static func json(_ f: Function, _ signature: Signature?, _ refusal: Refusal?, _ plan: InlinePlan,
                     demangling: Bool = true) -> String {
        var o = JSONWriter()
        o.field("function", f.shownName(demangling: demangling))
        if let demangled = f.demangledName {
            if demangling { o.field("symbol", f.name) } else { o.field("demangled", demangled) }
        }
        o.field("module", f.module.name)
        o.field("path", f.module.path)
        o.field("address", hex(f.address))
        o.field("size", f.size)
        o.field("aliases", json: JSONWriter.array(f.aliases.map(JSONWriter.string)))
        if f.isIndirect { o.field("ifunc", true) }
        if let resolver = f.selectedBy { o.field("ifunc_resolver", hex(resolver)) }
        o.field("traceable", refusal == nil)
        if let refusal { o.field("reason", refusal.reason) }
        // The inline strategy: every site a jump (no int3), or where int3s stay and why.
        o.field("inline", refusal == nil && plan.isFullyInline)
        var fallbacks = plan.fallbacks
        if !plan.returnsSeenAtExits, !fallbacks.contains(where: { $0.kind == .tailExit }) {
            fallbacks.append(InlineFallback(address: plan.fallbacks.first?.address ?? f.address, kind: .tailExit,
                                            reason: "its returns are seen at its callers' return addresses"))
        }
        o.field("fallback", json: JSONWriter.array(fallbacks.map { fallback in
            var site = JSONWriter()
            site.field("address", hex(fallback.address))
            site.field("kind", fallback.kind.rawValue)
            site.field("reason", fallback.reason)
            return site.finished
        }))
        if let signature {
            o.field("params", json: JSONWriter.array(signature.parameters.map { p in
                var param = JSONWriter()
                param.field("name", p.name)
                param.field("type", p.type.name)
                param.field("size", p.type.byteSize)
                param.field("location", p.location.description)
                return param.finished
            }))
            o.field("return_type", signature.returnType?.name ?? "void")
            if signature.isVariadic { o.field("variadic", true) }
        }
        return o.finished
    }

}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

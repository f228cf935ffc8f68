import Relocator
import Symbols

/// How `nstrace list` shows one function.
enum FunctionListing {
    static func text(_ f: Function, _ signature: Signature?, _ refusal: Refusal?) -> String {
        var line = "\(hex(f.address)) \(String(f.size).leftPadded(to: 6)) \(f.module.name)  \(f.name)"
        if let signature { line += prototype(signature) }
        if f.isIndirect { line += "  [ifunc]" }
        if !f.aliases.isEmpty { line += "  (aliases: \(f.aliases.joined(separator: ", ")))" }
        if let refusal { line += "  [untraceable: \(refusal.reason)]" }
        return line
    }

    static func prototype(_ s: Signature) -> String {
        var params = s.parameters.map { $0.type.name.hasSuffix("*") ? "\($0.type.name)\($0.name)" : "\($0.type.name) \($0.name)" }
        if s.isVariadic { params.append("...") }
        return "(\(params.joined(separator: ", "))) -> \(s.returnType?.name ?? "void")"
    }

    static func json(_ f: Function, _ signature: Signature?, _ refusal: Refusal?) -> String {
        var o = JSONWriter()
        o.field("function", f.name)
        o.field("module", f.module.name)
        o.field("path", f.module.path)
        o.field("address", hex(f.address))
        o.field("size", f.size)
        o.field("aliases", json: JSONWriter.array(f.aliases.map(JSONWriter.string)))
        if f.isIndirect { o.field("ifunc", true) }
        o.field("traceable", refusal == nil)
        if let refusal { o.field("reason", refusal.reason) }
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

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

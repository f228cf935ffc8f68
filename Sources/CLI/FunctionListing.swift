import Foundation
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
        var object: [String: Any] = [
            "function": f.name,
            "module": f.module.name,
            "path": f.module.path,
            "address": hex(f.address),
            "size": f.size,
            "aliases": f.aliases,
        ]
        if f.isIndirect { object["ifunc"] = true }
        object["traceable"] = refusal == nil
        if let refusal { object["reason"] = refusal.reason }
        if let signature {
            object["params"] = signature.parameters.map { p in
                ["name": p.name, "type": p.type.name, "size": p.type.byteSize, "location": p.location.description] as [String: Any]
            }
            object["return_type"] = signature.returnType?.name ?? "void"
            if signature.isVariadic { object["variadic"] = true }
        }
        return JSONLine.encode(object)
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

/// What DWARF says a function takes and returns, with where each argument is at the function's entry.
public struct Signature: Sendable, Hashable {
    public let parameters: [Parameter]
    /// What the function returns and where each part is at the return: one for C, any number for Go.
    public let results: [Parameter]
    public let isVariadic: Bool

    public init(parameters: [Parameter], results: [Parameter], isVariadic: Bool) {
        self.parameters = parameters
        self.results = results
        self.isVariadic = isVariadic
    }

    /// nil for `void`; a tuple type such as `(int, error)` for several results.
    public var returnType: ValueType? {
        if results.count <= 1 { return results.first?.type }
        return ValueType(name: "(" + results.map(\.type.name).joined(separator: ", ") + ")", kind: .other, byteSize: 0)
    }
}

public struct Parameter: Sendable, Hashable {
    public let name: String
    public let type: ValueType
    /// Where the value is at the first instruction of the function.
    public let location: ParameterLocation

    public init(name: String, type: ValueType, location: ParameterLocation) {
        self.name = name
        self.type = type
        self.location = location
    }
}

/// A type as much as a tracer needs to print a value of it.
public struct ValueType: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case signed, unsigned, float, bool, char
        /// A pointer to char-sized integers: printed as a C string.
        case cString
        case pointer
        case enumeration
        /// struct, union, class or array: printed by address (or `{…}` when passed by value).
        case aggregate
        /// A Go string: pointer and length in two registers.
        case goString
        /// A Go slice: pointer, length and capacity.
        case goSlice
        /// A Go interface value (`error`, `any`): type or itab word and data word.
        case goInterface
        case other
    }

    public let name: String
    public let kind: Kind
    /// Size in bytes; 0 when DWARF does not say.
    public let byteSize: Int
    /// The element type of a Go slice (empty otherwise): what a person wants to see of its contents.
    public let elements: [ValueType]

    public init(name: String, kind: Kind, byteSize: Int, element: ValueType? = nil) {
        self.name = name
        self.kind = kind
        self.byteSize = byteSize
        elements = element.map { [$0] } ?? []
    }

    public var element: ValueType? { elements.first }

    public var description: String { name }
}

/// A register of x86-64 as DWARF numbers it (System V psABI, figure 3.36).
public enum Register: Sendable, Hashable, CustomStringConvertible {
    case rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp
    case r8, r9, r10, r11, r12, r13, r14, r15
    case xmm(Int)

    private static let general: [Register] = [.rax, .rdx, .rcx, .rbx, .rsi, .rdi, .rbp, .rsp,
                                              .r8, .r9, .r10, .r11, .r12, .r13, .r14, .r15]

    public init?(dwarfNumber n: Int) {
        switch n {
        case 0...15: self = Register.general[n]
        case 17...32: self = .xmm(n - 17)
        default: return nil
        }
    }

    private static let generalNames = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                                       "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

    /// DWARF's number for the register.
    public var dwarfNumber: Int {
        switch self {
        case .xmm(let i): return 17 + i
        default: return Register.general.firstIndex(of: self) ?? -1
        }
    }

    public var description: String {
        switch self {
        case .xmm(let i): return "xmm\(i)"
        default: return Register.generalNames[dwarfNumber]
        }
    }
}

/// Where a value lives at a given instant (for parameters, at the function's first instruction).
public enum ParameterLocation: Sendable, Hashable, CustomStringConvertible {
    /// In one register.
    case register(Register)
    /// In several registers, low part first, each holding `size` bytes (Go strings, small structs).
    case pieces([RegisterPiece])
    /// In memory at the entry stack pointer plus `offset` (arguments passed on the stack; 8 is the
    /// first, just above the return address).
    case stack(offset: Int)
    /// Not recoverable at entry (optimised away, or an encoding nstrace does not read).
    case unknown

    public var description: String {
        switch self {
        case .register(let r): return r.description
        case .pieces(let ps): return ps.map { "\($0.register):\($0.size)" }.joined(separator: "+")
        case .stack(let off): return "[rsp+\(off)]"
        case .unknown: return "?"
        }
    }
}

public struct RegisterPiece: Sendable, Hashable {
    public let register: Register
    public let size: Int

    public init(register: Register, size: Int) {
        self.register = register
        self.size = size
    }
}

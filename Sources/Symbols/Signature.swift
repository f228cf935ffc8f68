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
        /// struct, union, class, array or `_Complex`: printed by its `members` (or its array `element`s)
        /// where DWARF describes them, else by its bytes.
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
    /// The element type of a Go slice or a C array (empty otherwise): what a person wants to see of its
    /// contents.
    public let elements: [ValueType]
    /// A struct's or union's fields (a `_Complex`'s `real` and `imag`), as far as nstrace reads them
    /// (bounded: see TypeReader).
    public let members: [Member]
    /// A union: every member reads the same bytes.
    public let isUnion: Bool
    /// A C array: how many elements DWARF says it has (its `element` says of what).
    public let arrayCount: Int?
    /// What a pointer points to, when it is a struct, union or scalar that `--deref` may show (empty
    /// otherwise; never more than one level).
    public let pointees: [ValueType]

    public init(name: String, kind: Kind, byteSize: Int, element: ValueType? = nil, members: [Member] = [],
                isUnion: Bool = false, arrayCount: Int? = nil, pointee: ValueType? = nil) {
        self.name = name
        self.kind = kind
        self.byteSize = byteSize
        elements = element.map { [$0] } ?? []
        self.members = members
        self.isUnion = isUnion
        self.arrayCount = arrayCount
        pointees = pointee.map { [$0] } ?? []
    }

    public var element: ValueType? { elements.first }
    /// The most elements of a C array read and shown.
    public static let maxShownElements = 16
    public var pointee: ValueType? { pointees.first }

    /// A field of a struct or union: where it starts in its parent's bytes, and for a bit-field which
    /// bits (counted from the parent's first byte, least significant first, as x86-64 lays them out).
    public struct Member: Sendable, Hashable {
        public let name: String
        public let offset: Int
        public let type: ValueType
        public let bitOffset: Int?
        public let bitSize: Int?

        public init(name: String, offset: Int, type: ValueType, bitOffset: Int? = nil, bitSize: Int? = nil) {
            self.name = name
            self.offset = offset
            self.type = type
            self.bitOffset = bitOffset
            self.bitSize = bitSize
        }
    }

    public var description: String { name }
}

/// A register of x86-64 as DWARF numbers it (System V psABI, figure 3.36).
public enum Register: Sendable, Hashable, CustomStringConvertible {
    case rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp
    case r8, r9, r10, r11, r12, r13, r14, r15
    case xmm(Int)
    /// The x87 register stack's st(N): a `long double` result is in st(0).
    case st(Int)

    private static let general: [Register] = [.rax, .rdx, .rcx, .rbx, .rsi, .rdi, .rbp, .rsp,
                                              .r8, .r9, .r10, .r11, .r12, .r13, .r14, .r15]

    public init?(dwarfNumber n: Int) {
        switch n {
        case 0...15: self = Register.general[n]
        case 17...32: self = .xmm(n - 17)
        case 33...40: self = .st(n - 33)
        default: return nil
        }
    }

    private static let generalNames = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                                       "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

    /// DWARF's number for the register.
    public var dwarfNumber: Int {
        switch self {
        case .xmm(let i): return 17 + i
        case .st(let i): return 33 + i
        default: return Register.general.firstIndex(of: self) ?? -1
        }
    }

    public var description: String {
        switch self {
        case .xmm(let i): return "xmm\(i)"
        case .st(let i): return "st\(i)"
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
    /// In memory at the address a register holds: a result of class MEMORY, which the callee wrote
    /// through the hidden pointer it was passed in rdi and hands back in rax.
    case indirect(Register)
    /// Not recoverable at entry (optimised away, or an encoding nstrace does not read).
    case unknown

    public var description: String {
        switch self {
        case .register(let r): return r.description
        case .pieces(let ps): return ps.map { "\($0.register):\($0.size)" }.joined(separator: "+")
        case .stack(let off): return "[rsp+\(off)]"
        case .indirect(let r): return "[\(r)]"
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

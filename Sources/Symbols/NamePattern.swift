/// A function-name regular expression, matched anywhere in the name as grep does.
public struct NamePattern: @unchecked Sendable {
    public let source: String
    private let regex: Regex<AnyRegexOutput>

    public init(_ source: String) throws(InvalidPattern) {
        self.source = source
        do {
            regex = try Regex(source)
        } catch {
            throw InvalidPattern(pattern: source, message: String(describing: error),
                                 column: InvalidPattern.column(of: error, in: source))
        }
    }

    public func matches(_ name: String) -> Bool {
        name.contains(regex)
    }

    /// Whether it matches any name of the function: demangled with and without parameters (`shop::check`
    /// as the user wrote it), its symbol (`_ZN4shop5check…`), its aliases. With or without
    /// `--no-demangle`: that changes what is printed, not what is traced.
    public func matches(_ function: Function) -> Bool {
        if let demangled = function.demangledName, matches(demangled) { return true }
        if let qualified = function.qualifiedName, matches(qualified) { return true }
        return function.names.contains(where: matches)
    }
}

public struct InvalidPattern: Error, CustomStringConvertible, Equatable {
    public let pattern: String
    public let message: String
    /// 1-based column of the offending character, when the parser said where.
    public let column: Int?

    public var description: String {
        let place = column.map { " at column \($0)" } ?? ""
        return "invalid regexp \"\(pattern)\"\(place): \(message)"
    }

    /// The regex parser knows where it failed but does not make it public API; read it by reflection
    /// and live without it if its shape ever changes.
    static func column(of error: any Error, in source: String) -> Int? {
        guard let range = Mirror(reflecting: error).descendant("location", "range") as? Range<String.Index>,
              range.lowerBound >= source.startIndex, range.lowerBound <= source.endIndex
        else { return nil }
        return source.distance(from: source.startIndex, to: range.lowerBound) + 1
    }
}

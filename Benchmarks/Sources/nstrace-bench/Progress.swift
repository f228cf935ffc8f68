import Foundation

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Progress and notes on stderr, so stdout holds only the tables.
final class Progress {
    private let start = Date()

    func note(_ message: String) {
        let elapsed = String(format: "%6.1fs", Date().timeIntervalSince(start))
        FileHandle.standardError.write(Data("[\(elapsed)] \(message)\n".utf8))
    }
}

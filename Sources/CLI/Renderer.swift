import Foundation
import NonStop

/// Turns events into output. Runs on its own thread, fed by the engine's bounded queue.
protocol Renderer: AnyObject {
    func render(_ event: TraceEvent)
    /// Called after each batch of events taken from the queue.
    func flush()
    /// Called once after the last event.
    func finish()
}

/// Buffered output to stderr or a file; a failed write asks the engine to stop (and detach).
final class Output {
    private let handle: UnsafeMutablePointer<FILE>
    private let owned: Bool
    private(set) var failed = false

    init(path: String?) throws {
        if let path {
            guard let file = fopen(path, "w") else {
                throw OutputError(description: "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            handle = file
            owned = true
        } else {
            handle = stderr
            owned = false
        }
    }

    var isTerminal: Bool { isatty(fileno(handle)) != 0 }

    func write(_ line: String) {
        guard !failed else { return }
        if fputs(line, handle) < 0 || fputc(0x0a, handle) < 0 {
            failed = true
            StopRequest.request()
        }
    }

    func flush() { fflush(handle) }

    func close() {
        flush()
        if owned { fclose(handle) }
    }
}

struct OutputError: Error, CustomStringConvertible {
    let description: String
}

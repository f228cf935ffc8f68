import Symbols

/// `--caller MODULE`: which calls are made from MODULE, by where they return to. The engine only marks
/// the calls (`Event.fromCaller`); the renderers' filter decides what to show.
extension Engine {
    func isFromCallerModule(_ returnAddress: UInt64, _ process: TracedProcess) -> Bool {
        guard let wanted = configuration.callerModule, returnAddress != 0 else { return false }
        if let last = lastCallerModule, last.pid == process.pid, last.range.contains(returnAddress) { return last.matches }
        if process.image == nil { process.image = try? ProcessImage(pid: process.pid) }
        guard let module = process.image?.module(containing: returnAddress) else { return false }
        let matches = CallerModule.matches(path: module.path, wanted)
        lastCallerModule = (process.pid, module.start..<module.end, matches)
        return matches
    }
}

/// How `--caller` names a module: its file name (`libc.so.6`), or the end of its path
/// (`lib/libfoo.so`), or its whole path.
public enum CallerModule {
    public static func matches(path: String, _ wanted: String) -> Bool {
        path == wanted || path.hasSuffix("/" + wanted)
    }
}

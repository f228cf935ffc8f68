import Glibc
import NonStop
import Relocator
import Symbols

/// libFuzzer's entry: the whole symbol pipeline on a mutated ELF file, as `nstrace list FILE .` runs
/// it: open the module, its function table, every function's signature and types (the SysV or Go
/// ABI's argument locations), its entry instruction's refusal, its inline plan (its bytes, landing
/// pads, jump tables, cold parts, Go prologue), the Go runtime's layout. libelf and libdw parse the
/// file; nstrace's Swift code must never trap on what they return.
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    SymbolsFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// SwiftPM links an executable's entry point as `fuzz_symbols_main` (so tests can import it); a harness
/// has none of its own, so that entry runs libFuzzer's driver on the function above.
@_cdecl("fuzz_symbols_main")
public func fuzzSymbolsMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc, argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        guard let data else { return LLVMFuzzerTestOneInput(UnsafePointer(bitPattern: 1)!, 0) }
        return LLVMFuzzerTestOneInput(data, size)
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

enum SymbolsFuzz {
    nonisolated(unsafe) static let decoder = try! Decoder()
    /// One file per fuzzing process, rewritten for each input.
    static let path = "/tmp/nstrace-fuzz-symbols-\(getpid()).elf"
    /// At most this many functions of a module are analysed per input, to keep each run short.
    static let functionLimit = 64

    static func run(_ input: UnsafeRawBufferPointer) {
        guard write(input) else { return }
        // No separate debuginfo: what is analysed is the input alone.
        guard let image = try? ProcessImage(file: path, debuginfoPath: "/nonexistent") else { return }
        for module in image.modules {
            _ = image.goRuntime(in: module)
            let table = image.landingPadTable(in: module)
            _ = image.landingPads(in: module)
            let functions = image.functions(in: module)
            var analysed = Array(functions.prefix(functionLimit))
            for range in table.functionRanges.prefix(16) {
                if let unnamed = image.unnamedFunction(at: range.lowerBound) { analysed.append(unnamed) }
                _ = table.nextFunctionStart(after: range.lowerBound)
                _ = table.isComplete(in: range)
            }
            for function in analysed {
                _ = image.function(containing: function.address)
                _ = image.function(containing: function.address &+ function.size)
                _ = image.landingPads(of: function)
                let signature = image.signature(of: function)
                if let signature { _ = signature.returnType; _ = signature.parameters.map(\.location.description) }
                // What `nstrace list --strategy S` says of it: the engine's own decision.
                let plan = InlineSites.plan(for: function, in: image, decoder: decoder, memory: nil)
                for strategy in Strategy.allCases {
                    _ = Traceability.refusal(of: function, in: image, decoder: decoder, strategy: strategy, plan: plan)
                }
                _ = InlineSites.decide(for: function, in: image, decoder: decoder)
                _ = InlineSites.entry(of: function, in: image, decoder: decoder)
            }
            _ = image.address(ofSymbol: "_r_debug", in: module)
        }
    }

    private static func write(_ input: UnsafeRawBufferPointer) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var done = 0
        while done < input.count {
            let n = Glibc.write(fd, input.baseAddress! + done, input.count - done)
            guard n > 0 else { return false }
            done += n
        }
        return true
    }
}

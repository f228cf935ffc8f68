import CShim
import Glibc
import OracleSupport
@testable import Relocator
import Testing

/// Inline windows and pads run in this very process: a function patched with its windows is called,
/// from one thread and from many at once, and must return what it did unpatched while its pads leave
/// one complete record per entry and per return in the ring.
@Suite struct InlinePadTests {
    /// `endbr64; mov rax, rdi; add rax, rsi; ret` and alignment padding: one window after the endbr64
    /// that records the entry and, before its `ret`, the return.
    static let adder: [UInt8] = [0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x89, 0xf8, 0x48, 0x01, 0xf0, 0xc3]
    static let padding: [UInt8] = [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x90, 0x90]

    /// Code, pads and ring in one mapping of this process.
    final class Sandbox {
        let base: UnsafeMutableRawPointer
        let size = 16 << 20
        let geometry = RingGeometry(bucketCount: 4, slotsPerBucket: 1 << 14, maxSlotsPerRecord: 4)
        var ring: UInt64 { UInt64(UInt(bitPattern: base)) + 0x40_0000 }
        var code: UInt64 { UInt64(UInt(bitPattern: base)) + 0x1000 }
        var pads: UInt64 { UInt64(UInt(bitPattern: base)) + 0x10000 }

        init() throws {
            let p = mmap(nil, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            try #require(p != MAP_FAILED)
            base = try #require(p)
            try #require(0x40_0000 + geometry.totalSize <= size)
        }

        deinit { munmap(base, size) }

        func write(_ bytes: [UInt8], at address: UInt64) {
            let offset = Int(address - UInt64(UInt(bitPattern: base)))
            bytes.withUnsafeBytes { base.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }

        func word(_ address: UInt64) -> UInt64 {
            UnsafeRawPointer(bitPattern: UInt(address))!.loadUnaligned(as: UInt64.self)
        }

        func u32(_ address: UInt64) -> UInt32 {
            UnsafeRawPointer(bitPattern: UInt(address))!.loadUnaligned(as: UInt32.self)
        }

        /// Every published record of every bucket: (probe, tid, sp, first value).
        func records() -> [(probe: UInt32, tid: UInt32, sp: UInt64, value: UInt64)] {
            var out: [(UInt32, UInt32, UInt64, UInt64)] = []
            for b in 0..<geometry.bucketCount {
                let bucket = ring + UInt64(geometry.bucketOffset(b))
                let head = word(bucket + UInt64(RingGeometry.headOffset))
                var position: UInt64 = 0
                while position < head {
                    let record = bucket + UInt64(geometry.slotOffset(position))
                    guard word(record) == position + 1 else { break }
                    out.append((u32(record + 16), u32(record + 20), word(record + 24), word(record + 32)))
                    position += 1
                }
            }
            return out
        }
    }

    func patched(_ sandbox: Sandbox, tidOffset: Int32) throws -> InlinePlan {
        let decoder = try Decoder()
        sandbox.write(Self.adder + Self.padding, at: sandbox.code)
        let function = InlinePlanner.Function(start: sandbox.code, entry: sandbox.code,
                                              parts: [CodePart(start: sandbox.code, bytes: Self.adder, padding: Self.padding)])
        let plan = InlinePlanner(decoder: decoder).plan(function) { _, _ in [:] }
        let environment = PadEnvironment(ringAddress: sandbox.ring, geometry: sandbox.geometry,
                                         threadIdentity: .tcb(offset: tidOffset), bucketKey: .thread)
        var padAddress = sandbox.pads
        for window in plan.windows {
            let entry = Probe(id: 1, kind: .entry, captures: [.register(.rdi), .register(.rsi)])
            let exit = Probe(id: 2, kind: .exit, captures: [.register(.rax)])
            let pad = try InlinePad.build(window: window, entryProbe: entry, returnProbe: exit,
                                          environment: environment, at: padAddress).get()
            sandbox.write(pad.code, at: pad.address)
            for patch in try #require(pad.patches(for: window)) { sandbox.write(patch.bytes, at: patch.address) }
            padAddress += UInt64((pad.code.count + 63) & ~63)
        }
        return plan
    }

    @Test func anAdderWithOneWindowForEntryAndReturnRecordsEachCall() throws {
        let sandbox = try Sandbox()
        let tidOffset = try #require(Int32(exactly: oracle_tcb_tid_offset()))
        let plan = try patched(sandbox, tidOffset: tidOffset)
        #expect(plan.isFullyInline, "\(plan.fallbacks)")
        #expect(plan.windows.count == 1 && plan.windows.allSatisfy { $0.recordsEntry && $0.recordsReturn })
        let fn = UnsafeRawPointer(bitPattern: UInt(sandbox.code))
        for i in 0..<100 as Range<UInt64> {
            #expect(oracle_call2(fn, i, 1000 * i) == 1001 * i)
        }
        let records = sandbox.records()
        let entries = records.filter { $0.probe == 1 }, exits = records.filter { $0.probe == 2 }
        #expect(entries.count == 100 && exits.count == 100)
        #expect(entries.map(\.value) == Array(0..<100))
        #expect(exits.map(\.value) == (0..<100).map { 1001 * $0 })
        let tid = UInt32(truncatingIfNeeded: nst_gettid())
        #expect(records.allSatisfy { $0.tid == tid })
        // The entry's stack pointer (at the return address) is the return's.
        #expect(zip(entries, exits).allSatisfy { $0.sp == $1.sp })
    }

    @Test func sixteenThreadsCallingAtOnceLeaveEveryRecord() throws {
        let sandbox = try Sandbox()
        let tidOffset = try #require(Int32(exactly: oracle_tcb_tid_offset()))
        _ = try patched(sandbox, tidOffset: tidOffset)
        let fn = UnsafeRawPointer(bitPattern: UInt(sandbox.code))
        #expect(oracle_call2_threads(fn, 16, 500) == 0)
        let records = sandbox.records()
        #expect(records.filter { $0.probe == 1 }.count == 16 * 500)
        #expect(records.filter { $0.probe == 2 }.count == 16 * 500)
        #expect(Set(records.map(\.tid)).count == 16)
    }
}

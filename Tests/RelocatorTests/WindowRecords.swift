import Glibc
@testable import Relocator

/// What the ring must hold after a pad ran: exactly one published record per probe that ran, in order,
/// in the bucket of the thread's id, each with the probe's id, the thread's id, the stack pointer the
/// probe reports and every captured value equal to the state where the probe ran in the original; no
/// other bucket written, nothing counted lost. When the bucket was full: no record, and each probe
/// that ran counted lost under its kind.
enum WindowRecords {
    static func differences(_ ring: RingContents, expected: [(probe: Probe, point: ProbePoint)], tid: pid_t,
                            bucket: Int, state: ChildRing.State) -> [String] {
        let geometry = ring.geometry
        var out: [String] = []
        var lost: [UInt64] = [0, 0, 0]
        if case .full = state { for (probe, _) in expected { lost[probe.kind.rawValue] += 1 } }
        for b in 0..<geometry.bucketCount {
            if b != bucket, ring.head(b) != 0 { out.append("ring: bucket \(b) (not the thread's, \(bucket)) has head \(ring.head(b))") }
            if ring.tail(b) != 0 { out.append("ring: bucket \(b) tail moved to \(ring.tail(b))") }
            let want = b == bucket ? lost : [0, 0, 0]
            if ring.lost(b) != want { out.append("ring: bucket \(b) counts lost records \(ring.lost(b)), expected \(want)") }
        }
        if case .full = state {
            if ring.head(bucket) != UInt64(geometry.slotsPerBucket) {
                out.append("ring: the full bucket's head moved to \(ring.head(bucket))")
            }
            let slots = ring.recordOffset(bucket: bucket, position: 0)..<geometry.bucketOffset(bucket + 1)
            if ring.bytes[slots].contains(where: { $0 != 0 }) { out.append("ring: a record written into the full bucket") }
            return out
        }
        let slots = expected.map { UInt64(max(1, RecordLayout.slots(for: $0.probe.captures))) }
        let head = ring.head(bucket)
        if head != slots.reduce(0, +) {
            out.append("ring: head \(head), expected \(expected.count) records (\(slots.reduce(0, +)) slots): "
                       + "\(expected.map { "probe 0x\(String($0.probe.id, radix: 16))" })")
            if head > slots.reduce(0, +) { return out }
        }
        var position: UInt64 = 0
        var previousTSC: UInt64 = 0
        for ((probe, point), n) in zip(expected, slots) {
            let record = ring.recordOffset(bucket: bucket, position: position)
            let name = "record \(position) (probe 0x\(String(probe.id, radix: 16)))"
            func check(_ what: String, _ got: UInt64, _ want: UInt64) {
                if got != want { out.append("\(name) \(what): 0x\(String(got, radix: 16)), expected 0x\(String(want, radix: 16))") }
            }
            check("sequence", ring.word(record + RecordLayout.sequenceOffset), position + 1)
            check("probe", UInt64(ring.u32(record + RecordLayout.probeOffset)), UInt64(probe.id))
            check("thread", UInt64(ring.u32(record + RecordLayout.threadOffset)), UInt64(UInt32(bitPattern: tid)))
            check("stack pointer", ring.word(record + RecordLayout.stackPointerOffset), point.reportedStackPointer)
            let tsc = ring.word(record + RecordLayout.tscOffset)
            if tsc == 0 || tsc < previousTSC { out.append("\(name) tsc 0x\(String(tsc, radix: 16)) after 0x\(String(previousTSC, radix: 16))") }
            previousTSC = tsc
            let offsets = RecordLayout.offsets(for: probe.captures).offsets
            for (capture, (offset, expected)) in zip(probe.captures, zip(offsets, point.expected)) {
                let at = record + offset
                switch expected {
                case .bytes(let bytes):
                    let got = Array(ring.bytes[at..<at + bytes.count])
                    if got != bytes { out.append("\(name) \(capture): \(hexBytes(got)), expected \(hexBytes(bytes))") }
                case .memory(let count, let bytes):
                    let got = Int64(bitPattern: ring.word(at))
                    if got != count {
                        out.append("\(name) \(capture): count \(got), expected \(count)")
                    } else if count > 0, !sameBytes(ring.bytes[at + 8..<at + 8 + Int(count)], bytes) {
                        out.append("\(name) \(capture): \(hexBytes(ring.bytes[at + 8..<at + 8 + Int(count)])), expected \(hexBytes(bytes))")
                    }
                }
            }
            position += n
        }
        return out
    }
}

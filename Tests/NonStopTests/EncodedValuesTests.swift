@testable import NonStop
import Testing
import TestSupport

/// The value arena events carry their arguments in: every kind of value reads back as it was written,
/// and a reader given a cut-short or garbled buffer stops without trapping.
@Suite struct EncodedValuesRoundTrip {
    private func randomValue(_ random: inout SeededRandom, depth: Int = 0) -> ArgumentValue {
        let word = random.next()
        let bytes = (0..<Int(word % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        switch word % (depth < 2 ? 19 : 14) {
        case 0: return .signed(Int64(bitPattern: random.next()))
        case 1: return .unsigned(random.next())
        case 2: return .bool(word & 1 == 0)
        case 3: return .char(UInt8(truncatingIfNeeded: random.next()))
        case 4: return .float(Double(bitPattern: random.next()))
        case 5: return .pointer(random.next())
        case 6: return .string(bytes, truncated: word & 2 == 0, address: random.next())
        case 7: return .badString(address: random.next())
        case 8: return .goString(bytes, truncated: word & 2 == 0, length: random.next())
        case 9: return .goInterface(type: random.next(), data: random.next())
        case 10: return .aggregate(bytes)
        case 11: return .unavailable
        case 12: return .int128(low: random.next(), high: random.next(), signed: word & 2 == 0)
        case 13:
            // Any 80 bits: pseudo-denormals and unnormals included.
            return .longDouble(X87Bits(significand: random.next(), signAndExponent: UInt16(truncatingIfNeeded: random.next())))
        case 14:
            let elements = (0..<Int(random.next() % 5)).map { _ in randomValue(&random, depth: depth + 1) }
            return .goSlice(address: random.next(), length: random.next(), capacity: random.next(), elements: elements)
        case 15:
            return .structure((0..<Int(random.next() % 4)).map { i in .init("f\(i)é", randomValue(&random, depth: depth + 1)) })
        case 16:
            return .array((0..<Int(random.next() % 4)).map { _ in randomValue(&random, depth: depth + 1) }, count: Int(random.next() % 100))
        case 17:
            return word & 4 == 0 ? .pointee(address: random.next(), value: randomValue(&random, depth: depth + 1))
                : .unreadablePointer(random.next())
        default:
            return .tuple((0..<Int(random.next() % 4)).map { _ in randomValue(&random, depth: depth + 1) })
        }
    }

    /// NaN is not equal to itself: compared by bit pattern.
    private func same(_ a: ArgumentValue, _ b: ArgumentValue) -> Bool {
        if case .float(let x) = a, case .float(let y) = b { return x.bitPattern == y.bitPattern }
        if case .goSlice(let a1, let l1, let c1, let e1) = a, case .goSlice(let a2, let l2, let c2, let e2) = b {
            return a1 == a2 && l1 == l2 && c1 == c2 && e1.count == e2.count && zip(e1, e2).allSatisfy(same)
        }
        if case .tuple(let e1) = a, case .tuple(let e2) = b { return e1.count == e2.count && zip(e1, e2).allSatisfy(same) }
        if case .structure(let f1) = a, case .structure(let f2) = b {
            return f1.count == f2.count && zip(f1, f2).allSatisfy { $0.name == $1.name && same($0.value, $1.value) }
        }
        if case .array(let e1, let n1) = a, case .array(let e2, let n2) = b {
            return n1 == n2 && e1.count == e2.count && zip(e1, e2).allSatisfy(same)
        }
        if case .pointee(let p1, let v1) = a, case .pointee(let p2, let v2) = b { return p1 == p2 && same(v1, v2) }
        return a == b
    }

    @Test func everyKindOfValueReadsBackAsWritten() {
        var random = SeededRandom(seed: 11)
        for _ in 0..<2000 {
            let values = (0..<Int(random.next() % 6)).map { _ in randomValue(&random) }
            var arena = ValueArena()
            for value in values { arena.append(value) }
            let read = arena.withUnsafeBytes { raw in EncodedValues(raw, offset: 0, count: values.count).map(\.value) }
            #expect(read.count == values.count && zip(read, values).allSatisfy(same), "\(values) read as \(read)")
        }
    }

    @Test func aCutOrGarbledBufferReadsFewerValuesAndNeverTraps() {
        var random = SeededRandom(seed: 12)
        for _ in 0..<300 {
            let values = (0..<Int(1 + random.next() % 5)).map { _ in randomValue(&random) }
            var arena = ValueArena()
            for value in values { arena.append(value) }
            var bytes = arena.withUnsafeBytes { Array($0) }
            for cut in 0..<bytes.count {
                let read = bytes.withUnsafeBytes { raw in
                    EncodedValues(UnsafeRawBufferPointer(rebasing: raw[0..<cut]), offset: 0, count: values.count).map(\.value)
                }
                #expect(read.count <= values.count)
            }
            for _ in 0..<8 { bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next()) }
            let garbled = bytes.withUnsafeBytes { raw in EncodedValues(raw, offset: 0, count: values.count).map(\.value) }
            #expect(garbled.count <= values.count)
        }
    }
}

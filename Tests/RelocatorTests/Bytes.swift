import Foundation
import Glibc

/// Whether two byte ranges hold the same bytes: memcmp, because the generic `==` on arrays is
/// compiled unspecialised in a debug build and the oracle compares megabytes of memory.
func sameBytes<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
    a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            guard x.count == y.count, let p = x.baseAddress, let q = y.baseAddress else { return x.count == y.count }
            return memcmp(p, q, x.count) == 0
        }
    }
}

func hexBytes<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

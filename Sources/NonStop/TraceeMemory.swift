import CShim
import Glibc
import Relocator

/// A process's memory through /proc/PID/mem: one pread/pwrite per range (writes to read-only text
/// succeed, as they do for a debugger). Untrusted: every read can fail or come back short.
final class TraceeMemory: EmulationMemory {
    let pid: pid_t
    private var fd: Int32

    init(pid: pid_t) throws(TraceError) {
        self.pid = pid
        fd = open("/proc/\(pid)/mem", O_RDWR | O_CLOEXEC)
        if fd < 0 { throw TraceError("open /proc/\(pid)/mem", tid: pid, errno: errno) }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// After an exec the old descriptor still refers to the old address space.
    func reopen() throws(TraceError) {
        close()
        fd = open("/proc/\(pid)/mem", O_RDWR | O_CLOEXEC)
        if fd < 0 { throw TraceError("open /proc/\(pid)/mem", tid: pid, errno: errno) }
    }

    /// Up to `count` bytes at `address`; fewer when the range runs into unmapped memory.
    func read(_ address: UInt64, count: Int) throws(TraceError) -> [UInt8] {
        guard count > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + done, count - done, off_t(Int64(bitPattern: address &+ UInt64(done))))
            }
            if n < 0 {
                if errno == EINTR { continue }
                if done > 0 || errno == EIO || errno == EFAULT { break }
                throw TraceError("read memory at 0x\(String(address, radix: 16))", tid: pid, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return Array(buffer.prefix(done))
    }

    /// Several ranges in one process_vm_readv: each comes back whole, or nil when it could not be read
    /// (the kernel stops at the first range that faults; those after it are read one by one here).
    func read(ranges: [(address: UInt64, count: Int)]) -> [[UInt8]?] {
        guard !ranges.isEmpty else { return [] }
        let total = ranges.reduce(0) { $0 + max($1.count, 0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 8)
        defer { buffer.deallocate() }
        var local: [iovec] = [], remote: [iovec] = []
        local.reserveCapacity(ranges.count)
        remote.reserveCapacity(ranges.count)
        var offset = 0
        for range in ranges {
            let count = max(range.count, 0)
            local.append(iovec(iov_base: buffer.baseAddress.map { $0 + offset }, iov_len: count))
            remote.append(iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(range.address)), iov_len: count))
            offset += count
        }
        var done = max(nst_process_vm_readv(pid, local, UInt(local.count), remote, UInt(remote.count)), 0)
        var out: [[UInt8]?] = []
        out.reserveCapacity(ranges.count)
        offset = 0
        for range in ranges {
            let count = max(range.count, 0)
            if done >= count {
                out.append(Array(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + count])))
                done -= count
            } else {
                done = 0
                let bytes = try? read(range.address, count: count)
                out.append(bytes?.count == count ? bytes : nil)
            }
            offset += count
        }
        return out
    }

    func write(_ bytes: [UInt8], at address: UInt64) throws(TraceError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                pwrite(fd, raw.baseAddress! + done, bytes.count - done, off_t(Int64(bitPattern: address &+ UInt64(done))))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw TraceError("write memory at 0x\(String(address, radix: 16))", tid: pid, errno: errno)
            }
            if n == 0 { throw TraceError("write memory at 0x\(String(address, radix: 16))", tid: pid, errno: EIO) }
            done += n
        }
    }

    func readWord(at address: UInt64) throws -> UInt64 {
        let bytes = try read(address, count: 8)
        guard bytes.count == 8 else { throw TraceError("read word at 0x\(String(address, radix: 16))", tid: pid, errno: EFAULT) }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    func writeWord(_ value: UInt64, at address: UInt64) throws {
        try write(withUnsafeBytes(of: value.littleEndian) { Array($0) }, at: address)
    }

    /// A NUL-terminated string of at most `limit` bytes, read a page at a time so a string that ends
    /// just before unmapped memory still reads. nil when the pointer is not readable at all.
    func string(at address: UInt64, limit: Int) -> (bytes: [UInt8], truncated: Bool)? {
        var out: [UInt8] = []
        var cursor = address
        while out.count < limit {
            let pageRemaining = Int(4096 - (cursor & 4095))
            let want = min(pageRemaining, limit - out.count + 1)
            guard let chunk = try? read(cursor, count: want), !chunk.isEmpty else {
                return out.isEmpty && cursor == address ? nil : (out, true)
            }
            if let nul = chunk.firstIndex(of: 0) {
                out.append(contentsOf: chunk[..<nul])
                return (Array(out.prefix(limit)), out.count > limit)
            }
            out.append(contentsOf: chunk)
            cursor &+= UInt64(chunk.count)
        }
        return (Array(out.prefix(limit)), true)
    }
}

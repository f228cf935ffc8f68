import Foundation
import Symbols

/// One redis-server for one measured run: started fresh on a free loopback port with no
/// persistence, asked questions through redis-cli, stopped at the end. A fresh server per run means
/// a tool that broke the last one cannot spoil the next figure.
final class RedisServer {
    let port: Int
    private let process: RunningCommand
    private let cli: String
    private let scratch: String
    private let name: String

    var pid: pid_t { process.pid }

    init(server: String, cli: String, scratch: String, name: String) throws {
        port = try RedisServer.freePort()
        self.cli = cli
        self.scratch = scratch
        self.name = name
        // --save '' and --appendonly no: nothing is written to disk, so no fork for a snapshot and
        // no fsync; --logfile '': the log goes to stdout, into the run's scratch file.
        process = try RunningCommand([server, "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--protected-mode", "no", "--daemonize", "no", "--logfile", "", "--dir", scratch],
                                     scratch: scratch, name: name)
        let deadline = Date().addingTimeInterval(10)
        while ask(["PING"], timeout: 2) != "PONG" {
            if process.hasExited || Date() > deadline {
                let log = process.stdout.split(separator: "\n").last.map(String.init) ?? ""
                _ = process.kill()
                throw BenchError("redis-server did not answer PING on port \(port) within 10 s: \(log)")
            }
            usleep(50_000)
        }
    }

    deinit { stop() }

    /// Whether the server process is still there (not exited, not killed by a stray trap).
    var isRunning: Bool { !process.hasExited }

    /// How the server ended, if it did: its exit code (128 + signal when killed).
    var exitCode: Int32? { process.outcome?.exitCode }

    func stop() {
        _ = process.stop(signal: SIGTERM, grace: 10)
    }

    /// One command through redis-cli; its reply with surrounding whitespace trimmed, or nil when
    /// redis-cli failed or did not finish within `timeout` seconds.
    func ask(_ command: [String], timeout: Double = 10) -> String? {
        guard let o = try? Command.run([cli, "-h", "127.0.0.1", "-p", "\(port)"] + command, timeout: timeout,
                                       scratch: scratch, name: "\(name)-cli"),
              !o.timedOut, o.exitCode == 0 else { return nil }
        return o.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The server answers PING, and a SET is read back by a GET.
    func answersCorrectly() -> (ping: Bool, setGet: Bool) {
        let ping = ask(["PING"]) == "PONG"
        let value = "nsb-\(UInt64.random(in: 0...UInt64.max))"
        let setGet = ask(["SET", "nsb:check", value]) == "OK" && ask(["GET", "nsb:check"]) == value
        return (ping, setGet)
    }

    /// GET commands the server executed and how many of them failed or were rejected
    /// (`INFO commandstats`: `cmdstat_get:calls=N,...,rejected_calls=R,failed_calls=F`).
    func getStatistics() -> (calls: Int, failed: Int)? {
        guard let info = ask(["INFO", "commandstats"]) else { return nil }
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_get:") {
            var fields: [String: Int] = [:]
            for pair in line.dropFirst("cmdstat_get:".count).split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2, let v = Int(kv[1]) { fields[String(kv[0])] = v }
            }
            guard let calls = fields["calls"] else { return nil }
            return (calls, (fields["rejected_calls"] ?? 0) + (fields["failed_calls"] ?? 0))
        }
        return (0, 0)
    }

    /// libc's `read` and `write` as mapped in the server: what every tool is asked to trace.
    func libcFunctions() throws -> [ServerFunction] {
        let image = try ProcessImage(pid: pid)
        var found: [ServerFunction] = []
        for f in image.functions(matching: try NamePattern("^(read|write)$"))
        where URL(fileURLWithPath: f.module.path).lastPathComponent.hasPrefix("libc.so") {
            let name = f.names.first { $0 == "read" || $0 == "write" } ?? f.name
            found.append(ServerFunction(name: name, address: f.address, library: f.module.path))
        }
        guard Set(found.map(\.name)) == ["read", "write"] else {
            throw BenchError("read and write not found in the server's libc (found: \(found.map(\.name)))")
        }
        return found.sorted { $0.name < $1.name }
    }

    /// The first bytes of the server's code at `address`, read through /proc/PID/mem.
    func code(at address: UInt64, count: Int = 8) -> [UInt8]? {
        let fd = open("/proc/\(pid)/mem", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(Int64(bitPattern: address))) }
        return n == count ? bytes : nil
    }

    /// A loopback port nobody listens on now: bind port 0, read what the kernel chose, close.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Bool in
                bind(fd, p, len) == 0 && getsockname(fd, p, &len) == 0
            }
        }
        guard bound else { throw BenchError("cannot find a free loopback port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// A function every tool traces in the server.
struct ServerFunction {
    let name: String
    /// Where it is in the server's address space.
    let address: UInt64
    /// The library's path, as bpftrace's uprobe wants it.
    let library: String
}

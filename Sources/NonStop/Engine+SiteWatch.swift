import Glibc
import Relocator
import Symbols

/// Other tracers write the same code nstrace does. A uprobe (bpftrace, perf, SystemTap) put on an
/// instruction that already holds nstrace's int3 takes its traps in the kernel, and when it is removed
/// the kernel writes the file's byte back over nstrace's int3: from then on nstrace would miss every
/// call there, silently. So every 100 ms the armed bytes are read back (one process_vm_readv per 1024
/// sites); an int3 found replaced by its original byte is put back and the gap told.
extension Engine {
    static let siteCheckInterval: UInt64 = 100_000_000

    func checkSitesIfDue() {
        let now = monotonicNow()
        guard now &- lastSiteCheck >= Engine.siteCheckInterval else { return }
        let since = lastSiteCheck
        lastSiteCheck = now
        var checked: [ObjectIdentifier] = []
        for process in processes.values where process.installed && process.reportsEvents {
            let space = process.space
            guard !checked.contains(ObjectIdentifier(space)) else { continue }
            checked.append(ObjectIdentifier(space))
            noticeUprobes(process)
            let sites = Array(space.sites.values)
            for start in stride(from: 0, to: sites.count, by: 1024) {
                let part = sites[start..<min(start + 1024, sites.count)]
                let bytes = space.memory.read(ranges: part.map { ($0.address, 1) })
                for (site, byte) in zip(part, bytes) {
                    guard let byte = byte?.first, byte != 0xcc else { continue }
                    rearm(site, found: byte, in: process, since: since)
                }
            }
        }
    }

    private func rearm(_ site: Site, found byte: UInt8, in process: TracedProcess, since: UInt64) {
        let name = site.entryOf?.name ?? site.exitOf?.name ?? site.tailExitOf?.name
        let what = name.map { "\($0)'s breakpoint at \(hex(site.address))" } ?? "the breakpoint at \(hex(site.address))"
        guard byte == site.originalByte else {
            // New code there (a JIT, a library mapped anew): not nstrace's to touch any more.
            notice(process, "\(what) was overwritten with other code by someone else; it is given up")
            process.space.forget(site)
            return
        }
        guard (try? process.space.memory.write([0xcc], at: site.address)) != nil else { return }
        let milliseconds = (monotonicNow() &- since) / 1_000_000
        notice(process, "\(what) was put back: another tracer (a uprobe being removed, say) had written the original code "
               + "over it; calls there in up to the last \(milliseconds) ms were not seen")
    }

    /// The kernel maps `[uprobes]` into a process once a uprobe fires in it: where one sits on an
    /// nstrace int3, the kernel takes the trap and nstrace does not see the call. Told once.
    private func noticeUprobes(_ process: TracedProcess) {
        // Searched as bytes: a String's `contains` goes through Foundation here, many times slower.
        guard !process.toldOfUprobes, let maps = ProcFile.contents("/proc/\(process.pid)/maps"),
              maps.firstRange(of: Array("[uprobes]".utf8)) != nil else { return }
        process.toldOfUprobes = true
        notice(process, "a uprobe (bpftrace, perf, SystemTap…) fired in this process: calls at an address where it shares "
               + "an int3 with nstrace go to the uprobe alone while it is there")
    }
}

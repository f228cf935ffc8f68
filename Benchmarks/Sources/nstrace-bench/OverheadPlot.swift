import Foundation

/// Per-call overhead against thread count, one line per contender, one panel per workload: an SVG
/// written by hand (no plotting dependency), log-scaled on both axes.
struct OverheadPlot {
    let report: Report

    private static let colours: [ContenderID: String] = [
        .floor: "#7f7f7f", .nstraceJump: "#d62728", .nstraceJumpSummary: "#ff9896", .nstraceStep: "#ff7f0e", .liftReinsert: "#9467bd",
        .allStop: "#8c564b", .ltrace: "#1f77b4", .gdb: "#2ca02c", .bpftrace: "#17becf",
        .nstraceInline: "#e377c2", .bpftraceRet: "#0b7285", .uftrace: "#bcbd22", .fridaJS: "#393b79",
        .fridaCModule: "#6b6ecf",
    ]

    private let panelWidth = 460.0, panelHeight = 320.0
    private let left = 70.0, top = 50.0, gap = 90.0, legendHeight = 70.0

    func svg() -> String {
        let workloads = report.plan.workloads
        let width = left + Double(workloads.count) * panelWidth + Double(workloads.count - 1) * gap + 30
        let height = top + panelHeight + 50 + legendHeight
        let points = report.summaries.filter { ($0.overheadNsPerCall ?? 0) > 0 }
        let values = points.compactMap(\.overheadNsPerCall)
        let low = floor(log10(values.min() ?? 100)), high = ceil(log10(values.max() ?? 1e6))
        let yRange = (low, max(high, low + 1))
        let threads = report.plan.threadCounts
        let xRange = (log2(Double(threads.min() ?? 1)), max(log2(Double(threads.max() ?? 16)), log2(Double(threads.min() ?? 1)) + 1))

        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="22" font-size="15" font-weight="bold">Per-call overhead of tracing against thread count (\(report.plan.callsPerThread) calls per thread, \(report.plan.rounds == 1 ? "one round" : "medians of \(report.plan.rounds) rounds"))</text>

        """
        for (p, workload) in workloads.enumerated() {
            let x0 = left + Double(p) * (panelWidth + gap)
            s += panel(workload, x0: x0, xRange: xRange, yRange: yRange, threads: threads)
        }
        // Legend.
        let contenders = report.plan.contenders.map(\.id).filter { $0 != .untraced }
        let legendTop = top + panelHeight + 55
        for (i, id) in contenders.enumerated() {
            let x = left + Double(i % 4) * 230, y = legendTop + Double(i / 4) * 22
            let skipped = !points.contains { $0.tool == id }
            s += "<line x1=\"\(x)\" y1=\"\(y)\" x2=\"\(x + 26)\" y2=\"\(y)\" stroke=\"\(colour(id))\" stroke-width=\"2.5\"\(dash(id))/>\n"
            s += "<circle cx=\"\(x + 13)\" cy=\"\(y)\" r=\"3.5\" fill=\"\(colour(id))\"/>\n"
            s += "<text x=\"\(x + 34)\" y=\"\(y + 4)\">\(escape(label(id)))\(skipped ? " (not run)" : "")</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    private func panel(_ workload: Workload, x0: Double, xRange: (Double, Double), yRange: (Double, Double), threads: [Int]) -> String {
        func x(_ t: Int) -> Double { x0 + (log2(Double(t)) - xRange.0) / (xRange.1 - xRange.0) * panelWidth }
        func y(_ ns: Double) -> Double { top + panelHeight - (log10(ns) - yRange.0) / (yRange.1 - yRange.0) * panelHeight }
        var s = "<text x=\"\(x0)\" y=\"\(top - 10)\" font-size=\"13\">\(escape(workload.title.replacingOccurrences(of: "`", with: "")))</text>\n"
        s += "<rect x=\"\(x0)\" y=\"\(top)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#444\"/>\n"
        // Decades on y, with faint lines at 2× and 5×.
        var decade = yRange.0
        while decade <= yRange.1 {
            let v = pow(10, decade)
            s += "<line x1=\"\(x0)\" y1=\"\(y(v))\" x2=\"\(x0 + panelWidth)\" y2=\"\(y(v))\" stroke=\"#ccc\"/>\n"
            s += "<text x=\"\(x0 - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(duration(v))</text>\n"
            for m in [2.0, 5.0] where decade < yRange.1 {
                s += "<line x1=\"\(x0)\" y1=\"\(y(v * m))\" x2=\"\(x0 + panelWidth)\" y2=\"\(y(v * m))\" stroke=\"#eee\"/>\n"
            }
            decade += 1
        }
        for t in threads {
            s += "<line x1=\"\(x(t))\" y1=\"\(top)\" x2=\"\(x(t))\" y2=\"\(top + panelHeight)\" stroke=\"#eee\"/>\n"
            s += "<text x=\"\(x(t))\" y=\"\(top + panelHeight + 16)\" text-anchor=\"middle\">\(t)</text>\n"
        }
        s += "<text x=\"\(x0 + panelWidth / 2)\" y=\"\(top + panelHeight + 34)\" text-anchor=\"middle\">threads</text>\n"
        s += "<text transform=\"translate(\(x0 - 52),\(top + panelHeight / 2)) rotate(-90)\" text-anchor=\"middle\">overhead per call</text>\n"
        for id in report.plan.contenders.map(\.id) where id != .untraced {
            let series = report.summaries
                .filter { $0.workload == workload && $0.tool == id }
                .compactMap { s -> (Int, Double)? in
                    guard let o = s.overheadNsPerCall, o > 0 else { return nil }
                    return (s.threads, o)
                }
            guard !series.isEmpty else { continue }
            let path = series.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(colour(id))\" stroke-width=\"2.5\"\(dash(id))/>\n"
            for (t, o) in series {
                s += "<circle cx=\"\(x(t))\" cy=\"\(y(o))\" r=\"3.5\" fill=\"\(colour(id))\"><title>\(id.rawValue), \(t) threads: \(Int(o)) ns</title></circle>\n"
            }
        }
        return s
    }

    private func colour(_ id: ContenderID) -> String { OverheadPlot.colours[id] ?? "#000" }

    private func dash(_ id: ContenderID) -> String { id == .floor ? " stroke-dasharray=\"6 4\"" : "" }

    private func label(_ id: ContenderID) -> String {
        switch id {
        case .floor: return "floor (wait + continue)"
        case .liftReinsert: return "lift-and-reinsert (misses)"
        case .allStop: return "all-stop"
        case .gdb: return "gdb non-stop dprintf"
        case .bpftrace: return "bpftrace uprobe (entry only)"
        case .bpftraceRet: return "bpftrace uprobe + uretprobe"
        case .uftrace: return "uftrace -P (patchable build)"
        case .fridaJS: return "frida Interceptor, JS"
        case .fridaCModule: return "frida Interceptor, CModule"
        case .ltrace: return "ltrace -f -x"
        default: return id.rawValue
        }
    }

    private func duration(_ ns: Double) -> String {
        if ns >= 1e9 { return "\(Int(ns / 1e9)) s" }
        if ns >= 1e6 { return "\(Int(ns / 1e6)) ms" }
        if ns >= 1e3 { return "\(Int(ns / 1e3)) µs" }
        return "\(Int(ns)) ns"
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// `breakwater check-config`'s memory plan: what the configuration can hold at most, part by part,
/// beside the limits it would run under; warnings when it does not fit.
enum MemoryPlanReport {
    static let defaultUnit = "/lib/systemd/system/breakwater.service"

    /// The unit's MemoryMax=: the unit file, then /etc/systemd/system's copy and drop-ins (as systemd
    /// reads them). nil when not set anywhere or infinity.
    static func unitMemoryMax(unit: String, physical: UInt64) -> (UInt64, String)? {
        var files = [unit]
        if unit == defaultUnit {
            let name = "breakwater.service"
            files.append("/etc/systemd/system/" + name)
            let dropins = "/etc/systemd/system/\(name).d"
            if let d = opendir(dropins) {
                var names: [String] = []
                while let e = readdir(d) {
                    let n = e.pointee.name
                    if n.hasSuffix(".conf") { names.append(n) }
                }
                closedir(d)
                files += names.sorted().map { dropins + "/" + $0 }
            }
        }
        var result: (UInt64, String)?
        for file in files {
            guard let text = ProcessMemory.read(file) else { continue }
            switch MemoryPlan.memoryMax(unitText: text, physical: physical) {
            case .none: continue
            case .some(.none): result = nil
            case .some(.some(let v)): result = (v, file)
            }
        }
        return result
    }

    /// The engine's size: measured by the running daemon (its STATUS, when the control socket
    /// answers), else estimated from the signature files.
    static func engine(_ config: Config) -> (UInt64, String) {
        if !config.control.isEmpty,
            let r = try? ControlProtocol.request("STATUS JSON", socket: config.control, timeout: 5),
            let bytes = jsonNumber("memory_bytes", in: (r.head + r.body.joined(separator: "\n"))), bytes > 0
        {
            return (bytes, "measured by the running daemon (control socket \(config.control))")
        }
        let (plain, compressed) = MemoryPlan.signatureFileBytes(config.signatureDirectories)
        let f = human
        var note = "estimated from \(f(plain)) of signature files (x 3.5"
        if compressed > 0 { note += "; \(f(compressed)) of .cvd x 7" }
        return (MemoryPlan.estimateEngine(plainBytes: plain, compressedBytes: compressed), note + ")")
    }

    static func jsonNumber(_ key: String, in text: String) -> UInt64? {
        guard let r = text.firstRange(of: "\"\(key)\":") else { return nil }
        return UInt64(text[r.upperBound...].prefix { $0.isNumber })
    }

    /// The lines to print and whether any is a warning.
    static func lines(_ config: Config, unit: String) -> (lines: [String], warned: Bool) {
        let f = human
        let (engine, engineNote) = engine(config)
        let spoolDir = config.spoolDirectory
        let scanDir = config.limits.temporaryDirectory ?? spoolDir
        let parts = MemoryPlan.parts(
            config, engineBytes: engine, engineNote: engineNote, spoolInMemory: MemoryPlan.isInMemory(spoolDir),
            scanTemporaryInMemory: config.limits.temporaryDirectory == nil
                || (scanDir != spoolDir && MemoryPlan.isInMemory(scanDir)))
        let total = parts.reduce(UInt64(0)) { $0 &+ $1.bytes }
        var out = ["memory plan (what this configuration can hold at most):"]
        for p in parts { out.append("  " + pad(p.name, 22) + pad(f(p.bytes), 8, left: true) + "  " + p.note) }
        out.append("  " + pad("total", 22) + pad(f(total), 8, left: true))
        let physical = ProcessMemory.read("/proc/meminfo").flatMap { ProcessMemory.kilobytes("MemTotal", in: $0) } ?? 0
        var limits: [(UInt64, String)] = []
        if let m = unitMemoryMax(unit: unit, physical: physical) { limits.append((m.0, "MemoryMax= of \(m.1)")) }
        if let c = ProcessMemory.cgroupLimit() { limits.append((c.bytes, "the limit this runs under (\(c.source))")) }
        if limits.isEmpty {
            out.append("limits: no MemoryMax= in \(unit), no cgroup limit; the machine has \(f(physical))")
            limits.append((physical, "the machine's memory"))
        } else {
            out.append("limits: " + limits.map { "\(f($0.0)) \($0.1)" }.joined(separator: "; "))
        }
        var warned = false
        for (limit, what) in limits {
            if total > limit {
                warned = true
                out.append(
                    "warning: the plan (\(f(total))) is over \(f(limit)), \(what): lower memory-budget, workers or max-message-size, or raise the limit"
                )
            } else if config.ops.reloadMode == .auto, total &+ engine > limit {
                out.append(
                    "note: a concurrent reload (\(f(total &+ engine))) would not fit in \(f(limit)), \(what): reload-mode auto reloads blocking (scans pause during the build)"
                )
            }
        }
        if config.ops.reloadMode == .auto, !warned {
            out.append(
                "reload-mode auto: a second engine (\(f(engine))) only when it fits under the limit at the time, else a blocking reload"
            )
        }
        return (out.map { Escape.text($0) }, warned)
    }

    /// 1.8G, 97M, 12K: to a tenth for gigabytes, rounded up below.
    static func human(_ b: UInt64) -> String {
        if b >= 1 << 30 {
            let tenths = (b * 10 + (1 << 30) - 1) >> 30
            return "\(tenths / 10).\(tenths % 10)G"
        }
        if b >= 1 << 20 { return "\((b + (1 << 20) - 1) >> 20)M" }
        if b >= 1 << 10 { return "\((b + 1023) >> 10)K" }
        return "\(b)"
    }

    private static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }
}

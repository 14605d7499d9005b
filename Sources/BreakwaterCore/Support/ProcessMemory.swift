#if canImport(Glibc)
import Glibc
#endif

/// The memory limit a process runs under: its memory cgroup's limit (v2 `memory.max`, v1
/// `hierarchical_memory_limit`), else the machine's MemAvailable.
package struct MemoryLimit: Sendable, Equatable {
    /// The limit in bytes (for MemAvailable: what is available now, on top of what the process holds).
    package var bytes: UInt64
    /// What the cgroup has charged now (cgroup limits only).
    package var charged: UInt64?
    /// Where the figure comes from, for the log: "cgroup v1 /x memory.limit_in_bytes", "MemAvailable".
    package var source: String
    /// True for a cgroup limit (the process's own memory counts against it); false for MemAvailable.
    package var isCgroup: Bool

    package init(bytes: UInt64, charged: UInt64? = nil, source: String, isCgroup: Bool) {
        self.bytes = bytes
        self.charged = charged
        self.source = source
        self.isCgroup = isCgroup
    }
}

/// Figures of this process's memory from /proc and /sys: RSS, its peak, and the limit it runs under.
package enum ProcessMemory {
    /// A cgroup limit at or above this means none (v1 writes 2^63 - 4096 rounded to the page size).
    static let unlimited: UInt64 = 1 << 60

    /// Reads a small text file (at most 64 KB); nil when it cannot be read.
    package static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A `Name:   123 kB` field of /proc/self/status (or /proc/meminfo), in bytes.
    package static func kilobytes(_ field: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let value = line.dropFirst(field.count + 1).trimmed
            let number = value.prefix { $0.isNumber }
            guard let n = UInt64(number) else { return nil }
            return value.hasSuffix("kB") ? n * 1024 : n
        }
        return nil
    }

    /// Resident set size now.
    package static var rss: UInt64? { read("/proc/self/status").flatMap { kilobytes("VmRSS", in: $0) } }

    /// Peak resident set size since the start or the last `resetPeak()`.
    package static var peak: UInt64? { read("/proc/self/status").flatMap { kilobytes("VmHWM", in: $0) } }

    /// Resets the peak (VmHWM) to the RSS now (`clear_refs` 5). False when the kernel refuses.
    @discardableResult
    package static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// The memory cgroup paths in /proc/self/cgroup text: the v2 path (`0::/x`) and the v1 memory
    /// controller's (`N:memory:/x` or `N:cpu,memory:/x`).
    package static func cgroupPaths(_ text: String) -> (v2: String?, v1: String?) {
        var v2: String?
        var v1: String?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                v2 = String(parts[2])
            } else if parts[1].split(separator: ",").contains("memory") {
                v1 = String(parts[2])
            }
        }
        return (v2, v1)
    }

    /// A limit file's value: a number, or nil for "max" and values that mean no limit.
    package static func limitValue(_ text: String?) -> UInt64? {
        guard let t = text?.trimmed, let n = UInt64(t), n < unlimited else { return nil }
        return n
    }

    /// The limit of this process's memory cgroup, when it has one. `root` is where the cgroup file
    /// systems are mounted. On v2 the lowest `memory.max` of the cgroup and its ancestors counts; on v1
    /// `hierarchical_memory_limit` of memory.stat (the same, computed by the kernel), else the group's
    /// own `memory.limit_in_bytes`.
    package static func cgroupLimit(procCgroup: String? = read("/proc/self/cgroup"), root: String = "/sys/fs/cgroup")
        -> MemoryLimit?
    {
        guard let text = procCgroup else { return nil }
        let (v2, v1) = cgroupPaths(text)
        if let v1 {
            let dir = root + "/memory" + (v1 == "/" ? "" : v1)
            let stat = read(dir + "/memory.stat")
            let hierarchical = stat.flatMap { s -> UInt64? in
                for line in s.split(separator: "\n") where line.hasPrefix("hierarchical_memory_limit ") {
                    return limitValue(String(line.dropFirst("hierarchical_memory_limit ".count)))
                }
                return nil
            }
            if let limit = hierarchical ?? limitValue(read(dir + "/memory.limit_in_bytes")) {
                let charged = read(dir + "/memory.usage_in_bytes").flatMap { UInt64($0.trimmed) }
                return MemoryLimit(
                    bytes: limit, charged: charged, source: "cgroup v1 \(dir) memory.limit_in_bytes", isCgroup: true)
            }
        }
        if let v2 {
            // The unified hierarchy is at the root on a v2 system, at root/unified on a hybrid one.
            for base in [root, root + "/unified"] {
                var path = v2 == "/" ? "" : v2
                var best: (UInt64, String)?
                var sawFile = false
                while true {
                    let dir = base + path
                    if let text = read(dir + "/memory.max") {
                        sawFile = true
                        if let n = limitValue(text), n < best?.0 ?? .max { best = (n, dir) }
                    }
                    if path.isEmpty { break }
                    path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
                }
                if let (limit, dir) = best {
                    let charged = read(base + v2 + "/memory.current").flatMap { UInt64($0.trimmed) }
                    return MemoryLimit(
                        bytes: limit, charged: charged, source: "cgroup v2 \(dir) memory.max", isCgroup: true)
                }
                if sawFile { break }
            }
        }
        return nil
    }

    /// The limit that applies: the cgroup's, else MemAvailable (nil when neither can be read).
    package static func limit() -> MemoryLimit? {
        if let c = cgroupLimit() { return c }
        if let m = read("/proc/meminfo").flatMap({ kilobytes("MemAvailable", in: $0) }) {
            return MemoryLimit(bytes: m, source: "MemAvailable", isCgroup: false)
        }
        return nil
    }
}

/// How a reload makes room for the new engine, decided before each reload (`reload-mode`).
package struct ReloadPlan: Sendable, Equatable {
    package var concurrent: Bool
    /// The figures behind it, for the log.
    package var reason: String

    package init(concurrent: Bool, reason: String) {
        self.concurrent = concurrent
        self.reason = reason
    }

    /// `auto`: concurrent when the limit leaves room for a second engine of `engineBytes` on top of
    /// what the process holds (`rss`) and what its budgets still allow it to take (`headroom`: the
    /// memory budget not in use, scan working memory of idle slots). For a cgroup limit, room means
    /// rss + headroom + engine within the limit; for MemAvailable (which excludes what the process holds
    /// already) headroom + engine within it. Without a limit, or without a measured engine, blocking.
    package static func decide(
        mode: ReloadMode, limit: MemoryLimit?, rss: UInt64?, engineBytes: UInt64?, headroom: UInt64
    ) -> ReloadPlan {
        switch mode {
        case .concurrent: return ReloadPlan(concurrent: true, reason: "reload-mode concurrent")
        case .blocking: return ReloadPlan(concurrent: false, reason: "reload-mode blocking")
        case .auto: break
        }
        guard let limit else {
            return ReloadPlan(concurrent: false, reason: "auto: no memory limit readable (cgroup or MemAvailable)")
        }
        guard let engine = engineBytes, let rss else {
            return ReloadPlan(concurrent: false, reason: "auto: engine size not measured")
        }
        let f = ByteSize.format
        if limit.isCgroup {
            let need = rss &+ headroom &+ engine
            let fits = need <= limit.bytes
            return ReloadPlan(
                concurrent: fits,
                reason:
                    "auto: RSS \(f(rss)) + budgets \(f(headroom)) + a second engine \(f(engine)) = \(f(need)) \(fits ? "within" : "over") the limit \(f(limit.bytes)) (\(limit.source))"
            )
        }
        let need = headroom &+ engine
        let fits = need <= limit.bytes
        return ReloadPlan(
            concurrent: fits,
            reason:
                "auto: budgets \(f(headroom)) + a second engine \(f(engine)) = \(f(need)) \(fits ? "within" : "over") MemAvailable \(f(limit.bytes)) (RSS \(f(rss)))"
        )
    }
}

/// What a configuration can make the daemon hold at most, by part (`breakwater check-config`), and
/// the memory its budgets still allow it to take (a reload's `auto` choice).
package struct MemoryPlan: Sendable {
    /// libclamav's working memory for one scan, estimated as 3 x max-message-size (about 75M was
    /// measured on a 25M message: the message, its decoded parts and libclamav's maps of them).
    package static func scanWorkingMemory(_ c: Config) -> UInt64 { 3 &* c.maxMessageSize }

    /// Memory the budgets may still take on top of what the process holds now: the memory budget not
    /// in use and the scan working memory of the idle slots.
    package static func headroom(_ c: Config, buffered: UInt64, busySlots: Int) -> UInt64 {
        let budget = c.memoryBudget > buffered ? c.memoryBudget - buffered : 0
        let idle = UInt64(max(0, c.workers - busySlots))
        return budget &+ idle &* scanWorkingMemory(c)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension MemoryPlan {
    /// One part of the plan.
    package struct Part: Sendable {
        package var name: String
        package var bytes: UInt64
        package var note: String
    }

    /// RSS of the program without an engine (measured: about 40M with the shipped set).
    package static let programBytes: UInt64 = 40 << 20

    /// An engine's size estimated from its signature files: about 3.5 x the plain-text databases (the
    /// official-shaped stand-in: 291M of text, 920M of engine) and 7 x the compressed .cvd files.
    package static func estimateEngine(plainBytes: UInt64, compressedBytes: UInt64) -> UInt64 {
        plainBytes &* 7 / 2 &+ compressedBytes &* 7
    }

    /// Bytes of database files in `directories`: (plain, compressed .cvd).
    package static func signatureFileBytes(_ directories: [String]) -> (UInt64, UInt64) {
        var plain: UInt64 = 0
        var compressed: UInt64 = 0
        for dir in directories {
            guard let d = opendir(dir) else { continue }
            while let e = readdir(d) {
                let name = e.pointee.name
                let type = SignatureCatalog.fileType(name)
                guard name.first != ".", SignatureLocations.databaseExtensions.contains(type) else { continue }
                var st = stat()
                guard stat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                if type == "cvd" { compressed += UInt64(st.st_size) } else { plain += UInt64(st.st_size) }
            }
            closedir(d)
        }
        return (plain, compressed)
    }

    /// True when `path` is on a tmpfs (its files are memory).
    package static func isInMemory(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        let full = String(cString: resolved)
        free(resolved)
        guard let mounts = ProcessMemory.read("/proc/self/mounts") else { return false }
        return fileSystemType(of: full, mounts: mounts).map { $0 == "tmpfs" || $0 == "ramfs" } ?? false
    }

    /// The type of the file system `path` (absolute, resolved) is on, from /proc/self/mounts text: the
    /// last-mounted of the longest mount points that contain it.
    package static func fileSystemType(of path: String, mounts: String) -> String? {
        var best: (Int, String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1]).replacing("\\040", with: " ")
            let inside = point == "/" || path == point || path.hasPrefix(point + "/")
            if inside && point.count >= (best?.0 ?? -1) { best = (point.count, String(fields[2])) }
        }
        return best?.1
    }

    /// The parts of what the configuration can hold at most with an engine of `engineBytes`, and
    /// whether a second engine counts (`concurrent`).
    package static func parts(
        _ c: Config, engineBytes: UInt64, engineNote: String, spoolInMemory: Bool, scanTemporaryInMemory: Bool
    ) -> [Part] {
        var out: [Part] = [
            Part(name: "program", bytes: programBytes, note: "breakwater and libclamav without signatures"),
            Part(name: "engine", bytes: engineBytes, note: engineNote),
        ]
        switch c.ops.reloadMode {
        case .concurrent:
            out.append(
                Part(
                    name: "second engine", bytes: engineBytes,
                    note: "reload-mode concurrent: both engines live during a reload"))
        case .auto, .blocking:
            break
        }
        out.append(Part(name: "memory-budget", bytes: c.memoryBudget, note: "messages buffered in memory"))
        out.append(
            Part(
                name: "spool", bytes: spoolInMemory ? c.spoolBudget : 0,
                note: spoolInMemory
                    ? "spool-directory \(c.spoolDirectory) is a tmpfs: spool-budget counts"
                    : "spool-directory \(c.spoolDirectory) is on disk"))
        let perSlot = scanWorkingMemory(c)
        out.append(
            Part(
                name: "scan working memory", bytes: UInt64(c.workers) &* perSlot,
                note: "\(c.workers) slots x \(ByteSize.format(perSlot)) (3 x max-message-size)"))
        // libclamav's per-part files: in memory when scan-temporary-directory is unset and a tmpfs has
        // room for them at start (ScanMemory), or when the directory set is a tmpfs.
        if scanTemporaryInMemory {
            let location =
                c.limits.temporaryDirectory.map { "\($0) is a tmpfs" }
                ?? "in memory when a tmpfs has room at start (else on disk)"
            out.append(
                Part(
                    name: "scan temporary files", bytes: ScanMemory.planned(config: c),
                    note: "\(location): workers x (max-scan-size + max-message-size)"))
        }
        return out
    }

    /// `MemoryMax=` of a unit file's text (the last assignment wins; an empty one resets): nil when not
    /// set or "infinity", else bytes (K, M, G, T are powers of 1024; a percentage is of `physical`).
    package static func memoryMax(unitText: String, physical: UInt64) -> UInt64?? {
        var value: UInt64?? = .none
        var section = ""
        for raw in unitText.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmed
            if line.hasPrefix("[") { section = line }
            guard section == "[Service]", line.hasPrefix("MemoryMax=") else { continue }
            let v = line.dropFirst("MemoryMax=".count).trimmed
            if v.isEmpty || v == "infinity" {
                value = v.isEmpty ? .none : .some(nil)
                continue
            }
            if v.hasSuffix("%"), let p = Double(v.dropLast()) {
                value = .some(UInt64(Double(physical) * p / 100))
                continue
            }
            let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
            if let u = v.last.flatMap({ units[Character($0.uppercased())] }), let n = Double(v.dropLast()) {
                value = .some(UInt64(n * Double(u)))
            } else if let n = UInt64(v) {
                value = .some(n)
            }
        }
        return value
    }
}

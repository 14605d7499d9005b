import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Messages that were being scanned when the process ended abnormally, kept across restarts, so that a
/// message that crashes the scanner gets a final answer (`on-scan-crash`) instead of a crash loop.
///
/// Before each scan starts, a small in-flight record is written to `directory` (over the idle mark of
/// the scanner thread's own file, `inflight-PID-N`, mapped shared), and marked idle again when the
/// scan ends. What is stored in a shared mapping is in the page cache at once: it outlives the
/// process whatever ends it (a crash, `kill -9`, the OOM killer), so no fsync is needed for the case
/// this guards against (a power cut loses the mail in flight anyway, and the MTA retries it). The crash handler (CrashGuard) writes `C` over the record's first byte when
/// the crashing thread held that scan. At start-up, the records left behind are suspects:
///
/// - a record marked `C` counts one crash of its message; a crash while the message was scanned
///   alone, or a second crash, convicts it;
/// - a record without the mark (the process was killed, or another thread crashed) makes a suspect
///   with no crash counted.
///
/// A suspect that arrives again is scanned alone (no other scan in flight); a convicted message is
/// answered without a scan. A suspect that passes its scan alone is cleared: it is scanned normally
/// from then on, and its crash count stays, so that no message crashes the process more than twice.
/// The table is bounded: `maxRecords` records, each dropped `expirySeconds` after it was last seen.
package final class CrashSuspects: @unchecked Sendable {
    package enum State: String, Sendable { case suspect, cleared, convicted }

    package struct Record: Sendable, Equatable {
        /// Hex SHA-256 of the message's headers (without Received) and body (`MessageDigest`).
        package var digest: String
        package var crashes: Int
        package var state: State
        /// Unix seconds it was last seen (in a record left behind, or arriving again).
        package var lastSeen: Int
        /// Queue id and sender of the message when it was in flight, escaped for the log.
        package var queue: String
        package var sender: String

        package init(digest: String, crashes: Int, state: State, lastSeen: Int, queue: String, sender: String) {
            self.digest = digest
            self.crashes = crashes
            self.state = state
            self.lastSeen = lastSeen
            self.queue = queue
            self.sender = sender
        }
    }

    /// One in-flight record found at start-up, and what it made of its message.
    package struct Recovered: Sendable {
        package let record: Record
        /// The crash handler marked it: its scan was the one that crashed.
        package let crashed: Bool
        /// It was being scanned alone.
        package let alone: Bool
    }

    /// A scanner thread's in-flight record: its file, mapped shared for the thread's life.
    package struct InFlight: @unchecked Sendable {
        package let base: UnsafeMutableRawPointer
        package init(base: UnsafeMutableRawPointer) { self.base = base }
    }

    /// Bytes of a record file (one page; a record line is at most about 1.3 KB).
    static let recordSize = 4096

    package struct StateError: Error, CustomStringConvertible {
        package let description: String
    }

    package let directory: String
    package let maxRecords: Int
    package let expirySeconds: Int
    /// Copies of convicted messages kept in `directory` (0: none).
    package let maxCopies: Int

    private let table = Locked<[String: Record]>([:])
    /// Records in the table: the per-message lookup takes no lock while it is 0.
    private let size = Atomic<Int>(0)
    private let sequence = Atomic<Int>(0)
    private let pid = getpid()

    package static let tableName = "suspects"
    package static let inFlightPrefix = "inflight-"
    package static let copyPrefix = "crashed-"

    package init(directory: String, maxRecords: Int = 1000, expirySeconds: Int = 5 * 86400, maxCopies: Int = 10)
        throws(StateError)
    {
        self.directory = directory
        self.maxRecords = max(1, maxRecords)
        self.expirySeconds = expirySeconds
        self.maxCopies = max(0, maxCopies)
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw StateError(description: "crash-directory \(directory): cannot create it: \(FileWalk.errnoString())")
        }
        var st = stat()
        guard stat(directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw StateError(description: "crash-directory \(directory): not a directory")
        }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw StateError(
                description:
                    "crash-directory \(directory): not writable by this user (uid \(getuid())): \(FileWalk.errnoString())"
            )
        }
    }

    // MARK: start-up

    /// Reads the table and the in-flight records left by the previous process, applies them, removes
    /// the records and saves the table. Call once, before the first scan.
    package func recover(now: Int = Int(Now.wall())) -> [Recovered] {
        var records = CrashSuspects.parseTable(FileIO.read(path(CrashSuspects.tableName), limit: 1 << 20) ?? [])
        var found: [Recovered] = []
        for name in entries(prefix: CrashSuspects.inFlightPrefix) {
            // A record of another process that still runs (a second daemon given the same
            // directory) is its own, not left behind.
            if let other = Int32(name.dropFirst(CrashSuspects.inFlightPrefix.count).prefix { $0 != "-" }),
                other != pid, kill(other, 0) == 0 || errno == EPERM
            {
                continue
            }
            let p = path(name)
            defer { unlink(p) }
            guard let bytes = FileIO.read(p, limit: CrashSuspects.recordSize),
                let m = CrashSuspects.parseInFlight(bytes)
            else { continue }
            var r =
                records[m.digest]
                ?? Record(
                    digest: m.digest, crashes: 0, state: .suspect, lastSeen: now, queue: m.queue, sender: m.sender)
            r.lastSeen = now
            r.queue = m.queue
            r.sender = m.sender
            if r.state != .convicted {
                if m.crashed {
                    r.crashes += 1
                    r.state = m.alone || r.crashes >= 2 ? .convicted : .suspect
                } else if r.state == .cleared {
                    // Passed alone before; in flight again when the process was killed: alone again.
                    r.state = .suspect
                }
            }
            records[m.digest] = r
            found.append(Recovered(record: r, crashed: m.crashed, alone: m.alone))
        }
        table.withLock { t in
            t = records
            prune(&t, now: now)
            size.store(t.count, ordering: .relaxed)
        }
        save()
        return found
    }

    // MARK: per message

    /// The record of a message, if it has one. Takes no lock while the table is empty.
    package func record(_ digest: String) -> Record? {
        if size.load(ordering: .relaxed) == 0 { return nil }
        return table.withLock { $0[digest] }
    }

    /// A scanner thread's record file (`inflight-PID-N`), made once and mapped shared: a record is
    /// then written with a copy into memory, no system call per message, and what is written is in
    /// the page cache the moment it is stored, so it outlives the process. Starts idle.
    package func openRecord() -> InFlight? {
        let n = sequence.add(1, ordering: .relaxed).newValue
        let p = path("\(CrashSuspects.inFlightPrefix)\(pid)-\(n)")
        let fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard ftruncate(fd, off_t(CrashSuspects.recordSize)) == 0,
            let map = mmap(nil, CrashSuspects.recordSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
            map != MAP_FAILED
        else {
            unlink(p)
            return nil
        }
        map.storeBytes(of: UInt8(ascii: "."), toByteOffset: 0, as: UInt8.self)
        map.storeBytes(of: UInt8(10), toByteOffset: 1, as: UInt8.self)
        return InFlight(base: map)
    }

    /// Writes the record of a scan about to start: the line after its first byte, then the first
    /// byte, `-` (in flight) over `.` (idle). False when it does not fit: the scan then runs unguarded.
    package func begin(_ f: InFlight, digest: String, queue: String, sender: String, alone: Bool) -> Bool {
        var line =
            " alone=\(alone ? 1 : 0) digest=\(digest) time=\(Int(Now.wall())) queue=\(Escape.field(queue.prefix(128))) sender=\(Escape.field(sender.prefix(256)))\n"
        let fits = line.withUTF8 { u -> Bool in
            guard u.count < CrashSuspects.recordSize - 1 else { return false }
            (f.base + 1).copyMemory(from: u.baseAddress!, byteCount: u.count)
            return true
        }
        if fits { f.base.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 0, as: UInt8.self) }
        return fits
    }

    /// The scan ended (whatever its result): the record is idle again.
    package func end(_ f: InFlight) {
        f.base.storeBytes(of: UInt8(ascii: "."), toByteOffset: 0, as: UInt8.self)
    }

    /// A convicted message came again: its record is kept for `expirySeconds` from now (a sender's
    /// queue retries a tempfailed message for days).
    package func seen(_ digest: String, now: Int = Int(Now.wall())) {
        let changed = table.withLock { t -> Bool in
            guard var r = t[digest], now - r.lastSeen >= 60 else { return false }
            r.lastSeen = now
            t[digest] = r
            return true
        }
        if changed { save() }
    }

    /// Removes this process's record files (a clean stop, no scan in flight).
    package func removeOwnRecords() {
        for name in entries(prefix: "\(CrashSuspects.inFlightPrefix)\(pid)-") { unlink(path(name)) }
    }

    /// A scan worker died of a crash signal while it scanned this message alone (the worker held
    /// nothing else): convicted at once. Returns the record as saved.
    @discardableResult
    package func convict(digest: String, queue: String, sender: String, now: Int = Int(Now.wall())) -> Record {
        let r = table.withLock { t -> Record in
            var r =
                t[digest]
                ?? Record(digest: digest, crashes: 0, state: .suspect, lastSeen: now, queue: "-", sender: "-")
            r.crashes = min(r.crashes + 1, 1000)
            r.state = .convicted
            r.lastSeen = now
            r.queue = CrashSuspects.token(Substring(Escape.field(queue.prefix(128))))
            r.sender = CrashSuspects.token(Substring(Escape.field(sender.prefix(256))))
            t[digest] = r
            prune(&t, now: now)
            size.store(t.count, ordering: .relaxed)
            return r
        }
        save()
        return r
    }

    /// A suspect passed its scan alone: scanned normally from now on (its crash count stays).
    package func passedAlone(_ digest: String) {
        let changed = table.withLock { t -> Bool in
            guard var r = t[digest], r.state == .suspect else { return false }
            r.state = .cleared
            r.lastSeen = Int(Now.wall())
            t[digest] = r
            return true
        }
        if changed { save() }
    }

    /// Keeps a copy of a convicted message (mode 0600) unless `maxCopies` copies are there already or
    /// this one is. `write` writes the message to the descriptor it is given; returns the path written.
    package func keepCopy(digest: String, write: (Int32) -> Bool) -> String? {
        guard maxCopies > 0 else { return nil }
        let name = "\(CrashSuspects.copyPrefix)\(digest.prefix(32)).eml"
        let existing = entries(prefix: CrashSuspects.copyPrefix)
        guard !existing.contains(name), existing.count < maxCopies else { return nil }
        let p = path(name)
        let fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        let ok = write(fd)
        close(fd)
        if !ok {
            unlink(p)
            return nil
        }
        return p
    }

    /// The records now (for status and tests).
    package var records: [Record] { table.withLock { Array($0.values) } }

    // MARK: the table file

    /// Writes the table (a temporary file renamed over the old one; rare: at start-up and when a
    /// suspect is cleared).
    func save() {
        let text = table.withLock { t in
            t.values.sorted { $0.lastSeen < $1.lastSeen }.map {
                "\($0.digest) \($0.crashes) \($0.state.rawValue) \($0.lastSeen) \($0.queue) \($0.sender)\n"
            }.joined()
        }
        let tmp = path(CrashSuspects.tableName + ".new")
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        var t = text
        let ok = t.withUTF8 { $0.isEmpty || write(fd, $0.baseAddress, $0.count) == $0.count }
        fsync(fd)
        close(fd)
        if ok { rename(tmp, path(CrashSuspects.tableName)) } else { unlink(tmp) }
    }

    /// Drops expired records, then the oldest past `maxRecords`.
    private func prune(_ t: inout [String: Record], now: Int) {
        t = t.filter { now - $0.value.lastSeen < expirySeconds }
        if t.count > maxRecords {
            let keep = t.values.sorted { $0.lastSeen > $1.lastSeen }.prefix(maxRecords)
            t = Dictionary(uniqueKeysWithValues: keep.map { ($0.digest, $0) })
        }
    }

    static func isDigest(_ s: Substring) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// A token read back from a file of ours: kept only if it is a safe log token.
    static func token(_ s: Substring) -> String {
        let t = String(s.prefix(512))
        return t.unicodeScalars.contains { Escape.isUnsafe($0) || $0 == " " || $0 == "\"" } ? "-" : t
    }

    static func parseTable(_ bytes: [UInt8]) -> [String: Record] {
        var out: [String: Record] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard f.count == 6, isDigest(f[0]), let crashes = Int(f[1]), crashes >= 0,
                let state = State(rawValue: String(f[2])), let seen = Int(f[3])
            else { continue }
            out[String(f[0])] = Record(
                digest: String(f[0]), crashes: min(crashes, 1000), state: state, lastSeen: seen, queue: token(f[4]),
                sender: token(f[5]))
        }
        return out
    }

    struct InFlightRecord: Equatable {
        var crashed: Bool, alone: Bool, digest: String, queue: String, sender: String
    }

    static func parseInFlight(_ bytes: [UInt8]) -> InFlightRecord? {
        guard let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "C") else { return nil }
        let line = String(decoding: bytes.dropFirst().prefix { $0 != 10 }, as: UTF8.self)
        var fields: [Substring: Substring] = [:]
        for f in line.split(separator: " ") {
            guard let eq = f.firstIndex(of: "=") else { continue }
            fields[f[..<eq]] = f[f.index(after: eq)...]
        }
        guard let d = fields["digest"], isDigest(d) else { return nil }
        return InFlightRecord(
            crashed: first == UInt8(ascii: "C"), alone: fields["alone"] == "1", digest: String(d),
            queue: token(fields["queue"] ?? "-"), sender: token(fields["sender"] ?? "-"))
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    /// Names in the directory that start with `prefix`.
    private func entries(prefix: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(prefix) { out.append(name) }
        }
        return out
    }
}

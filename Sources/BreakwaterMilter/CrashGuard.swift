import BreakwaterCore
import CProcessTuning
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Crash containment in the daemon: the suspects of earlier crashes (CrashSuspects, recovered at
/// start-up), the in-flight record around each scan, and the crash handler (crashguard.c) that marks
/// the record of the crashing scan and closes the milter's listening socket at once.
final class CrashGuard: @unchecked Sendable {
    let suspects: CrashSuspects
    let logger: Logger
    private let recordFailures = OncePerSecond()
    /// Each scan slot's in-flight record (`slotRecord`).
    private let records: Locked<[Int: CrashSuspects.InFlight]> = Locked([:])

    init(config: Config, stats: Stats, logger: Logger) throws {
        self.logger = logger
        do {
            suspects = try CrashSuspects(directory: config.crashDirectory, maxCopies: config.crashCopies)
        } catch {
            throw StartupError("\(error)")
        }
        var crashes = 0
        for r in suspects.recover() {
            let what = "queue=\(r.record.queue) from=<\(r.record.sender)> digest=\(r.record.digest)"
            if r.crashed {
                crashes += 1
                let company = r.alone ? "scanned alone" : "not scanned alone"
                let next =
                    r.record.state == .convicted
                    ? "convicted: the message gets on-scan-crash (\(config.onScanCrash.rawValue)) without a scan from now on"
                    : "suspect: scanned alone when it comes again"
                logger.error(
                    "scan crash: the previous process crashed scanning \(what) (\(company); crash \(r.record.crashes) of this message): \(next)"
                )
            } else {
                logger.warning(
                    "the previous process ended while \(what) was being scanned (not a crash of that scan): suspect, scanned alone when it comes again"
                )
            }
        }
        stats.scanCrashes.store(crashes, ordering: .relaxed)
    }

    /// Installs the crash handler and gives it the listening sockets open now (call right after
    /// libmilter opened its socket, before any other service listens).
    func arm() throws {
        bw_crash_set_listeners(CrashGuard.listeningSockets(), 8)
        // Swift's crash backtracer holds the process about 30 s (measured in the daemon, whatever its
        // options: docs/benchmarks.md) before it ends: it runs only when SWIFT_BACKTRACE asks for it.
        let chain = getenv("SWIFT_BACKTRACE").map { String(cString: $0).contains("enable=yes") } ?? false
        let rc = bw_crash_install(chain ? 1 : 0)
        if rc != 0 { throw StartupError("cannot install the crash handler: \(String(cString: strerror(rc)))") }
    }

    /// The process's listening sockets (-1 padded to 8).
    static func listeningSockets() -> [Int32] {
        var out: [Int32] = []
        guard let dir = opendir("/proc/self/fd") else { return [-1, -1, -1, -1, -1, -1, -1, -1] }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let fd = Int32(name) else { continue }
            var value: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) == 0, value == 1 else { continue }
            out.append(fd)
        }
        return Array((out + [Int32](repeating: -1, count: 8)).prefix(8))
    }

    /// Runs `scan` (on the thread that holds scan slot `slot`) with its in-flight record written in the
    /// slot's record file and the crash handler pointed at it; the record is marked idle when the scan
    /// returns.
    func guarding<R>(slot: Int, digest: String?, queue: String, sender: String, alone: Bool, _ scan: () -> R) -> R {
        guard let digest, let record = slotRecord(slot),
            suspects.begin(record, digest: digest, queue: queue, sender: sender, alone: alone)
        else { return scan() }
        bw_crash_set_current(record.base)
        defer {
            bw_crash_set_current(nil)
            suspects.end(record)
        }
        return scan()
    }

    /// The record file of scan slot `slot`, opened on the slot's first scan and kept for the process's
    /// life (one a slot, whatever thread holds the slot: libmilter's session threads come and go).
    private func slotRecord(_ slot: Int) -> CrashSuspects.InFlight? {
        if let f = records.withLock({ $0[slot] }) { return f }
        guard let f = suspects.openRecord() else {
            if let n = recordFailures.tick() {
                logger.error(
                    "crash-directory \(suspects.directory): cannot write an in-flight record (\(FileWalk.errnoString())): \(n) scan(s) ran unguarded since the last line"
                )
            }
            return nil
        }
        // The slot is held by this thread alone: no other thread opens its record meanwhile.
        records.withLock { $0[slot] = f }
        return f
    }
}

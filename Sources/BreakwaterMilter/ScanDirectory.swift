import BreakwaterCore
import CProcessTuning
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where libclamav writes the parts it decodes while the daemon scans (issue 23): a private directory
/// in memory when `scan-temporary-directory` is unset and a tmpfs has room for what `workers` scans
/// can write under the engine limits (`ScanMemory`), else the configured directory (the spool
/// directory, or the key's value).
///
/// libclamav takes one temporary directory per engine. With the directory in memory, the daemon's
/// engines get the relative path ".", and each scanner thread, which owns its working directory
/// (`bw_thread_enter_directory`), enters the directory of the scan it runs: memory while the tmpfs has
/// room for one more scan, else the configured directory. A scan that could not write a temporary file
/// in memory (the tmpfs filled: libclamav then goes on without that part, and may call the message
/// clean) is run again in the configured directory.
final class ScanDirectory: @unchecked Sendable {
    /// The directory on disk (or the one the key names).
    let disk: String
    /// The private directory in memory, when in use.
    let memory: String?
    /// Bytes one scan can write (`ScanMemory.perScan`).
    let perScan: UInt64
    /// The start-up log line: which directory, and why.
    let summary: String
    private let diskFD: Int32
    private let memoryFD: Int32
    /// The processes scanning in the directory in memory, every scan worker's: a table in memory shared
    /// with the processes forked after it was made (the engine host and its workers), so that a
    /// worker's test for room counts the others' scans too, and a worker that died inside is forgotten
    /// (`forget`). Private to this process if it cannot be made.
    private let inMemory: UnsafeMutablePointer<Int32>

    private init(disk: String, diskFD: Int32, memory: String?, memoryFD: Int32, perScan: UInt64, summary: String) {
        self.disk = disk
        self.diskFD = diskFD
        self.memory = memory
        self.memoryFD = memoryFD
        self.perScan = perScan
        self.summary = summary
        if let shared = bw_scan_table() {
            inMemory = shared
        } else {
            inMemory = .allocate(capacity: Int(BW_SCAN_TABLE_CELLS))
            inMemory.initialize(repeating: 0, count: Int(BW_SCAN_TABLE_CELLS))
        }
    }

    static let tmpfsMagic = 0x0102_1994

    /// Chooses the directory (see the type's description). `disk` must exist and be writable (checked
    /// before).
    static func choose(config: Config) -> ScanDirectory {
        let disk = config.limits.temporaryDirectory ?? config.spoolDirectory
        let diskFD = open(disk, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let perScan = ScanMemory.perScan(limits: config.limits, maxMessageSize: config.maxMessageSize)
        let planned = ScanMemory.planned(config: config)
        func onDisk(_ why: String) -> ScanDirectory {
            ScanDirectory(
                disk: disk, diskFD: diskFD, memory: nil, memoryFD: -1, perScan: perScan,
                summary: "scan temporary files: \(disk) (\(why))")
        }
        if config.scanTemporaryDirectory != nil { return onDisk("scan-temporary-directory") }
        guard diskFD >= 0 else { return onDisk("cannot open it: \(FileWalk.errnoString())") }
        var tried: [String] = []
        let runtime = getenv("RUNTIME_DIRECTORY").map { String(cString: $0) }
        for base in ScanMemory.candidates(environment: runtime) {
            let probe = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard probe >= 0 else {
                tried.append("\(base): \(FileWalk.errnoString())")
                continue
            }
            var type = 0
            var free: UInt64 = 0
            let rc = bw_fs_info(probe, &type, &free)
            close(probe)
            guard rc == 0 else {
                tried.append("\(base): \(String(cString: strerror(rc)))")
                continue
            }
            guard type == tmpfsMagic else {
                tried.append("\(base): not a tmpfs")
                continue
            }
            guard free >= planned else {
                tried.append("\(base): \(free >> 20)M free")
                continue
            }
            var template = Array("\(base)/breakwater-scan.XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                tried.append("\(base): \(FileWalk.errnoString())")
                continue
            }
            let path = String(cString: made)
            let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0, selfTest(memoryFD: fd) else {
                tried.append("\(base): a scanner thread cannot enter a directory of its own")
                if fd >= 0 { close(fd) }
                rmdir(path)
                continue
            }
            removeAtExit(path)
            return ScanDirectory(
                disk: disk, diskFD: diskFD, memory: path, memoryFD: fd, perScan: perScan,
                summary:
                    "scan temporary files: in memory, \(path) (tmpfs, \(free >> 20)M free; room planned for \(ByteSize.format(planned)): \(config.workers) scans x (max-scan-size + max-message-size)); \(disk) when it is full"
            )
        }
        return onDisk(
            "no tmpfs with \(ByteSize.format(planned)) free for \(config.workers) scans: \(tried.joined(separator: "; "))"
        )
    }

    /// The limits for the daemon's engines: the temporary directory "." (each scanner thread's own
    /// working directory) when the directory in memory is in use.
    func engineLimits(_ limits: EngineLimits) -> EngineLimits {
        var l = limits
        l.temporaryDirectory = memory == nil ? disk : "."
        return l
    }

    /// Whether a scanner thread can take a working directory of its own here (unshare(CLONE_FS) may be
    /// refused by a seccomp filter): checked once, on a thread of a child process, so that the daemon
    /// starts no thread before its first engine is loaded.
    private static func selfTest(memoryFD: Int32) -> Bool {
        bw_scan_directory_self_test(memoryFD) == 1
    }

    /// Where a scan ran.
    enum Place: Equatable {
        case memory
        /// On disk: no directory in memory, or its tmpfs had no room for one more scan.
        case disk
        /// On disk, after the scan in memory could not write a temporary file or failed (libclamav's
        /// message).
        case diskAfterFailure(String)
    }

    /// Runs `scan` on this (scanner) thread in the directory in memory when it is in use and its
    /// tmpfs has room for one more scan beside those running there, else in the directory on disk;
    /// runs it again on disk (`scan(true)`) when it could not write a temporary file in memory, or
    /// failed there. A thread that cannot enter a directory gets an error result.
    func run(_ scan: (_ again: Bool) -> ScanResult) -> (result: ScanResult, place: Place) {
        guard memory != nil else { return (scan(false), .disk) }
        var failure: String?
        if let cell = enterMemory() {
            let entered = bw_thread_enter_directory(memoryFD)
            let result = entered == 0 ? scan(false) : nil
            bw_scan_table_leave(inMemory, cell)
            if let result {
                // A scan error in memory may be the tmpfs too (libclamav cannot create the scan's own
                // directory there): it gets its second chance on disk as well.
                guard let f = result.temporaryFileFailure ?? result.errorMessage else { return (result, .memory) }
                failure = f
            }
        }
        let rc = bw_thread_enter_directory(diskFD)
        guard rc == 0 else {
            let error = ScanResult(
                finding: .error("cannot enter \(disk): \(String(cString: strerror(rc)))"), seconds: 0, bytes: 0)
            return (error, .disk)
        }
        let result = scan(failure != nil)
        return (result, failure.map { .diskAfterFailure($0) } ?? .disk)
    }

    /// Takes a cell of the table when the tmpfs has room for one more scan beside those running there
    /// (in any worker): its index, else nil.
    private func enterMemory() -> Int32? {
        var type = 0
        var free: UInt64 = 0
        guard bw_fs_info(memoryFD, &type, &free) == 0 else { return nil }
        let cell = bw_scan_table_enter(inMemory, getpid())
        guard cell >= 0 else { return nil }
        // Counted with this scan: two workers that enter at once each see the other.
        let running = UInt64(max(1, bw_scan_table_count(inMemory)))
        if free / running >= perScan { return cell }
        bw_scan_table_leave(inMemory, cell)
        return nil
    }

    /// A scan worker that ended (it may have died inside the directory in memory): its scan no longer
    /// counts.
    func forget(pid: Int32) { bw_scan_table_forget(inMemory, pid) }

    /// Removes the directory in memory (at the daemon's end; libclamav removes each scan's files).
    func remove() {
        guard let memory else { return }
        rmdir(memory)
    }

    /// The directory in memory, removed when the process exits (a start that fails after it was made
    /// must not leave it behind).
    nonisolated(unsafe) private static var made: [UInt8] = []

    private static func removeAtExit(_ path: String) {
        made = Array(path.utf8) + [0]
        atexit {
            ScanDirectory.made.withUnsafeBufferPointer { p in
                p.baseAddress.map { $0.withMemoryRebound(to: CChar.self, capacity: p.count) { _ = rmdir($0) } }
            }
        }
    }
}

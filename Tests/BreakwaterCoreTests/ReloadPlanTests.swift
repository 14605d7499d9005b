import Synchronization
import XCTest

@testable import BreakwaterCore

/// `reload-mode auto`'s inputs and choice, and the admission pause a blocking reload uses.
final class ReloadPlanTests: XCTestCase {
    private func tempRoot() throws -> String {
        let dir = NSTemporaryDirectory() + "bw-cgroup-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    private func write(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testCgroupPathsOfV1AndV2() {
        let v1 = "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpuset:/\n0::/\n"
        XCTAssertEqual(ProcessMemory.cgroupPaths(v1).v1, "/process_api/abc")
        XCTAssertEqual(ProcessMemory.cgroupPaths(v1).v2, "/")
        let combined = "5:cpu,memory:/x/y\n"
        XCTAssertEqual(ProcessMemory.cgroupPaths(combined).v1, "/x/y")
        let v2 = "0::/system.slice/breakwater.service\n"
        XCTAssertNil(ProcessMemory.cgroupPaths(v2).v1)
        XCTAssertEqual(ProcessMemory.cgroupPaths(v2).v2, "/system.slice/breakwater.service")
    }

    func testCgroupV1LimitPrefersTheHierarchicalOne() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/memory/bw/test"
        try write(dir + "/memory.limit_in_bytes", "9223372036854771712\n")
        try write(dir + "/memory.stat", "cache 0\nhierarchical_memory_limit 314572800\nhierarchical_memsw_limit 1\n")
        try write(dir + "/memory.usage_in_bytes", "1000\n")
        let l = ProcessMemory.cgroupLimit(procCgroup: "4:memory:/bw/test\n0::/\n", root: root)
        XCTAssertEqual(l?.bytes, 300 << 20)
        XCTAssertEqual(l?.charged, 1000)
        XCTAssertEqual(l?.isCgroup, true)
        XCTAssertTrue(l?.source.contains("cgroup v1") == true, l?.source ?? "")
        // No limit anywhere: none.
        try write(dir + "/memory.stat", "hierarchical_memory_limit 9223372036854771712\n")
        XCTAssertNil(ProcessMemory.cgroupLimit(procCgroup: "4:memory:/bw/test\n", root: root))
        try write(dir + "/memory.limit_in_bytes", "209715200\n")
        XCTAssertEqual(ProcessMemory.cgroupLimit(procCgroup: "4:memory:/bw/test\n", root: root)?.bytes, 200 << 20)
    }

    func testCgroupV2TakesTheLowestMemoryMaxUpTheTree() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write(root + "/system.slice/memory.max", "1073741824\n")
        try write(root + "/system.slice/bw.service/memory.max", "max\n")
        try write(root + "/system.slice/bw.service/memory.current", "5000\n")
        let l = ProcessMemory.cgroupLimit(procCgroup: "0::/system.slice/bw.service\n", root: root)
        XCTAssertEqual(l?.bytes, 1 << 30)
        XCTAssertEqual(l?.charged, 5000)
        try write(root + "/system.slice/bw.service/memory.max", "536870912\n")
        XCTAssertEqual(
            ProcessMemory.cgroupLimit(procCgroup: "0::/system.slice/bw.service\n", root: root)?.bytes, 1 << 29)
        try write(root + "/system.slice/memory.max", "max\n")
        try write(root + "/system.slice/bw.service/memory.max", "max\n")
        XCTAssertNil(ProcessMemory.cgroupLimit(procCgroup: "0::/system.slice/bw.service\n", root: root))
    }

    func testStatusFields() {
        let text = "Name:\tx\nVmHWM:\t  164096 kB\nVmRSS:\t  100 kB\n"
        XCTAssertEqual(ProcessMemory.kilobytes("VmRSS", in: text), 100 * 1024)
        XCTAssertEqual(ProcessMemory.kilobytes("VmHWM", in: text), 164096 * 1024)
        XCTAssertNil(ProcessMemory.kilobytes("VmSwap", in: text))
        XCTAssertNotNil(ProcessMemory.rss)
        XCTAssertNotNil(ProcessMemory.peak)
    }

    func testAutoChoosesConcurrentOnlyWithRoomForASecondEngine() {
        let mb: UInt64 = 1 << 20
        let cap = MemoryLimit(bytes: 1400 * mb, source: "cgroup v1 x", isCgroup: true)
        // 943M steady + 400M budgets + 920M engine > 1.4G: blocking.
        var p = ReloadPlan.decide(mode: .auto, limit: cap, rss: 943 * mb, engineBytes: 920 * mb, headroom: 400 * mb)
        XCTAssertFalse(p.concurrent)
        XCTAssertTrue(p.reason.contains("over the limit"), p.reason)
        // A small engine fits.
        p = ReloadPlan.decide(mode: .auto, limit: cap, rss: 100 * mb, engineBytes: 50 * mb, headroom: 400 * mb)
        XCTAssertTrue(p.concurrent, p.reason)
        // MemAvailable excludes what the process holds: only budgets and the engine count.
        let avail = MemoryLimit(bytes: 1000 * mb, source: "MemAvailable", isCgroup: false)
        XCTAssertTrue(
            ReloadPlan.decide(mode: .auto, limit: avail, rss: 943 * mb, engineBytes: 500 * mb, headroom: 400 * mb)
                .concurrent)
        XCTAssertFalse(
            ReloadPlan.decide(mode: .auto, limit: avail, rss: 943 * mb, engineBytes: 700 * mb, headroom: 400 * mb)
                .concurrent)
        // Not measured or no limit: blocking. The fixed modes ignore the figures.
        XCTAssertFalse(ReloadPlan.decide(mode: .auto, limit: cap, rss: 1, engineBytes: nil, headroom: 0).concurrent)
        XCTAssertFalse(ReloadPlan.decide(mode: .auto, limit: nil, rss: 1, engineBytes: 1, headroom: 0).concurrent)
        XCTAssertTrue(
            ReloadPlan.decide(mode: .concurrent, limit: cap, rss: 0, engineBytes: .max, headroom: 0).concurrent)
        XCTAssertFalse(ReloadPlan.decide(mode: .blocking, limit: nil, rss: 0, engineBytes: 0, headroom: 0).concurrent)
    }

    func testHeadroomIsTheUnusedBudgetAndIdleSlots() {
        var c = Config()
        c.workers = 4
        c.memoryBudget = 100 << 20
        c.maxMessageSize = 10 << 20
        XCTAssertEqual(MemoryPlan.headroom(c, buffered: 40 << 20, busySlots: 1), (60 << 20) + 3 * (30 << 20))
        XCTAssertEqual(MemoryPlan.headroom(c, buffered: 200 << 20, busySlots: 9), 0)
    }

    func testReloadModeKey() throws {
        XCTAssertEqual(Config().ops.reloadMode, .auto)
        var c = Config()
        try c.apply(fileText: "reload-mode = blocking\n", source: "t.conf")
        XCTAssertEqual(c.ops.reloadMode, .blocking)
        XCTAssertThrowsError(try c.apply(fileText: "reload-mode = sometimes\n", source: "t.conf")) { e in
            XCTAssertTrue("\(e)".contains("t.conf:1"), "\(e)")
            XCTAssertTrue("\(e)".contains("auto, concurrent or blocking"), "\(e)")
        }
    }

    /// A paused line starts no scan: messages wait (kept alive) and run once resumed; past max-wait
    /// they time out; `pauseScans` returns only once the running scan has finished.
    func testPauseHoldsTheLineAndWaitsForRunningScans() {
        let a = Admission(slots: 1, maxWaiting: 4, maxWait: 10, memoryBudget: 1 << 20)
        let gate = Atomic<Bool>(false)
        let running = PosixThread.start { _ = a.hold { _ in while !gate.load(ordering: .relaxed) { usleep(1000) } } }
        var spins = 0
        while a.snapshot.busy < 1 && spins < 2500 {
            usleep(2000)
            spins += 1
        }
        let paused = Atomic<Bool>(false)
        let pauser = PosixThread.start {
            a.pauseScans()
            paused.store(true, ordering: .relaxed)
        }
        usleep(100_000)
        XCTAssertFalse(paused.load(ordering: .relaxed), "pause waits for the running scan")
        gate.store(true, ordering: .relaxed)
        pauser.join()
        running.join()
        XCTAssertTrue(paused.load(ordering: .relaxed))
        let ran = Atomic<Int>(0)
        let keepAlives = Atomic<Int>(0)
        let waiter = PosixThread.start {
            let r = a.hold(
                { _ in ran.add(1, ordering: .relaxed) }, keepAlive: { keepAlives.add(1, ordering: .relaxed) })
            if case .scanned = r {} else { XCTFail("\(r)") }
        }
        usleep(1_300_000)
        XCTAssertEqual(ran.load(ordering: .relaxed), 0, "no scan starts while paused")
        XCTAssertGreaterThanOrEqual(keepAlives.load(ordering: .relaxed), 1, "the waiting message is kept alive")
        a.resumeScans()
        waiter.join()
        XCTAssertEqual(ran.load(ordering: .relaxed), 1)
        // Past max-wait while paused: timed out, not run.
        let short = Admission(slots: 1, maxWaiting: 4, maxWait: 0.3, memoryBudget: 1 << 20)
        if case .scanned = short.hold({ _ in }) {} else { XCTFail("a free slot: held") }
        short.pauseScans()
        var late = false
        XCTAssertEqual(short.hold({ _ in late = true }), .timedOut)
        XCTAssertFalse(late)
        short.resumeScans()
    }
}

/// `breakwater check-config`'s memory plan: its parts, the unit's MemoryMax= and tmpfs detection.
final class MemoryPlanTests: XCTestCase {
    func testMemoryMaxOfAUnitFile() {
        let unit = "[Unit]\nMemoryMax=1G\n[Service]\nUser=x\nMemoryMax=2G\n# MemoryMax=9G\n"
        XCTAssertEqual(MemoryPlan.memoryMax(unitText: unit, physical: 0), .some(.some(2 << 30)))
        XCTAssertEqual(MemoryPlan.memoryMax(unitText: "[Service]\nMemoryMax=512M\n", physical: 0), .some(512 << 20))
        XCTAssertEqual(MemoryPlan.memoryMax(unitText: "[Service]\nMemoryMax=1.5G\n", physical: 0), .some(3 << 29))
        XCTAssertEqual(MemoryPlan.memoryMax(unitText: "[Service]\nMemoryMax=50%\n", physical: 4 << 30), .some(2 << 30))
        XCTAssertEqual(MemoryPlan.memoryMax(unitText: "[Service]\nMemoryMax=infinity\n", physical: 0), .some(nil))
        XCTAssertNil(MemoryPlan.memoryMax(unitText: "[Service]\nUser=x\n", physical: 0) as UInt64??)
        XCTAssertNil(MemoryPlan.memoryMax(unitText: "[Service]\nMemoryMax=2G\nMemoryMax=\n", physical: 0) as UInt64??)
    }

    func testFileSystemTypeTakesTheLongestMountPoint() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n/dev/sdb /var/lib ext4 rw 0 0\n"
        XCTAssertEqual(MemoryPlan.fileSystemType(of: "/dev/shm/spool", mounts: mounts), "tmpfs")
        XCTAssertEqual(MemoryPlan.fileSystemType(of: "/dev/shmx", mounts: mounts), "ext4")
        XCTAssertEqual(MemoryPlan.fileSystemType(of: "/var/lib/breakwater", mounts: mounts), "ext4")
        XCTAssertTrue(MemoryPlan.isInMemory("/dev/shm") || !FileManager.default.fileExists(atPath: "/dev/shm"))
    }

    func testPartsCountASecondEngineOnlyWhenConcurrent() {
        var c = Config()
        c.workers = 2
        c.maxMessageSize = 25 << 20
        let names = { (c: Config, spool: Bool) in
            MemoryPlan.parts(
                c, engineBytes: 1 << 30, engineNote: "", spoolInMemory: spool, scanTemporaryInMemory: false)
        }
        XCTAssertFalse(names(c, false).contains { $0.name == "second engine" }, "auto")
        c.ops.reloadMode = .concurrent
        let parts = names(c, true)
        XCTAssertEqual(parts.first { $0.name == "second engine" }?.bytes, 1 << 30)
        XCTAssertEqual(parts.first { $0.name == "spool" }?.bytes, c.spoolBudget)
        XCTAssertEqual(parts.first { $0.name == "scan working memory" }?.bytes, 150 << 20)
        XCTAssertEqual(MemoryPlan.estimateEngine(plainBytes: 100, compressedBytes: 10), 420)
    }

    func testPartsCountTheScanFilesInMemoryAsScanMemoryPlansThem() {
        var c = Config()
        c.workers = 2
        c.maxMessageSize = 25 << 20
        c.limits.maxScanSize = 400 << 20
        let inMemory = MemoryPlan.parts(
            c, engineBytes: 1 << 20, engineNote: "", spoolInMemory: false, scanTemporaryInMemory: true)
        let part = inMemory.first { $0.name == "scan temporary files" }
        XCTAssertEqual(part?.bytes, ScanMemory.planned(config: c))
        XCTAssertEqual(part?.bytes, 850 << 20, "workers x (max-scan-size + max-message-size)")
        XCTAssertTrue(part?.note.contains("in memory when a tmpfs has room") ?? false, part?.note ?? "")
        let onDisk = MemoryPlan.parts(
            c, engineBytes: 1 << 20, engineNote: "", spoolInMemory: false, scanTemporaryInMemory: false)
        XCTAssertFalse(onDisk.contains { $0.name == "scan temporary files" })
    }
}

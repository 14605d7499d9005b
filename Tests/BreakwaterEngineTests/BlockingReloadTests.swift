import BreakwaterCore
import Foundation
import Synchronization
import XCTest

@testable import BreakwaterEngine

/// Blocking reloads: scans paused while the old engine is freed and the new one built; a set that does
/// not load is replaced by the set in service, built again from its verified copy.
final class BlockingReloadTests: XCTestCase {
    private func scanFinds(_ holder: EngineHolder, _ text: String) -> [String] {
        guard let engine = holder.current else { return ["<no engine>"] }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { engine.scan($0) }.detections.map(\.name)
    }

    func testBlockingReloadFallsBackToTheVerifiedCopy() throws {
        let dir = try Fixtures.tempDirectory(["a.ndb": "Test.Alpha:0:*:616c706861746f6b656e\n"])  // "alphatoken"
        let spool = try Fixtures.tempDirectory([:])
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: spool)
        }
        let snapshots = try SignatureSnapshots(parent: spool)
        let events = Mutex<[String]>([])
        let pauses = Mutex<[String]>([])
        let holder = EngineHolder(
            directories: { [dir] }, build: { dirs, progress in try ClamEngine(directories: dirs, progress: progress) },
            snapshots: snapshots, mode: .blocking, onEvent: { m, _ in events.withLock { $0.append(m) } })
        holder.attach(
            EngineHolder.Daemon(
                pauseScans: { pauses.withLock { $0.append("pause") } },
                resumeScans: { pauses.withLock { $0.append("resume") } }, headroom: { 0 }))
        try holder.loadInitial()
        XCTAssertNotNil(holder.status.engineBytes)
        XCTAssertEqual(scanFinds(holder, "x alphatoken y"), ["Test.Alpha"])

        // A good change: blocking, paused and resumed once, generation 2.
        try "Test.Beta:0:*:62657461746f6b656e\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        XCTAssertNil(holder.reloadOnce())
        XCTAssertEqual(pauses.withLock { $0 }, ["pause", "resume"])
        XCTAssertEqual(holder.status.generation, 2)
        XCTAssertEqual(holder.status.lastMode, "blocking")
        XCTAssertNotNil(holder.status.lastPeakBytes)
        XCTAssertEqual(scanFinds(holder, "x betatoken y"), ["Test.Beta"])

        // A broken file: the old engine was freed first; generation 2 is built again from its copy,
        // even though the directory no longer holds it.
        try "Test.Beta:0:*:zz\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        let error = holder.reloadOnce()
        XCTAssertNotNil(error)
        XCTAssertTrue(error?.contains(dir + "/a.ndb") == true, error ?? "")
        XCTAssertFalse(error?.contains(snapshots.root) == true, "the copy's path is not shown: \(error ?? "")")
        let s = holder.status
        XCTAssertFalse(s.lastSucceeded)
        XCTAssertTrue(s.serving)
        XCTAssertEqual(s.generation, 2)
        XCTAssertEqual(scanFinds(holder, "x betatoken y"), ["Test.Beta"])
        XCTAssertTrue(events.withLock { $0.contains { $0.contains("built again from its verified copy") } })
        XCTAssertEqual(pauses.withLock { $0 }, ["pause", "resume", "pause", "resume"])

        // Only the copy in service remains.
        holder.waitForCopy()
        let sets = try FileManager.default.contentsOfDirectory(atPath: snapshots.root)
        XCTAssertEqual(sets.count, 1, "\(sets)")
        holder.removeCopies()
        XCTAssertFalse(FileManager.default.fileExists(atPath: snapshots.root))
    }

    func testAutoWithoutRoomBlocksAndWithRoomRunsConcurrently() throws {
        let dir = try Fixtures.tempDirectory(["a.ndb": "Test.Alpha:0:*:616c706861746f6b656e\n"])
        let spool = try Fixtures.tempDirectory([:])
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: spool)
        }
        let headroom = Atomic<UInt64>(0)
        let holder = EngineHolder(
            directories: { [dir] }, build: { dirs, _ in try ClamEngine(directories: dirs) },
            snapshots: try SignatureSnapshots(parent: spool), mode: .auto, onEvent: { _, _ in })
        holder.attach(
            EngineHolder.Daemon(pauseScans: {}, resumeScans: {}, headroom: { headroom.load(ordering: .relaxed) }))
        try holder.loadInitial()
        XCTAssertNil(holder.reloadOnce())
        XCTAssertEqual(holder.status.lastMode, "concurrent", holder.status.lastModeReason ?? "")
        headroom.store(1 << 62, ordering: .relaxed)  // budgets larger than any machine
        XCTAssertNil(holder.reloadOnce())
        XCTAssertEqual(holder.status.lastMode, "blocking", holder.status.lastModeReason ?? "")
        XCTAssertTrue(holder.status.lastModeReason?.contains("auto:") == true)
        holder.removeCopies()
    }

    func testSnapshotsCopyTheFilesAndRemoveStaleOnes() throws {
        let dir = try Fixtures.tempDirectory(["a.ndb": "Test.A:0:*:6161616161\n", "notes.txt": "not a database\n"])
        let spool = try Fixtures.tempDirectory([:])
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: spool)
        }
        // A copy left by a daemon that no longer runs (PID 999999999 cannot exist).
        let stale = spool + "/.breakwater-signatures-999999999.abcdefgh"
        try FileManager.default.createDirectory(atPath: stale + "/set-1/0", withIntermediateDirectories: true)
        let s = try SignatureSnapshots(parent: spool)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        let set = try s.stage([dir])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: set.directories[0]), ["a.ndb"])
        XCTAssertEqual(set.bytes, 22)
        XCTAssertEqual(set.copied, 1)
        // Copied, not linked: the file's link count and ctime (which the self-check watch compares)
        // stay as they were.
        var st = stat()
        XCTAssertEqual(stat(dir + "/a.ndb", &st), 0)
        XCTAssertEqual(st.st_nlink, 1)
        // A file replaced by rename afterwards: the copy keeps what was staged.
        try "Test.B:0:*:6262626262\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        XCTAssertEqual(
            try String(contentsOfFile: set.directories[0] + "/a.ndb", encoding: .utf8), "Test.A:0:*:6161616161\n")
        // Staged with the sources' stamps and promoted, an unchanged file is linked (not copied) into
        // the next set; a changed one is copied.
        try "Test.C:0:*:6363636363\n".write(toFile: dir + "/c.ndb", atomically: true, encoding: .utf8)
        let first = try s.stage([dir], sources: SignatureDirectoryState.capture([dir]))
        s.promote(first)
        XCTAssertEqual(first.copied, 2)
        try "Test.B:0:*:6464646464\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        let second = try s.stage([dir], sources: SignatureDirectoryState.capture([dir]))
        XCTAssertEqual(second.copied, 1, "c.ndb is unchanged: linked to the previous copy")
        XCTAssertEqual(
            try String(contentsOfFile: second.directories[0] + "/a.ndb", encoding: .utf8), "Test.B:0:*:6464646464\n")
        XCTAssertEqual(
            try String(contentsOfFile: second.directories[0] + "/c.ndb", encoding: .utf8), "Test.C:0:*:6363636363\n")
        XCTAssertEqual(stat(dir + "/c.ndb", &st), 0)
        XCTAssertEqual(st.st_nlink, 1, "the source is never linked")
        let mode = try FileManager.default.attributesOfItem(atPath: s.root)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o700)
        s.removeAll()
    }
}

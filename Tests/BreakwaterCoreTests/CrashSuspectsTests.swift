import Synchronization
import XCTest

@testable import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

final class CrashSuspectsTests: XCTestCase {
    private var dir = ""

    override func setUp() {
        var t = Array("/tmp/bw-crash-XXXXXX".utf8CString)
        dir = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDown() {
        _ = dir.withCString { system("rm -rf '\(String(cString: $0))'") }
    }

    private func digest(_ n: Int) -> String { String(repeating: String(n % 10), count: 64) }

    /// A record as the previous process leaves it: `begin`, never `end` (the process died), with the
    /// crash handler's mark when `crashed`.
    private func leaveRecord(_ s: CrashSuspects, _ d: String, alone: Bool, crashed: Bool) {
        let f = s.openRecord()!
        XCTAssertTrue(s.begin(f, digest: d, queue: "Q1", sender: "a b@example.org", alone: alone))
        if crashed { f.base.storeBytes(of: UInt8(ascii: "C"), as: UInt8.self) }
    }

    private func restart() throws -> (CrashSuspects, [CrashSuspects.Recovered]) {
        let s = try CrashSuspects(directory: dir, maxCopies: 2)
        return (s, s.recover())
    }

    func testACrashWithOthersInFlightMakesASuspectAndTheOthersCountNoCrash() throws {
        let s = try CrashSuspects(directory: dir)
        leaveRecord(s, digest(1), alone: false, crashed: true)
        leaveRecord(s, digest(2), alone: false, crashed: false)
        let (t, found) = try restart()
        XCTAssertEqual(found.count, 2)
        XCTAssertEqual(t.record(digest(1))?.state, .suspect)
        XCTAssertEqual(t.record(digest(1))?.crashes, 1)
        XCTAssertEqual(t.record(digest(2))?.state, .suspect)
        XCTAssertEqual(t.record(digest(2))?.crashes, 0)
        // The sender is kept as a log token.
        XCTAssertEqual(t.record(digest(1))?.sender, "a\\x20b@example.org")
        // The records are gone once read.
        XCTAssertTrue(try restart().1.isEmpty)
    }

    func testAScanThatEndedLeavesNothingBehind() throws {
        let s = try CrashSuspects(directory: dir)
        let f = s.openRecord()!
        for i in 0..<3 {
            XCTAssertTrue(s.begin(f, digest: digest(i), queue: "Q", sender: "s", alone: false))
            s.end(f)
        }
        _ = s.openRecord()!  // a thread that never scanned
        let (t, found) = try restart()
        XCTAssertTrue(found.isEmpty)
        XCTAssertTrue(t.records.isEmpty)
        // The files of the previous process are gone.
        XCTAssertEqual(try restart().1.count, 0)
        XCTAssertNil(
            opendir(dir).flatMap { d -> String? in
                defer { closedir(d) }
                while let e = readdir(d) {
                    let n = withUnsafeBytes(of: e.pointee.d_name) {
                        String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    if n.hasPrefix("inflight-") { return n }
                }
                return nil
            })
    }

    func testOnlyACrashWhileAloneOrASecondCrashConvicts() throws {
        var (s, _) = try restart()
        leaveRecord(s, digest(1), alone: true, crashed: true)
        leaveRecord(s, digest(2), alone: false, crashed: true)
        (s, _) = try restart()
        XCTAssertEqual(s.record(digest(1))?.state, .convicted)
        XCTAssertEqual(s.record(digest(2))?.state, .suspect)
        // Killed (no mark) while scanned alone: still a suspect, no crash counted.
        leaveRecord(s, digest(2), alone: true, crashed: false)
        (s, _) = try restart()
        XCTAssertEqual(s.record(digest(2))?.state, .suspect)
        XCTAssertEqual(s.record(digest(2))?.crashes, 1)
        // Passed alone: cleared, and its crash count stays: a second crash in company convicts.
        s.passedAlone(digest(2))
        (s, _) = try restart()
        XCTAssertEqual(s.record(digest(2))?.state, .cleared)
        leaveRecord(s, digest(2), alone: false, crashed: true)
        (s, _) = try restart()
        XCTAssertEqual(s.record(digest(2))?.state, .convicted)
        XCTAssertEqual(s.record(digest(2))?.crashes, 2)
    }

    func testAnInnocentKilledManyTimesIsNeverConvicted() throws {
        var (s, _) = try restart()
        for _ in 0..<5 {
            leaveRecord(s, digest(3), alone: false, crashed: false)
            (s, _) = try restart()
            leaveRecord(s, digest(3), alone: true, crashed: false)
            (s, _) = try restart()
        }
        XCTAssertEqual(s.record(digest(3))?.state, .suspect)
        XCTAssertEqual(s.record(digest(3))?.crashes, 0)
    }

    func testExpiryAndBound() throws {
        let s = try CrashSuspects(directory: dir, maxRecords: 3, expirySeconds: 100)
        for i in 0..<5 { leaveRecord(s, digest(i), alone: false, crashed: false) }
        _ = s.recover(now: 1000)
        XCTAssertEqual(s.records.count, 3)
        // A convicted message seen again is kept longer.
        let kept = s.records.map(\.digest).sorted()[0]
        s.seen(kept, now: 1090)
        // 100 s after they were last seen the records have expired.
        let t = try CrashSuspects(directory: dir, maxRecords: 3, expirySeconds: 100)
        _ = t.recover(now: 1100)
        XCTAssertEqual(t.records.map(\.digest), [kept])
        _ = t.recover(now: 1190)
        XCTAssertTrue(t.records.isEmpty)
    }

    func testBrokenFilesAreIgnored() throws {
        let table = "\(digest(1)) 1 suspect 5 Q S\nnot a record\n\(digest(2)) x convicted 5 Q S\nZZ 1 suspect 5 Q S\n"
        let bad = "garbage\u{1b}[31m"
        for (name, text) in [("suspects", table), ("inflight-1-1", bad), ("inflight-1-2", "C alone=1 digest=short\n")] {
            let fd = open(dir + "/" + name, O_WRONLY | O_CREAT, 0o600)
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        let s = try CrashSuspects(directory: dir)
        XCTAssertTrue(s.recover(now: 10).isEmpty)
        XCTAssertEqual(s.records.map(\.digest), [digest(1)])
    }

    func testCopiesAreBoundedAndPrivate() throws {
        let s = try CrashSuspects(directory: dir, maxCopies: 2)
        let put: (Int32) -> Bool = { fd in write(fd, "x", 1) == 1 }
        let first = s.keepCopy(digest: digest(1), write: put)
        XCTAssertNotNil(first)
        XCTAssertNil(s.keepCopy(digest: digest(1), write: put))  // this one is there already
        XCTAssertNotNil(s.keepCopy(digest: digest(2), write: put))
        XCTAssertNil(s.keepCopy(digest: digest(3), write: put))  // bound reached
        var st = stat()
        XCTAssertEqual(stat(first!, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let off = try CrashSuspects(directory: dir + "/off", maxCopies: 0)
        XCTAssertNil(off.keepCopy(digest: digest(1), write: put))
    }

    func testAScanAloneNeverOverlapsAnother() {
        let a = Admission(slots: 2, maxWaiting: 50, maxWait: 20, memoryBudget: 1 << 20)
        let running = Atomic<Int>(0)
        let overlapped = Atomic<Int>(0)
        let alonePeak = Atomic<Int>(0)
        let threads = (0..<24).map { i in
            PosixThread.start {
                let alone = i % 6 == 0
                _ = a.hold(alone: alone) { _ in
                    let n = running.add(1, ordering: .relaxed).newValue
                    if alone && n > 1 { overlapped.add(1, ordering: .relaxed) }
                    usleep(3000)
                    if alone { alonePeak.store(max(alonePeak.load(ordering: .relaxed), n), ordering: .relaxed) }
                    if !alone && running.load(ordering: .relaxed) > 2 { overlapped.add(1, ordering: .relaxed) }
                    running.subtract(1, ordering: .relaxed)
                }
            }
        }
        for t in threads { t.join() }
        XCTAssertEqual(overlapped.load(ordering: .relaxed), 0)
        XCTAssertEqual(alonePeak.load(ordering: .relaxed), 1)
    }

    func testOnScanCrashDecisions() throws {
        var c = Config()
        XCTAssertEqual(Policy(config: c).scanCrash().reply?.code, "550")
        XCTAssertEqual(Policy(config: c).scanCrash().reply?.status, "5.7.0")
        XCTAssertTrue(Policy(config: c).scanCrash().reply!.text.contains("could not be scanned safely"))
        c.onScanCrash = .tempfail
        XCTAssertEqual(Policy(config: c).scanCrash().reply?.code, "451")
        c.onScanCrash = .accept
        XCTAssertEqual(Policy(config: c).scanCrash().headers.first?.0, "X-Breakwater-Not-Scanned")
        XCTAssertEqual(Policy(config: c).scanCrash().verdict, .crash)
        let empty = dir + "/empty.conf"
        close(open(empty, O_WRONLY | O_CREAT, 0o600))
        let parsed = try Config.resolve(path: empty, flags: [("on-scan-crash", "quarantine"), ("crash-copies", "0")])
        XCTAssertEqual(parsed.onScanCrash, .quarantine)
        XCTAssertEqual(parsed.crashCopies, 0)
        XCTAssertThrowsError(try Config.resolve(path: empty, flags: [("on-scan-crash", "discard")]))
        XCTAssertThrowsError(try Config.resolve(path: empty, flags: [("crash-directory", "rel")]))
        XCTAssertEqual(Config().crashDirectory, Config().spoolDirectory + "/crash")
    }
}

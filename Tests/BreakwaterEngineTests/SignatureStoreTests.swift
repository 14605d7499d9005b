import BreakwaterCore
import Foundation
import Synchronization
import XCTest

@testable import BreakwaterEngine

/// `breakwater signatures add|remove` on a temporary ops directory, with the real libclamav compiling
/// every change and scanning real messages with the result.
final class SignatureStoreTests: XCTestCase {
    var ops = ""

    override func setUpWithError() throws {
        ops = try Fixtures.tempDirectory([:])
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: ops)
    }

    func store(prefix: String = "Breakwater.Local.") -> SignatureStore {
        SignatureStore(directory: ops, prefix: prefix, otherDirectories: [Fixtures.signatures])
    }

    /// The engine the daemon would load now: the shipped set plus the ops directory.
    func engine() throws -> ClamEngine {
        try ClamEngine(
            directories: SignatureLocations.hasDatabaseFiles(ops) ? [Fixtures.signatures, ops] : [Fixtures.signatures])
    }

    func textMessage(_ body: String, encoding: String = "7bit") -> [UInt8] {
        var m = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
        m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: \(encoding)\r\n\r\n"
        m += encoding == "base64" ? Mime.base64(Array(body.utf8)) : body + "\r\n"
        return Array(m.utf8)
    }

    func files() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: ops)) ?? []).sorted()
    }

    func contents(_ name: String) -> String? {
        try? String(contentsOfFile: ops + "/" + name, encoding: .utf8)
    }

    // MARK: what the lines match

    func testTextIgnoringCaseMatchesAcrossLineBreaksAndEncodings() throws {
        let c = try store().add(
            name: "Breakwater.Local.Spam.Cooper", pattern: .text("mini cooper", ignoreCase: true),
            comment: "wave 1", author: "ops")
        XCTAssertEqual(c.file, ops + "/breakwater-local.ldb")
        XCTAssertGreaterThan(c.signatures, 1, "the whole set was compiled")
        let e = try engine()
        for m in [
            textMessage("win a MINI Cooper today"), textMessage("win a mini\r\n  COOPER today"),
            textMessage("you won a Mini Cooper", encoding: "base64"),
        ] {
            XCTAssertTrue(
                e.scan(bytes: m).names.contains("Breakwater.Local.Spam.Cooper"), String(decoding: m, as: UTF8.self))
        }
        XCTAssertFalse(e.scan(bytes: textMessage("a mini and a cooper")).names.contains("Breakwater.Local.Spam.Cooper"))
        let list = SignatureCatalog.entries(in: [ops])
        XCTAssertEqual(list.map(\.name), ["Breakwater.Local.Spam.Cooper"])
        XCTAssertEqual(list.first?.note?.comment, "wave 1")
        XCTAssertEqual(list.first?.note?.author, "ops")
        XCTAssertEqual(list.first?.note?.pattern, "text (ignore case): mini cooper")
    }

    func testExactTextRegexAndHex() throws {
        let s = store()
        _ = try s.add(
            name: "Breakwater.Local.Exact", pattern: .text("Gift Card", ignoreCase: false), comment: "", author: "ops")
        _ = try s.add(
            name: "Breakwater.Local.Word", pattern: .text("Zorblatt", ignoreCase: false), comment: "", author: "ops")
        _ = try s.add(
            name: "Breakwater.Local.Rx",
            pattern: .regex("claim (your|the) (free )?prize now", ignoreCase: true, trigger: nil),
            comment: "", author: "ops")
        _ = try s.add(name: "Breakwater.Local.Hex", pattern: .hex("cafe??babe"), comment: "", author: "ops")
        XCTAssertEqual(Set(files()), [".breakwater-signatures.lock", "breakwater-local.ldb", "breakwater-local.ndb"])
        let e = try engine()
        XCTAssertTrue(e.scan(bytes: textMessage("a Gift\r\nCard for you")).names.contains("Breakwater.Local.Exact"))
        XCTAssertFalse(
            e.scan(bytes: textMessage("a gift card for you")).names.contains("Breakwater.Local.Exact"), "case matters")
        XCTAssertTrue(e.scan(bytes: textMessage("the Zorblatt")).names.contains("Breakwater.Local.Word"))
        XCTAssertFalse(e.scan(bytes: textMessage("the zorblatt")).names.contains("Breakwater.Local.Word"))
        XCTAssertTrue(e.scan(bytes: textMessage("CLAIM THE FREE PRIZE NOW")).names.contains("Breakwater.Local.Rx"))
        XCTAssertTrue(e.scan(bytes: textMessage("claim your prize now")).names.contains("Breakwater.Local.Rx"))
        XCTAssertFalse(e.scan(bytes: textMessage("claim a prize now")).names.contains("Breakwater.Local.Rx"))
        let bin = Mime.message(
            subject: "x", text: "see attached",
            attachments: [("a.bin", "application/octet-stream", [1, 0xca, 0xfe, 7, 0xba, 0xbe, 2])])
        XCTAssertTrue(e.scan(bytes: bin).names.contains("Breakwater.Local.Hex"))
    }

    func testHashOfAnAttachment() throws {
        let data = Array("quarterly-report-final.pdf.exe pretending to be a pdf".utf8)
        let path = ops + "/../bw-attachment-\(UUID().uuidString)"
        try Data(data).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let (hash, size) = try SignatureStore.sha256(ofFile: path)
        XCTAssertEqual(size, UInt64(data.count))
        XCTAssertEqual(hash.count, 64)
        _ = try store().add(
            name: "Breakwater.Local.Attachment.Report", pattern: .sha256(hash, size: size), comment: "", author: "ops")
        XCTAssertEqual(
            contents("breakwater-local.hsb")?.contains("\(hash):\(size):Breakwater.Local.Attachment.Report"), true)
        let e = try engine()
        let m = Mime.message(
            subject: "report", text: "see attached", attachments: [("report.pdf", "application/pdf", data)])
        XCTAssertTrue(e.scan(bytes: m).names.contains("Breakwater.Local.Attachment.Report"))
        let other = Mime.message(
            subject: "report", text: "see attached", attachments: [("report.pdf", "application/pdf", data + [0])])
        XCTAssertFalse(e.scan(bytes: other).names.contains("Breakwater.Local.Attachment.Report"))
    }

    // MARK: refusals change nothing

    func testWhatLibclamavRefusesChangesNothing() throws {
        let s = store()
        _ = try s.add(
            name: "Breakwater.Local.Good", pattern: .text("first wave text", ignoreCase: true), comment: "",
            author: "ops")
        let before = contents("breakwater-local.ldb")
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.Bad", pattern: .regex("prize (now", ignoreCase: true, trigger: nil),
                comment: "", author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains("libclamav refuses the new set"), "\(e)")
            XCTAssertTrue("\(e)".contains("missing closing parenthesis"), "\(e)")
            XCTAssertTrue("\(e)".contains("nothing changed"), "\(e)")
        }
        XCTAssertEqual(contents("breakwater-local.ldb"), before)
        XCTAssertEqual(files(), [".breakwater-signatures.lock", "breakwater-local.ldb"], "no temporary file left")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter {
            $0.hasPrefix("breakwater-check.")
        }
        XCTAssertTrue(leftovers.isEmpty, "test directories left: \(leftovers)")
    }

    func testBrokenHandWrittenFileIsNamedWithItsRealPath() throws {
        try "Broken.Sig:0:*:zz\n".write(toFile: ops + "/hand.ndb", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(
            try store().add(
                name: "Breakwater.Local.X", pattern: .text("some wave text", ignoreCase: true),
                comment: "", author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains(ops + "/hand.ndb"), "\(e)")
            XCTAssertTrue("\(e)".contains("line 1"), "\(e)")
            XCTAssertFalse("\(e)".contains("breakwater-check."), "the test copy's path leaked: \(e)")
        }
        XCTAssertNil(contents("breakwater-local.ldb"))
    }

    func testNamesMustBeUniqueAcrossTheWholeSet() throws {
        let s = store()
        _ = try s.add(
            name: "Breakwater.Local.Once", pattern: .text("unique text here", ignoreCase: true), comment: "",
            author: "ops")
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.Once", pattern: .text("other text here", ignoreCase: true), comment: "",
                author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains("already exists in \(ops)/breakwater-local.ldb"), "\(e)")
        }
        // A shipped name, with a prefix that lets it through the name check.
        XCTAssertThrowsError(
            try store(prefix: "Breakwater.").add(
                name: "Breakwater.Test.EICAR", pattern: .text("some other text", ignoreCase: true), comment: "",
                author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains("already exists in \(Fixtures.signatures)/"), "\(e)")
        }
        XCTAssertThrowsError(
            try s.add(name: "Other.Name", pattern: .text("mini cooper", ignoreCase: true), comment: "", author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains("does not start with Breakwater.Local."), "\(e)")
        }
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.NL", pattern: .text("mini\ncooper", ignoreCase: true), comment: "",
                author: "ops"))
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.C", pattern: .text("mini cooper", ignoreCase: true), comment: "a\nb",
                author: "ops"))
        XCTAssertEqual(SignatureCatalog.entries(in: [ops]).map(\.name), ["Breakwater.Local.Once"])
    }

    func testCheckRefusesASignatureThatFiresOnKnownGoodMail() throws {
        let s = store()
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.Meeting", pattern: .text("meeting", ignoreCase: true),
                comment: "", author: "ops", check: [Fixtures.ham])
        ) { e in
            let err = e as! SignatureStoreError
            XCTAssertFalse(err.firedOn.isEmpty)
            XCTAssertTrue(err.firedOn.allSatisfy { $0.hasPrefix(Fixtures.ham + "/") }, "\(err.firedOn)")
            XCTAssertTrue(err.description.contains("known-good"), err.description)
        }
        XCTAssertEqual(files(), [".breakwater-signatures.lock"])
        // One that does not fire on the ham goes in, and says how many messages it was checked against.
        let ok = try s.add(
            name: "Breakwater.Local.Wave", pattern: .text("selected to receive a brand new", ignoreCase: true),
            comment: "", author: "ops", check: [Fixtures.ham])
        XCTAssertEqual(ok.firedOn, [])
        XCTAssertEqual(ok.checked, Fixtures.messages(under: Fixtures.ham).count)
        // --force adds it anyway and reports where it fires.
        let forced = try s.add(
            name: "Breakwater.Local.Meeting", pattern: .text("meeting", ignoreCase: true),
            comment: "", author: "ops", check: [Fixtures.ham], force: true)
        XCTAssertFalse(forced.firedOn.isEmpty)
    }

    // MARK: remove

    func testRemove() throws {
        let s = store()
        _ = try s.add(
            name: "Breakwater.Local.A", pattern: .text("alpha text here", ignoreCase: true), comment: "", author: "ops")
        _ = try s.add(
            name: "Breakwater.Local.B", pattern: .text("beta text here", ignoreCase: true), comment: "", author: "ops")
        _ = try s.add(name: "Breakwater.Local.C", pattern: .hex("0102030405"), comment: "", author: "ops")
        try "Breakwater.Local.Hand:0:*:0a0b0c0d\n".write(toFile: ops + "/hand.ndb", atomically: true, encoding: .utf8)
        XCTAssertEqual(try s.remove(name: "Breakwater.Local.A").file, ops + "/breakwater-local.ldb")
        XCTAssertEqual(
            SignatureCatalog.entries(in: [ops]).map(\.name).sorted(),
            ["Breakwater.Local.B", "Breakwater.Local.C", "Breakwater.Local.Hand"])
        XCTAssertEqual(
            SignatureCatalog.entries(in: [ops]).first { $0.name == "Breakwater.Local.B" }?.note?.author, "ops",
            "other notes kept")
        _ = try s.remove(name: "Breakwater.Local.C")
        XCTAssertNil(
            contents("breakwater-local.ndb"),
            "an owned file with no signature left is removed (libclamav refuses empty files)")
        XCTAssertThrowsError(try s.remove(name: "Breakwater.Local.Nope")) { e in
            XCTAssertTrue("\(e)".contains("no local signature named Breakwater.Local.Nope"), "\(e)")
        }
        XCTAssertThrowsError(try s.remove(name: "Breakwater.Local.Hand")) { e in
            XCTAssertTrue("\(e)".contains("hand.ndb"), "\(e)")
        }
        XCTAssertThrowsError(try s.remove(name: "Breakwater.Test.EICAR")) { e in
            XCTAssertTrue("\(e)".contains("never changes that set"), "\(e)")
        }
        _ = try engine()
    }

    // MARK: files

    func testReplacementKeepsModeAndOwner() throws {
        let s = store()
        _ = try s.add(
            name: "Breakwater.Local.A", pattern: .text("alpha text here", ignoreCase: true), comment: "", author: "ops")
        let path = ops + "/breakwater-local.ldb"
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o644, "a new file is readable by the service")
        XCTAssertEqual(chmod(path, 0o640), 0)
        if geteuid() == 0 { XCTAssertEqual(chown(path, 65534, 65534), 0) }
        let inode = st.st_ino
        _ = try s.add(
            name: "Breakwater.Local.B", pattern: .text("beta text here", ignoreCase: true), comment: "", author: "ops")
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o640)
        if geteuid() == 0 {
            XCTAssertEqual(st.st_uid, 65534)
            XCTAssertEqual(st.st_gid, 65534)
        }
        XCTAssertNotEqual(st.st_ino, inode, "replaced by rename, not rewritten in place")
    }

    func testConcurrentAddsLoseNothing() throws {
        let n = 8
        let failures = Mutex<[String]>([])
        let dir = ops
        DispatchQueue.concurrentPerform(iterations: n) { i in
            do {
                // A store of its own per thread: the lock file, not a shared object, keeps them apart.
                let s = SignatureStore(
                    directory: dir, prefix: "Breakwater.Local.", otherDirectories: [Fixtures.signatures])
                _ = try s.add(
                    name: "Breakwater.Local.C\(i)", pattern: .text("concurrent text \(i)", ignoreCase: true),
                    comment: "thread \(i)", author: "ops")
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertEqual(
            Set(SignatureCatalog.entries(in: [ops]).map(\.name)), Set((0..<n).map { "Breakwater.Local.C\($0)" }))
        let e = try engine()
        XCTAssertTrue(e.scan(bytes: textMessage("concurrent text 5")).names.contains("Breakwater.Local.C5"))
    }

    func testMissingOpsDirectoryIsAClearError() {
        let s = SignatureStore(
            directory: ops + "/nope", prefix: "Breakwater.Local.", otherDirectories: [Fixtures.signatures])
        XCTAssertThrowsError(
            try s.add(
                name: "Breakwater.Local.A", pattern: .text("alpha text", ignoreCase: true), comment: "", author: "ops")
        ) { e in
            XCTAssertTrue("\(e)".contains("does not exist"), "\(e)")
        }
    }
}

/// The reload queue the control socket and the directory watch rely on.
final class EngineHolderReloadTests: XCTestCase {
    func testWaitingForAnAttemptAndFailedReloadsKeepTheEngine() throws {
        let dir = try Fixtures.tempDirectory(["a.ndb": "Test.A:0:*:616263646566\n"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hooks = Mutex(0)
        let holder = EngineHolder(
            directories: { [dir] }, build: { dirs, _ in try ClamEngine(directories: dirs) }, snapshots: nil,
            onEvent: { _, _ in })
        try holder.loadInitial()
        holder.beforeEachAttempt { hooks.withLock { $0 += 1 } }
        let first = holder.current
        XCTAssertEqual(holder.status.generation, 1)

        let t1 = holder.triggerReload()
        XCTAssertTrue(holder.waitForAttempt(t1, timeout: 30))
        XCTAssertEqual(holder.status.generation, 2)
        XCTAssertTrue(holder.status.lastSucceeded)
        XCTAssertFalse(holder.current === first)

        // A broken file: the attempt fails, generation 2 keeps serving, the error names the file and line.
        try "Test.A:0:*:zz\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        let serving = holder.current
        let t2 = holder.triggerReload()
        XCTAssertEqual(t2, t1 + 1)
        XCTAssertTrue(holder.waitForAttempt(t2, timeout: 30))
        let s = holder.status
        XCTAssertFalse(s.lastSucceeded)
        XCTAssertEqual(s.generation, 2)
        XCTAssertTrue(holder.current === serving)
        XCTAssertTrue(s.lastError?.contains(dir + "/a.ndb") == true, s.lastError ?? "")
        XCTAssertTrue(s.lastError?.contains("line 1") == true, s.lastError ?? "")

        // Fixed: the next attempt loads generation 3. Triggers during a reload coalesce into one more.
        try "Test.A:0:*:616263646566\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        let tickets = (0..<5).map { _ in holder.triggerReload() }
        XCTAssertTrue(holder.waitForAttempt(tickets.max()!, timeout: 30))
        XCTAssertTrue(holder.status.lastSucceeded)
        XCTAssertLessThanOrEqual(tickets.max()!, t2 + 2, "at most one running and one pending")
        while holder.status.reloading { usleep(1000) }
        XCTAssertEqual(
            hooks.withLock { $0 }, tickets.max()!, "the hook runs once per attempt, and no attempt runs for nothing")
        XCTAssertFalse(holder.waitForAttempt(tickets.max()! + 1, timeout: 0.05), "no attempt was asked for")
    }
}

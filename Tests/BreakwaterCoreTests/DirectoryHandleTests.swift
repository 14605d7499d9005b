import Foundation
import XCTest

@testable import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// DirectoryHandle: files of a directory another user owns, opened by descriptor, never through a link.
final class DirectoryHandleTests: XCTestCase {
    var dir = ""
    var outside = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "bw-dirhandle-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/d", withIntermediateDirectories: true)
        outside = dir + "/outside"
        try "secret\n".write(toFile: outside, atomically: false, encoding: .utf8)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func contents(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    func testReadAndReplaceRefuseLinksAndKeepTheTarget() throws {
        let h = try DirectoryHandle(dir + "/d")
        XCTAssertEqual(symlink(outside, dir + "/d/link"), 0)
        XCTAssertThrowsError(try h.read("link")) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
        XCTAssertThrowsError(try h.replace("link", with: "x\n")) {
            XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)")
        }
        XCTAssertThrowsError(try h.lock("link")) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
        XCTAssertEqual(contents(outside), "secret\n")
        XCTAssertEqual(mkfifo(dir + "/d/fifo", 0o600), 0)
        XCTAssertThrowsError(try h.read("fifo")) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        XCTAssertEqual(link(outside, dir + "/d/hard"), 0)
        XCTAssertThrowsError(try h.read("hard", maxLinks: 1)) { XCTAssertTrue("\($0)".contains("hard links"), "\($0)") }
        XCTAssertThrowsError(try h.replace("hard", with: "x\n"))
        XCTAssertEqual(contents(outside), "secret\n")
        XCTAssertNil(try h.read("missing"))
        // Removing a link removes the link.
        try h.remove("link")
        XCTAssertEqual(contents(outside), "secret\n")
    }

    func testReplaceIsAtomicAndKeepsTheModeWithoutExtraBits() throws {
        let h = try DirectoryHandle(dir + "/d")
        try h.replace("f.ndb", with: "one\n", newMode: 0o640)
        var st = stat()
        XCTAssertEqual(stat(dir + "/d/f.ndb", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o640)
        XCTAssertEqual(chmod(dir + "/d/f.ndb", 0o4755), 0)
        try h.replace("f.ndb", with: "two\n")
        XCTAssertEqual(stat(dir + "/d/f.ndb", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o644, "set-id and execute bits are not carried over")
        XCTAssertEqual(contents(dir + "/d/f.ndb"), "two\n")
        XCTAssertEqual(try h.names(), ["f.ndb"], "no temporary file left")
    }

    func testTheDirectoryItselfMustNotBeALink() {
        XCTAssertEqual(symlink(dir + "/d", dir + "/dlink"), 0)
        XCTAssertThrowsError(try DirectoryHandle(dir + "/dlink")) {
            XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)")
        }
        XCTAssertThrowsError(try DirectoryHandle(outside)) {
            XCTAssertTrue("\($0)".contains("not a directory"), "\($0)")
        }
    }

    func testLockCreatesOnceAndKeepsAnExistingFile() throws {
        let h = try DirectoryHandle(dir + "/d")
        let fd = try h.lock(".lock")
        close(fd)
        XCTAssertEqual(chmod(dir + "/d/.lock", 0o600), 0)
        let again = try h.lock(".lock")
        close(again)
        var st = stat()
        XCTAssertEqual(stat(dir + "/d/.lock", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testTemporaryDirectorySwappedAfterCreationIsNotFollowed() throws {
        let t = try DirectoryHandle.makeTemporary(in: dir, prefix: "check")
        // The parent's owner renames it away and puts a link to a directory of its choice there.
        let victim = dir + "/victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: false)
        try "keep\n".write(toFile: victim + "/a.ndb", atomically: false, encoding: .utf8)
        XCTAssertEqual(rename(t.path, dir + "/moved"), 0)
        XCTAssertEqual(symlink(victim, t.path), 0)
        let fd = try XCTUnwrap(try t.createNew("b.ndb", mode: 0o600))
        close(fd)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/moved/b.ndb"), "written where it was created")
        XCTAssertFalse(FileManager.default.fileExists(atPath: victim + "/b.ndb"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.procPath + "/b.ndb"))
        t.removeTemporary()
        XCTAssertEqual(contents(victim + "/a.ndb"), "keep\n", "cleaning up did not follow the link")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/moved/b.ndb"))
    }

    func testInvokingUserComesFromSudoOnlyForAnotherUser() throws {
        try XCTSkipIf(geteuid() != 0, "needs root")
        XCTAssertNil(InvokingUser.fromSudo(environment: [:]))
        XCTAssertNil(InvokingUser.fromSudo(environment: ["SUDO_UID": "0", "SUDO_GID": "0"]))
        let u = try XCTUnwrap(InvokingUser.fromSudo(environment: ["SUDO_UID": "65534", "SUDO_GID": "65534"]))
        XCTAssertEqual(u.uid, 65534)
        XCTAssertEqual(chmod(outside, 0o600), 0)
        XCTAssertEqual(u.open(outside), -1)
        XCTAssertEqual(errno, EACCES)
        XCTAssertEqual(geteuid(), 0, "back to root")
        XCTAssertEqual(getegid(), 0)
        XCTAssertEqual(chmod(outside, 0o644), 0)
        let fd = u.open(outside)
        XCTAssertGreaterThanOrEqual(fd, 0)
        close(fd)
        XCTAssertEqual(geteuid(), 0)
    }
}

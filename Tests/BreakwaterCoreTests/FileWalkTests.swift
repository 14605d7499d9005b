import Foundation
import XCTest

@testable import BreakwaterCore

final class FileWalkTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "bw-filewalk-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/b/inner", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        for f in ["b/inner/z.eml", "b/2.eml", "a/1.eml", "top.eml"] {
            try "x".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func testDirectoriesAreWalkedRecursivelyAndSorted() {
        XCTAssertEqual(
            FileWalk.targets([dir]),
            [
                .file(dir + "/a/1.eml"), .file(dir + "/b/2.eml"), .file(dir + "/b/inner/z.eml"),
                .file(dir + "/top.eml"),
            ])
        XCTAssertEqual(FileWalk.targets([dir + "/"]).first, .file(dir + "/a/1.eml"))
    }

    func testFilesStdinAndProblemsKeepCommandLineOrder() {
        let t = FileWalk.targets([dir + "/top.eml", "-", dir + "/missing.eml", "/dev/null"])
        XCTAssertEqual(t.count, 4)
        XCTAssertEqual(t[0], .file(dir + "/top.eml"))
        XCTAssertEqual(t[1], .stdin)
        XCTAssertEqual(t[2], .unreadable(dir + "/missing.eml", reason: "No such file or directory"))
        XCTAssertEqual(t[3], .unreadable("/dev/null", reason: "not a regular file"))
    }

    func testSignatureDirectoriesNeedDatabaseFiles() throws {
        XCTAssertFalse(SignatureLocations.hasDatabaseFiles(dir), "only .eml files")
        XCTAssertFalse(SignatureLocations.hasDatabaseFiles(dir + "/nonexistent"))
        XCTAssertEqual(SignatureLocations.defaults(local: dir), [SignatureLocations.shipped()])
        try "Test.Sig:0:*:41424344\n".write(toFile: dir + "/local.ndb", atomically: true, encoding: .utf8)
        XCTAssertTrue(SignatureLocations.hasDatabaseFiles(dir))
        XCTAssertEqual(SignatureLocations.defaults(local: dir), [SignatureLocations.shipped(), dir])
    }

    func testShippedSetFromACheckout() throws {
        try FileManager.default.createDirectory(atPath: dir + "/Signatures", withIntermediateDirectories: true)
        XCTAssertEqual(SignatureLocations.shipped(executable: dir + "/.build/debug/breakwater"), dir + "/Signatures")
        XCTAssertEqual(
            SignatureLocations.shipped(executable: dir + "/.build-x/release/breakwater"), dir + "/Signatures")
        XCTAssertEqual(
            SignatureLocations.shipped(executable: "/usr/bin/breakwater"), SignatureLocations.installedShipped)
    }
}

import BreakwaterCore
import Foundation
import XCTest

@testable import BreakwaterEngine

/// The engine limits against the real libclamav: the defaults reach as deep as clamd's, and the limit a
/// scan hits is named so the policy can tell a nesting limit (on-nesting-limit) from a size or time
/// limit (on-limit).
final class LimitTests: XCTestCase {
    /// ClamAV's own test file: a tgz holding a tgz ... holding clam.exe, deep enough that, attached to a
    /// message, the executable's name sits at level 17 and the executable below it. clamscan and clamd
    /// with their defaults (max-recursion 17) find it; with Breakwater's old default of 16 the scan
    /// stopped above it, and on-limit accept delivered it with an X-Breakwater-Not-Scanned header.
    static func emaxMessage() throws -> [UInt8] {
        let path = Fixtures.clamavTestFiles + "/clam_cache_emax.tgz"
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) is missing: install clamav-testfiles (scripts/setup.sh --test)")
            throw CocoaError(.fileNoSuchFile)
        }
        return Mime.message(
            subject: "files", text: "see attached",
            attachments: [("files.tgz", "application/gzip", try Fixtures.read(path))])
    }

    func testClamCacheEmaxAttachedIsNeverDeliveredWithDefaults() throws {
        let engine = try ClamEngine(directories: [Fixtures.signatures], limits: Config().limits)
        let result = engine.scan(bytes: try Self.emaxMessage())
        XCTAssertFalse(result.isClean)
        // As clamscan with its defaults: the executable's name inside the innermost tar is found.
        XCTAssertTrue(
            result.names.contains("Breakwater.Attachment.ExecutableName"), "\(result.detections.map(\.rawName))")
        // The executable itself is one level deeper still: the scan says it stopped there.
        XCTAssertEqual(result.limits.map(\.name), ["Heuristics.Limits.Exceeded.MaxRecursion"])
        XCTAssertEqual(result.limit?.limitKind, .nesting)
        let decision = Policy(config: Config()).decide(result)
        XCTAssertEqual(decision.action, .reject)
        XCTAssertEqual(decision.reply?.code, "550")
        XCTAssertFalse(decision.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" })

        // Deep enough to reach the executable: found, and no limit.
        var deep = Config().limits
        deep.maxRecursion = 20
        let all = try ClamEngine(directories: [Fixtures.signatures], limits: deep).scan(bytes: try Self.emaxMessage())
        XCTAssertTrue(all.names.contains("Breakwater.Malware.ClamAVTestFile"), "\(all.detections.map(\.rawName))")
        XCTAssertNil(all.limit)
    }

    /// Harmless text in zips nested 25 deep: past max-recursion the scan reports MaxRecursion, a nesting
    /// limit, and the default policy rejects the message instead of accepting it with a header.
    func testMessageNestedDeeperThanMaxRecursionGetsTheNestingAction() throws {
        var data = Array("quarterly figures, nothing to see\n".utf8)
        for level in 0..<25 { data = StoredZip.make([("level\(level).zip", data)]) }
        let message = Mime.message(
            subject: "archive", text: "see attached",
            attachments: [("archive.zip", "application/zip", data)])
        let engine = try ClamEngine(directories: [Fixtures.signatures], limits: Config().limits)
        let result = engine.scan(bytes: message)
        XCTAssertEqual(result.signatures, [], "\(result.detections.map(\.rawName))")
        let limit = try XCTUnwrap(result.limit, "\(result.detections.map(\.rawName)) \(result.errorMessage ?? "")")
        XCTAssertEqual(limit.name, "Heuristics.Limits.Exceeded.MaxRecursion")
        XCTAssertEqual(limit.limitKind, .nesting)
        let decision = Policy(config: Config()).decide(result)
        XCTAssertEqual(decision.verdict, .limit)
        XCTAssertEqual(decision.action, .reject)
        XCTAssertEqual(decision.reply?.code, "550")
        XCTAssertEqual(decision.reply?.status, "5.7.1")

        // The same archive 10 deep is scanned whole: clean, accepted.
        var shallow = Array("quarterly figures, nothing to see\n".utf8)
        for level in 0..<10 { shallow = StoredZip.make([("level\(level).zip", shallow)]) }
        let ok = engine.scan(
            bytes: Mime.message(
                subject: "archive", text: "see attached",
                attachments: [("archive.zip", "application/zip", shallow)]))
        XCTAssertTrue(ok.isClean, "\(ok.detections.map(\.rawName))")
    }

    /// Each limit libclamav reports, by the name the policy sorts on: MaxFiles is a nesting limit,
    /// MaxFileSize a size limit. (libclamav 1.4's Email* limit names did not fire here for 1,100 MIME
    /// parts or 1,100 headers; PolicyTests sorts those names.)
    func testEachLimitIsReportedByItsKind() throws {
        // More members than max-files.
        var few = Config().limits
        few.maxFiles = 10
        let members = (0..<30).map { ("file\($0).txt", Array("member \($0)\n".utf8)) }
        let many = Mime.message(
            subject: "many", text: "see attached",
            attachments: [("many.zip", "application/zip", StoredZip.make(members))])
        let files = try ClamEngine(directories: [Fixtures.signatures], limits: few).scan(bytes: many)
        XCTAssertEqual(
            files.limits.map(\.name), ["Heuristics.Limits.Exceeded.MaxFiles"], "\(files.detections.map(\.rawName))")
        XCTAssertEqual(files.limit?.limitKind, .nesting)

        // A member larger than max-file-size.
        var small = Config().limits
        small.maxFileSize = 64 << 10
        let big = Mime.message(
            subject: "big", text: "see attached",
            attachments: [("big.txt", "text/plain", Array(repeating: UInt8(ascii: "a"), count: 200_000))])
        let size = try ClamEngine(directories: [Fixtures.signatures], limits: small).scan(bytes: big)
        XCTAssertEqual(
            size.limits.map(\.name), ["Heuristics.Limits.Exceeded.MaxFileSize"], "\(size.detections.map(\.rawName))")
        XCTAssertEqual(size.limit?.limitKind, .size)
        XCTAssertEqual(Policy(config: Config()).decide(size).action, .accept)
    }
}

import BreakwaterCore
import CClamAVPrefault
import Foundation
import XCTest

@testable import BreakwaterEngine

/// ClamEngine's contract, with the real libclamav: every match reported, names as written, limits
/// reported (never clean), load errors that name the file, many threads on one engine, memory and fd
/// scans that agree.
final class EngineBehaviourTests: XCTestCase {
    func testUnofficialSuffixIsStrippedFromNameAndKeptInRawName() throws {
        let engine = try Fixtures.shipped()
        let result = engine.scan(
            bytes: Mime.message(subject: "t", text: String(decoding: Fixtures.eicar, as: UTF8.self)))
        XCTAssertEqual(result.detections.count, 1)
        let d = try XCTUnwrap(result.detections.first)
        XCTAssertEqual(d.name, "Breakwater.Test.EICAR")
        XCTAssertEqual(d.rawName, "Breakwater.Test.EICAR.UNOFFICIAL")
        XCTAssertFalse(d.isLimit)
        XCTAssertEqual(result.signatures, [d])
    }

    /// All-matches mode: a message that two (here three) signatures match reports every one of them,
    /// including two that match the very same bytes of the same layer.
    func testAllMatchesReportsEverySignature() throws {
        let dir = try Fixtures.tempDirectory([
            "two.ndb": "AllMatch.One:0:*:616c6c2d6d617463682d74657374\nAllMatch.Two:0:*:6d617463682d74657374\n",
            "three.ldb": "AllMatch.Three;Engine:51-255,Target:0;0;616c6c2d6d61746368\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let engine = try ClamEngine(directories: [dir])
        XCTAssertEqual(engine.signatureCount, 3)
        let result = engine.scan(bytes: Array("Subject: x\r\n\r\nan all-match-test line\r\n".utf8))
        XCTAssertEqual(result.names, ["AllMatch.One", "AllMatch.Two", "AllMatch.Three"])

        // And across layers with the shipped set: spam text, EICAR in an attachment named .js.
        let shipped = try Fixtures.shipped()
        let message = Mime.message(
            subject: "Congratulations",
            text: "You have been selected to receive a brand new Mini Cooper. Claim your prize today.",
            attachments: [("claim.js", "application/javascript", Fixtures.eicar)])
        XCTAssertEqual(
            shipped.scan(bytes: message).names,
            ["Breakwater.Spam.MiniCooperGiveaway", "Breakwater.Test.EICAR", "Breakwater.Attachment.Script"])
    }

    func testSignaturesFromSeveralDirectoriesAreAllLoaded() throws {
        let extra = try Fixtures.tempDirectory(["ops.ndb": "Ops.Local.Test:0:*:6f70732d6c6f63616c2d6d61726b6572\n"])
        defer { try? FileManager.default.removeItem(atPath: extra) }
        let engine = try ClamEngine(directories: [Fixtures.signatures, extra])
        let message = Mime.message(
            subject: "t", text: "ops-local-marker\n" + String(decoding: Fixtures.eicar, as: UTF8.self))
        XCTAssertEqual(engine.scan(bytes: message).names, ["Ops.Local.Test", "Breakwater.Test.EICAR"])
    }

    /// Pseudo-random bytes (no signature can match them; deterministic).
    func noise(_ count: Int) -> [UInt8] {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    /// An attachment larger than max-file-size, and a message larger than max-scan-size, are reported as a
    /// limit, never as clean. The same messages with the default limits are clean, so the limit is what
    /// the verdict is about.
    func testOverLimitIsReportedAsLimitNeverClean() throws {
        let big = Mime.message(
            subject: "big", text: "large attachment",
            attachments: [("data.bin", "application/octet-stream", noise(300_000))])
        let normal = try Fixtures.shipped()
        XCTAssertTrue(normal.scan(bytes: big).isClean, "baseline: default limits scan it fully")

        var small = EngineLimits()
        small.maxFileSize = 64 << 10
        let fileLimited = try ClamEngine(directories: [Fixtures.signatures], limits: small)
        let r1 = fileLimited.scan(bytes: big)
        XCTAssertFalse(r1.isClean)
        let limit1 = try XCTUnwrap(r1.limit, "\(r1.detections.map(\.rawName)) \(r1.errorMessage ?? "")")
        XCTAssertTrue(limit1.name.hasPrefix("Heuristics.Limits.Exceeded"), limit1.name)
        XCTAssertEqual(r1.signatures, [], "a limit is not a signature")

        var scan = EngineLimits()
        scan.maxScanSize = 100 << 10
        let scanLimited = try ClamEngine(directories: [Fixtures.signatures], limits: scan)
        let many = Mime.message(
            subject: "many", text: "several attachments",
            attachments: (0..<6).map {
                ("part\($0).bin", "application/octet-stream", noise(60_000 + $0))
            })
        XCTAssertTrue(normal.scan(bytes: many).isClean)
        let r2 = scanLimited.scan(bytes: many)
        XCTAssertFalse(r2.isClean)
        XCTAssertNotNil(r2.limit, "\(r2.detections.map(\.rawName)) \(r2.errorMessage ?? "")")
    }

    /// A threat found before the scan hits a limit is still named: the limit does not hide it.
    func testThreatFoundBeforeALimitIsStillReported() throws {
        let message = Mime.message(
            subject: "x", text: String(decoding: Fixtures.eicar, as: UTF8.self),
            attachments: (0..<6).map { ("d\($0).bin", "application/octet-stream", noise(60_000 + $0)) })
        // The raw message is scanned whole first (and counts against max-scan-size), then each decoded
        // part: leave room for the raw message and the first parts, not for all of them.
        var small = EngineLimits()
        small.maxScanSize = UInt64(message.count + 100_000)
        let engine = try ClamEngine(directories: [Fixtures.signatures], limits: small)
        let r = engine.scan(bytes: message)
        XCTAssertTrue(r.names.contains("Breakwater.Test.EICAR"), "\(r.detections.map(\.rawName))")
        XCTAssertNotNil(r.limit, "\(r.detections.map(\.rawName))")
    }

    func testBrokenSignatureFileFailsTheBuildNamingTheFile() throws {
        let cases: [(file: String, content: String)] = [
            ("broken.ndb", "Broken.Hex:0:*:zz11zz\n"),
            ("broken.ldb", "Broken.Logic;Engine:51-255,Target:0;0&1;414243\n"),
            ("broken.cdb", "Broken.Cdb:CL_TYPE_ZIP:*\n"),
            ("broken.hdb", "not-a-hash:size:Broken.Hash\n"),
            // libclamav itself only warns about (and skips) a YARA file it cannot parse; ClamEngine fails.
            ("broken.yar", "rule Broken { strings: $a = \"abc\" condition: $a and }\n"),
        ]
        for c in cases {
            let dir = try Fixtures.tempDirectory(["good.ndb": "Good.Sig:0:*:676f6f642d736967\n", c.file: c.content])
            defer { try? FileManager.default.removeItem(atPath: dir) }
            XCTAssertThrowsError(try ClamEngine(directories: [dir]), c.file) { error in
                guard let e = error as? EngineError else { return XCTFail("\(c.file): \(error)") }
                XCTAssertEqual(e.file, dir + "/" + c.file, "\(c.file): \(e.message)")
                XCTAssertTrue(e.message.contains(c.file), "\(c.file): \(e.message)")
            }
        }
    }

    func testMissingOrEmptyDirectoryFailsTheBuild() throws {
        XCTAssertThrowsError(try ClamEngine(directories: ["/nonexistent/breakwater-sigs"])) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/breakwater-sigs"), "\(error)")
        }
        let empty = try Fixtures.tempDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: empty) }
        XCTAssertThrowsError(try ClamEngine(directories: [empty])) { error in
            XCTAssertTrue("\(error)".contains(empty), "\(error)")
        }
    }

    /// Every sample and ham message gives the same names scanned from memory, from a descriptor, and
    /// from a mapped private file (the milter's spool).
    func testMemoryAndDescriptorScansAgree() throws {
        let engine = try Fixtures.shipped()
        let files = Fixtures.messages(under: Fixtures.samples) + Fixtures.messages(under: Fixtures.ham)
        XCTAssertGreaterThan(files.count, 30)
        for path in files {
            let fromMemory = engine.scan(bytes: try Fixtures.read(path))
            let fd = open(path, O_RDONLY)
            XCTAssertGreaterThanOrEqual(fd, 0, path)
            defer { close(fd) }
            let fromFd = engine.scan(fd: fd, name: path)
            XCTAssertEqual(fromMemory.names, fromFd.names, path)
            XCTAssertEqual(fromMemory.isClean, fromFd.isClean, path)
            XCTAssertNil(fromFd.errorMessage, path)
            XCTAssertEqual(fromFd.bytes, fromMemory.bytes, path)
            let mapped = engine.scan(privateFile: fd, name: path)
            XCTAssertEqual(mapped.names, fromMemory.names, path)
            XCTAssertEqual(mapped.isClean, fromMemory.isClean, path)
            XCTAssertNil(mapped.errorMessage, path)
            XCTAssertEqual(mapped.bytes, fromMemory.bytes, path)
        }
    }

    /// A private file that cannot be mapped (empty, or not a file) is scanned from its descriptor:
    /// the same answer as `scan(fd:)`, never a crash.
    func testPrivateFileThatCannotBeMappedFallsBackToTheDescriptor() throws {
        let engine = try Fixtures.shipped()
        var template = Array("/tmp/breakwater-test-empty.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        defer { close(fd) }
        let empty = engine.scan(privateFile: fd)
        XCTAssertTrue(empty.isClean)
        XCTAssertNil(empty.errorMessage)
        let fromFd = engine.scan(fd: fd)
        XCTAssertEqual(empty.isClean, fromFd.isClean)
        XCTAssertEqual(empty.errorMessage, fromFd.errorMessage)
        XCTAssertEqual(empty.names, fromFd.names)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        _ = "not a mail at all".withCString { write(fds[1], $0, 17) }
        close(fds[1])
        fds[1] = -1
        let fromPipe = engine.scan(privateFile: fds[0])
        XCTAssertNil(fromPipe.errorMessage)
        XCTAssertTrue(fromPipe.isClean)
        XCTAssertEqual(engine.scan(privateFile: -1).isClean, false)
    }

    /// The parts libclamav decodes into temporary files are mapped populated up to `prefault-size`
    /// (Sources/CClamAVPrefault/prefault.c): libclamav's calls really reach the wrapper, only within
    /// the limit, and the verdicts are the same with it off, below and above the limit.
    func testDecodedPartsAreMappedPopulatedWithinPrefaultSize() throws {
        try XCTSkipUnless(ClamEngine.prefaultAvailable, "sanitizer build: the sanitizer owns mmap")
        let big = Array(repeating: UInt8(ascii: "a"), count: 300_000) + Fixtures.eicar
        let zip = StoredZip.make([("notes.txt", Array("hello\n".utf8)), ("eicar.txt", Fixtures.eicar)])
        let message = Mime.message(
            subject: "parts", text: "see attached",
            attachments: [
                ("big.txt", "application/octet-stream", big), ("files.zip", "application/zip", zip),
            ])
        func scan(prefault: UInt64) throws -> (names: Set<String>, maps: UInt) {
            var limits = EngineLimits()
            limits.prefaultSize = prefault
            let engine = try ClamEngine(directories: [Fixtures.signatures], limits: limits)
            let before = ClamEngine.prefaultedMaps
            let names = engine.scan(bytes: message).names
            return (names, ClamEngine.prefaultedMaps - before)
        }
        let byDefault = try scan(prefault: EngineLimits().prefaultSize)
        let off = try scan(prefault: 0)
        let small = try scan(prefault: 64 << 10)
        XCTAssertEqual(byDefault.names, ["Breakwater.Test.EICAR"])
        XCTAssertEqual(off.names, byDefault.names)
        XCTAssertEqual(small.names, byDefault.names)
        XCTAssertEqual(off.maps, 0, "prefault-size 0 must leave libclamav's maps alone")
        // Default: the 300 KB part, the zip and its members; 64K: the small ones but not the 300 KB part.
        XCTAssertGreaterThanOrEqual(byDefault.maps, 3)
        XCTAssertGreaterThan(small.maps, 0)
        XCTAssertLessThan(small.maps, byDefault.maps)
    }

    /// A decoded part of more than 8 MB makes libclamav "age" its page map (map fresh pages over the
    /// least used ones and read them again); inside a populated map the wrapper skips that remap. The
    /// verdict must be the same as with prefault-size 0, where libclamav ages as it always does.
    func testAgingRemapsOfALargePartAreSkippedWithTheSameVerdict() throws {
        try XCTSkipUnless(ClamEngine.prefaultAvailable, "sanitizer build: the sanitizer owns mmap")
        // 10 MB of lines, the test signature's pattern at the end, past the 8 MB where aging starts.
        let line = Array("the quick brown fox jumps over the lazy dog 0123456789\n".utf8)
        var big: [UInt8] = []
        big.reserveCapacity(10 << 20 + 100)
        while big.count < 10 << 20 { big += line }
        big += Fixtures.eicar
        let message = Mime.message(
            subject: "large", text: "see attached",
            attachments: [
                ("large.txt", "application/octet-stream", big)
            ])
        func scan(prefault: UInt64) throws -> (names: Set<String>, skipped: UInt) {
            var limits = EngineLimits()
            limits.prefaultSize = prefault
            let engine = try ClamEngine(directories: [Fixtures.signatures], limits: limits)
            let before = bw_prefault_remaps_skipped()
            let names = engine.scan(bytes: message).names
            return (names, bw_prefault_remaps_skipped() - before)
        }
        let byDefault = try scan(prefault: EngineLimits().prefaultSize)
        let off = try scan(prefault: 0)
        XCTAssertEqual(byDefault.names, ["Breakwater.Test.EICAR"])
        XCTAssertEqual(off.names, byDefault.names)
        XCTAssertGreaterThan(byDefault.skipped, 0, "the 10 MB part's map was aged: its remaps must have been skipped")
        XCTAssertEqual(off.skipped, 0)
    }

    func testUnreadableDescriptorIsAnErrorNotClean() throws {
        let engine = try Fixtures.shipped()
        let r = engine.scan(fd: -1)
        XCTAssertFalse(r.isClean)
        XCTAssertNotNil(r.errorMessage)
    }

    func testEmptyAndGarbageInputDoNotCrash() throws {
        let engine = try Fixtures.shipped()
        let empty = engine.scan(bytes: [])
        XCTAssertTrue(empty.detections.isEmpty)
        XCTAssertTrue(engine.scan(bytes: noise(10_000)).isClean)
        XCTAssertTrue(engine.scan(bytes: Array("not a mail at all".utf8)).isClean)
    }

    /// Many threads scanning with one engine at once get the verdict each message should get.
    func testConcurrentScansOnOneEngineGiveCorrectVerdicts() throws {
        let engine = try Fixtures.shipped()
        var work: [(String, [UInt8], Set<String>)] = []
        for path in Fixtures.messages(under: Fixtures.samples) + Fixtures.messages(under: Fixtures.ham) {
            let bytes = try Fixtures.read(path)
            work.append((path, bytes, try XCTUnwrap(Fixtures.expectation(of: bytes), path)))
        }
        let items = work
        let threads = 8
        let rounds = 6
        let failures = NSLock()
        nonisolated(unsafe) var wrong: [String] = []
        nonisolated(unsafe) var scans = 0
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for round in 0..<rounds {
                // Each thread walks the list from a different place, alternating memory and fd scans.
                for k in 0..<items.count {
                    let (path, bytes, expected) = items[(k + t * 7 + round) % items.count]
                    let names: Set<String>
                    if (k + t) % 2 == 0 {
                        names = engine.scan(bytes: bytes).names
                    } else {
                        let fd = open(path, O_RDONLY)
                        names = engine.scan(fd: fd, name: path).names
                        close(fd)
                    }
                    failures.lock()
                    scans += 1
                    if names != expected { wrong.append("\(path): \(names.sorted()) != \(expected.sorted())") }
                    failures.unlock()
                }
            }
        }
        XCTAssertEqual(scans, threads * rounds * items.count)
        XCTAssertEqual(wrong, [])
    }
}

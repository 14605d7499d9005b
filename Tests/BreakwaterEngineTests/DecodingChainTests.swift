import BreakwaterCore
import Foundation
import XCTest

@testable import BreakwaterEngine

/// EICAR and the ClamAV test program are found through every wrapping a mail can give them: a base64
/// attachment, a zip, a zip in a zip, a forwarded message/rfc822 part (and a zip inside that). The
/// messages and archives are built here (stored zips by hand), so what is tested is libclamav's decoding
/// with the options ClamEngine sets, not a prepared file.
final class DecodingChainTests: XCTestCase {
    enum Wrapping: CaseIterable {
        case base64Attachment, zip, zipInZip, forwardedMessage, zipInForwardedMessage
    }

    func wrap(_ payload: [UInt8], named name: String, in wrapping: Wrapping) -> [UInt8] {
        let bin = "application/octet-stream"
        let zipType = "application/zip"
        switch wrapping {
        case .base64Attachment:
            return Mime.message(subject: "attachment", text: "see attached", attachments: [(name, bin, payload)])
        case .zip:
            let zip = StoredZip.make([("readme.txt", Array("hello\n".utf8)), (name, payload)])
            return Mime.message(subject: "zip", text: "see attached", attachments: [("files.zip", zipType, zip)])
        case .zipInZip:
            let inner = StoredZip.make([(name, payload)])
            let outer = StoredZip.make([("notes.txt", Array("outer\n".utf8)), ("inner/inner.zip", inner)])
            return Mime.message(
                subject: "zip in zip", text: "see attached", attachments: [("outer.zip", zipType, outer)])
        case .forwardedMessage:
            let original = Mime.message(subject: "original", text: "original", attachments: [(name, bin, payload)])
            return Mime.message(subject: "Fwd: original", text: "forwarding", forwarded: original)
        case .zipInForwardedMessage:
            let zip = StoredZip.make([(name, payload)])
            let original = Mime.message(subject: "original", text: "original", attachments: [("a.zip", zipType, zip)])
            return Mime.message(subject: "Fwd: original", text: "forwarding", forwarded: original)
        }
    }

    /// The stored-zip writer makes archives libclamav actually opens: a signature that matches only a
    /// member's name (not the bytes, which are stored uncompressed and so visible to a raw scan too)
    /// proves the archive was parsed.
    func testStoredZipIsParsedByLibclamav() throws {
        let engine = try Fixtures.shipped()
        let zip = StoredZip.make([("tools/run.vbs", Array("MsgBox 1\r\n".utf8))])
        let message = Mime.message(subject: "zip", text: "x", attachments: [("t.zip", "application/zip", zip)])
        XCTAssertEqual(engine.scan(bytes: message).names, ["Breakwater.Attachment.Script"])
    }

    func testEicarIsFoundInEveryWrapping() throws {
        let engine = try Fixtures.shipped()
        for w in Wrapping.allCases {
            let result = engine.scan(bytes: wrap(Fixtures.eicar, named: "eicar.txt", in: w))
            XCTAssertEqual(result.names, ["Breakwater.Test.EICAR"], "\(w)")
        }
    }

    func testClamAVTestProgramIsFoundInEveryWrapping() throws {
        let engine = try Fixtures.shipped()
        let clam = try Fixtures.clamExe()
        for w in Wrapping.allCases {
            // Named .bin so the result is about content: the PE content checks, not the name check.
            let result = engine.scan(bytes: wrap(clam, named: "payload.bin", in: w))
            XCTAssertEqual(
                result.names, ["Breakwater.Malware.ClamAVTestFile", "Breakwater.Attachment.Executable"], "\(w)")
        }
    }

    /// The same wrappings with a clean payload stay clean: what the tests above find is the payload.
    func testCleanPayloadStaysCleanInEveryWrapping() throws {
        let engine = try Fixtures.shipped()
        let payload = Array("Quarterly figures: revenue 1200, costs 900.\n".utf8)
        for w in Wrapping.allCases {
            let result = engine.scan(bytes: wrap(payload, named: "figures.txt", in: w))
            XCTAssertTrue(result.isClean, "\(w): \(result.detections.map(\.rawName))")
        }
    }

    /// clamav-testfiles' own containers (archives, packed executables, documents) attached to a mail:
    /// libclamav unpacks each and the test program inside is found.
    func testClamAVTestFilesContainersAttached() throws {
        let engine = try Fixtures.shipped()
        _ = try Fixtures.clamExe()
        let files = [
            "clam.zip", "clam.7z", "clam.cab", "clam.arj", "clam.tar.gz", "clam.exe.bz2", "clam-upx.exe",
            "clam-fsg.exe", "clam.ole.doc", "clam.pdf", "clam.exe.rtf", "clam.newc.cpio",
        ]
        for f in files {
            let data = try Fixtures.read(Fixtures.clamavTestFiles + "/" + f)
            let message = Mime.message(
                subject: f, text: "attached: \(f)", attachments: [("attachment.bin", "application/octet-stream", data)])
            let result = engine.scan(bytes: message)
            XCTAssertTrue(
                result.names.contains("Breakwater.Malware.ClamAVTestFile"),
                "\(f): \(result.detections.map(\.rawName)) \(result.errorMessage ?? "")")
        }
    }
}

import BreakwaterCore
import Foundation
import XCTest

@testable import BreakwaterEngine

/// The shipped set against its samples and the ham set, with the real libclamav.
final class ShippedSignatureTests: XCTestCase {
    func testShippedSetLoads() throws {
        let engine = try Fixtures.shipped()
        XCTAssertGreaterThanOrEqual(engine.signatureCount, 9)
        XCTAssertEqual(engine.directories, [Fixtures.signatures])
    }

    func testEveryNameIsInTheBreakwaterNamespaceWithACategory() throws {
        let names = try Fixtures.shippedNames()
        XCTAssertFalse(names.isEmpty)
        let categories: Set<String> = ["Spam", "Phish", "Malware", "Attachment", "Test"]
        for name in names {
            let parts = name.split(separator: ".")
            XCTAssertGreaterThanOrEqual(parts.count, 3, name)
            XCTAssertEqual(parts.first, "Breakwater", name)
            XCTAssertTrue(
                categories.contains(String(parts[1])),
                "\(name): category \(parts[1]) is not one of \(categories.sorted())")
        }
    }

    /// Each sample produces exactly the names its X-Breakwater-Expect header lists: the signature it was
    /// written for is found, and nothing else fires on it.
    func testEverySampleIsCaughtByExactlyItsSignatures() throws {
        let engine = try Fixtures.shipped()
        let files = Fixtures.messages(under: Fixtures.samples)
        XCTAssertGreaterThanOrEqual(files.count, 20, "samples missing under \(Fixtures.samples)")
        for path in files {
            let bytes = try Fixtures.read(path)
            guard let expected = Fixtures.expectation(of: bytes) else {
                XCTFail("\(path): no X-Breakwater-Expect header")
                continue
            }
            XCTAssertFalse(expected.isEmpty, "\(path): a sample must expect at least one signature")
            let result = engine.scan(bytes: bytes)
            XCTAssertNil(result.errorMessage, path)
            XCTAssertNil(result.limit, "\(path): hit a limit")
            XCTAssertEqual(result.names, expected, path)
            // A sample in samples/<Name>/ is there for that signature.
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent
            if dir.hasPrefix("Breakwater.") {
                XCTAssertTrue(expected.contains(dir), "\(path) does not expect \(dir)")
            }
        }
    }

    /// Every shipped signature name has at least one sample that must produce it.
    func testEverySignatureHasASample() throws {
        var covered = Set<String>()
        for path in Fixtures.messages(under: Fixtures.samples) {
            covered.formUnion(Fixtures.expectation(of: try Fixtures.read(path)) ?? [])
        }
        let names = try Fixtures.shippedNames()
        XCTAssertEqual(names.subtracting(covered), [], "signatures without a sample")
        XCTAssertEqual(covered.subtracting(names), [], "samples expecting names that are not shipped")
    }

    func testNoShippedSignatureFiresOnHam() throws {
        let engine = try Fixtures.shipped()
        let files = Fixtures.messages(under: Fixtures.ham)
        XCTAssertGreaterThanOrEqual(files.count, 10, "ham missing under \(Fixtures.ham)")
        for path in files {
            let bytes = try Fixtures.read(path)
            XCTAssertEqual(Fixtures.expectation(of: bytes), [], "\(path): ham must say X-Breakwater-Expect: clean")
            let result = engine.scan(bytes: bytes)
            XCTAssertTrue(result.isClean, "\(path): \(result.detections.map(\.rawName)) \(result.errorMessage ?? "")")
        }
    }

    /// The spam and phishing signatures need the whole lure, not one of its words: each ingredient alone,
    /// in a message built here, stays clean, and the full lure in the same wrapping is caught (so the
    /// clean results are not an artefact of the wrapping).
    func testLureSignaturesNeedTheWholeLure() throws {
        let engine = try Fixtures.shipped()
        func scan(_ text: String) -> Set<String> {
            engine.scan(bytes: Mime.message(subject: "hello", text: text)).names
        }
        XCTAssertEqual(
            scan("You have been selected to receive a brand new MINI Cooper! Claim your prize now."),
            ["Breakwater.Spam.MiniCooperGiveaway"])
        XCTAssertEqual(
            scan("you have been selected to receive a brand new mini cooper. claim it."),
            ["Breakwater.Spam.MiniCooperGiveaway"])
        XCTAssertEqual(
            scan("You have been selected to receive a brand new Mini Cooper."), [],
            "no prize language")
        XCTAssertEqual(
            scan("Claim your prize: a brand new Mini Cooper is the first prize of the raffle."), [],
            "no giveaway phrasing")
        XCTAssertEqual(
            scan("Congratulations, you have been selected for the team. My Mini Cooper is parked outside."), [])

        let phish =
            "Your mailbox will be suspended. Verify your account at "
            + "https://mail.example-login.test/owa/login.php and enter your password."
        XCTAssertEqual(scan(phish), ["Breakwater.Phish.CredentialHarvest"])
        XCTAssertEqual(
            scan(phish.replacingOccurrences(of: "Your mailbox will be suspended.", with: "Welcome aboard.")), [],
            "no threat")
        XCTAssertEqual(
            scan(phish.replacingOccurrences(of: "Verify your account", with: "Go")), [],
            "no verify phrase")
        XCTAssertEqual(scan(phish.replacingOccurrences(of: "password", with: "name")), [], "no password")
        XCTAssertEqual(
            scan(phish.replacingOccurrences(of: "https://mail.example-login.test/owa/login.php", with: "our site")),
            [], "no link")
    }
}

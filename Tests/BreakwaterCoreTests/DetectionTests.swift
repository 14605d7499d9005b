import XCTest

@testable import BreakwaterCore

final class DetectionTests: XCTestCase {
    func testUnofficialSuffixIsStrippedOnlyAtTheEnd() {
        let d = Detection(rawName: "Breakwater.Test.EICAR.UNOFFICIAL")
        XCTAssertEqual(d.name, "Breakwater.Test.EICAR")
        XCTAssertEqual(d.rawName, "Breakwater.Test.EICAR.UNOFFICIAL")
        XCTAssertEqual(Detection(rawName: "Win.Test.EICAR_HDB-1").name, "Win.Test.EICAR_HDB-1")
        XCTAssertEqual(Detection(rawName: "A.UNOFFICIAL.B").name, "A.UNOFFICIAL.B")
        XCTAssertEqual(Detection(rawName: ".UNOFFICIAL").name, "")
    }

    func testLimitDetections() {
        XCTAssertTrue(Detection(rawName: "Heuristics.Limits.Exceeded.MaxFileSize").isLimit)
        XCTAssertTrue(Detection(rawName: "Heuristics.Limits.Exceeded.MaxScanSize").isLimit)
        XCTAssertFalse(Detection(rawName: "Heuristics.Encrypted.Zip").isLimit)
        XCTAssertFalse(Detection(rawName: "Breakwater.Spam.X.UNOFFICIAL").isLimit)
    }

    func testScanResultViews() {
        let found = ScanResult(
            finding: .found([
                Detection(rawName: "Breakwater.Spam.X.UNOFFICIAL"),
                Detection(rawName: "Heuristics.Limits.Exceeded.MaxScanSize"),
            ]), seconds: 0.01, bytes: 10)
        XCTAssertFalse(found.isClean)
        XCTAssertEqual(found.detections.count, 2)
        XCTAssertEqual(found.signatures.map(\.name), ["Breakwater.Spam.X"])
        XCTAssertEqual(found.limit?.name, "Heuristics.Limits.Exceeded.MaxScanSize")
        XCTAssertNil(found.errorMessage)

        let clean = ScanResult(finding: .clean, seconds: 0, bytes: 1)
        XCTAssertTrue(clean.isClean)
        XCTAssertEqual(clean.detections, [])
        XCTAssertNil(clean.limit)

        let error = ScanResult(finding: .error("boom"), seconds: 0, bytes: 0)
        XCTAssertFalse(error.isClean)
        XCTAssertEqual(error.errorMessage, "boom")
        XCTAssertEqual(error.detections, [])
    }
}

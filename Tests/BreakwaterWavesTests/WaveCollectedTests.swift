import BreakwaterCore
import XCTest

@testable import BreakwaterWaves

/// What a scan worker's inspector collected, sent to the daemon: the same fingerprint on both sides.
final class WaveCollectedTests: XCTestCase {
    func testCollectedRoundTripsToTheSameFingerprint() throws {
        let inspector = WaveLayerInspector(memo: WaveMemo())
        let text = Array(
            "Dear customer, your parcel is waiting at the depot: confirm the delivery fee today to receive it.".utf8)
        text.withUnsafeBytes { b in
            inspector.inspect(fd: -1, type: "CL_TYPE_MAIL", depth: 0, size: b.count, buffer: b)
            inspector.inspect(fd: -1, type: "CL_TYPE_TEXT_ASCII", depth: 1, size: b.count, buffer: b)
        }
        var bytes: [UInt8] = []
        inspector.collected.encode(into: &bytes)
        var at = 0
        let decoded = try XCTUnwrap(WaveCollected.decode(bytes, at: &at))
        XCTAssertEqual(at, bytes.count)
        let stand = WaveLayerInspector(memo: WaveMemo(), collected: decoded)
        let a = try XCTUnwrap(inspector.finish(subject: "parcel"))
        let b = try XCTUnwrap(stand.finish(subject: "parcel"))
        XCTAssertEqual(a.signature, b.signature)
        XCTAssertEqual(a.sample, b.sample)
        XCTAssertEqual(a.words, b.words)
    }

    func testTruncatedOrForgedEncodingsAreRefused() {
        let inspector = WaveLayerInspector(memo: nil)
        var bytes: [UInt8] = []
        inspector.collected.encode(into: &bytes)
        for cut in [0, 1, 9, 40, bytes.count - 1] {
            var at = 0
            XCTAssertNil(WaveCollected.decode(Array(bytes.prefix(cut)), at: &at), "cut at \(cut)")
        }
        var forged = bytes
        forged[25] = 0xff  // a count of mins other than the signature size
        var at = 0
        XCTAssertNil(WaveCollected.decode(forged, at: &at))
    }
}

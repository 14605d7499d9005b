import BreakwaterCore
import XCTest

@testable import BreakwaterWaves

final class RecentHamTests: XCTestCase {
    func fp(_ seed: UInt32, sample: String) -> WaveFingerprint {
        WaveFingerprint(
            signature: (0..<UInt32(waveSignatureSize)).map { $0 &* 2_654_435_761 &+ seed &* 40_503 },
            words: 20, subject: "", sample: sample)
    }

    func testKeepsTheLastMessagesOnly() {
        let ham = RecentHam(capacity: 4)
        for i in 0..<10 { ham.add(fp(UInt32(i), sample: "message \(i)")) }
        XCTAssertEqual(ham.count, 4)
        XCTAssertEqual(
            Set(ham.samples(excluding: [], minEqualBins: 8)), ["message 6", "message 7", "message 8", "message 9"])
    }

    func testLeavesOutMessagesSimilarToAWave() {
        let ham = RecentHam()
        let wave = fp(1, sample: "wave copy")
        ham.add(wave)
        ham.add(fp(2, sample: "other mail"))
        let template = wave.signature.map { UInt16(truncatingIfNeeded: $0) }
        XCTAssertEqual(ham.samples(excluding: [template], minEqualBins: 8), ["other mail"])
        XCTAssertEqual(ham.samples(excluding: [], minEqualBins: 8).count, 2)
    }

    /// The message path's cost: one add per message accepted clean (printed; a lock and two retains).
    func testAddIsCheap() {
        let ham = RecentHam()
        let fps = (0..<512).map { fp(UInt32($0), sample: String(repeating: "word ", count: 400) + "\($0)") }
        let start = Now.monotonic()
        for i in 0..<200_000 { ham.add(fps[i & 511]) }
        let ns = (Now.monotonic() - start) / 200_000 * 1e9
        print("RecentHam.add: \(Int(ns)) ns per message")
        XCTAssertEqual(ham.count, RecentHam.defaultCapacity)
        XCTAssertLessThan(ns, 20_000)
    }
}

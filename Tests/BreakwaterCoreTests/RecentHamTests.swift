import XCTest
@testable import BreakwaterCore

final class RecentHamTests: XCTestCase {
    func fp(_ seed: UInt32, sample: String) -> WaveFingerprint {
        WaveFingerprint(signature: (0..<UInt32(waveSignatureSize)).map { $0 &* 2_654_435_761 &+ seed &* 40_503 },
                        words: 20, subject: "", sample: sample)
    }

    func testKeepsTheLastMessagesOnly() {
        let ham = RecentHam(capacity: 4)
        for i in 0..<10 { ham.add(fp(UInt32(i), sample: "message \(i)")) }
        XCTAssertEqual(ham.count, 4)
        XCTAssertEqual(Set(ham.samples(excluding: [], minEqualBins: 8)), ["message 6", "message 7", "message 8", "message 9"])
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
}

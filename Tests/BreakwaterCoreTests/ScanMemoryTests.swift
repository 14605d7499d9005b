import XCTest

@testable import BreakwaterCore

final class ScanMemoryTests: XCTestCase {
    /// What workers scans can write in memory: workers x (max-scan-size + max-message-size).
    func testPlannedFigure() {
        var c = Config()
        c.workers = 2
        XCTAssertEqual(ScanMemory.perScan(limits: c.limits, maxMessageSize: c.maxMessageSize), 425 << 20)
        XCTAssertEqual(ScanMemory.planned(config: c), 850 << 20)
        c.workers = 4
        c.limits.maxScanSize = 8 << 20
        c.maxMessageSize = 8 << 20
        XCTAssertEqual(ScanMemory.planned(config: c), 64 << 20)
        c.limits.maxScanSize = .max
        XCTAssertEqual(ScanMemory.planned(config: c), .max)
    }

    func testCandidates() {
        XCTAssertEqual(ScanMemory.candidates(environment: nil), ["/dev/shm"])
        XCTAssertEqual(ScanMemory.candidates(environment: ""), ["/dev/shm"])
        XCTAssertEqual(ScanMemory.candidates(environment: "/run/breakwater"), ["/run/breakwater", "/dev/shm"])
        XCTAssertEqual(ScanMemory.candidates(environment: "/run/a:relative:/run/b"), ["/run/a", "/run/b", "/dev/shm"])
    }
}

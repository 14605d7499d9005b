import XCTest

@testable import BreakwaterCore

final class ByteSizeTests: XCTestCase {
    func testParsesBytesAndSuffixes() throws {
        XCTAssertEqual(try ByteSize.parse("0"), 0)
        XCTAssertEqual(try ByteSize.parse("512"), 512)
        XCTAssertEqual(try ByteSize.parse("10K"), 10 * 1024)
        XCTAssertEqual(try ByteSize.parse("10k"), 10 * 1024)
        XCTAssertEqual(try ByteSize.parse("25M"), 25 << 20)
        XCTAssertEqual(try ByteSize.parse("2G"), 2 << 30)
        XCTAssertEqual(try ByteSize.parse("  4M \n"), 4 << 20)
    }

    func testRejectsWhatIsNotASize() {
        for bad in ["", " ", "M", "10MiB", "1.5M", "-1", "ten", "10T", "10 M", "18446744073709551615K"] {
            XCTAssertThrowsError(try ByteSize.parse(bad), "'\(bad)' parsed") { error in
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
    }

    func testFormatRoundTrips() throws {
        XCTAssertEqual(ByteSize.format(0), "0")
        XCTAssertEqual(ByteSize.format(1000), "1000")
        XCTAssertEqual(ByteSize.format(1024), "1K")
        XCTAssertEqual(ByteSize.format(1536), "1536")
        XCTAssertEqual(ByteSize.format(50 << 20), "50M")
        XCTAssertEqual(ByteSize.format(3 << 30), "3G")
        for n: UInt64 in [1, 1023, 4096, 100 << 20, 5 << 30, 123_456_789] {
            XCTAssertEqual(try ByteSize.parse(ByteSize.format(n)), n)
        }
    }
}

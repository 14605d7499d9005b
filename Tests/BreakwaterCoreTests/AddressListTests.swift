import XCTest

@testable import BreakwaterCore

final class AddressListTests: XCTestCase {
    func testEntriesMatchTheFormTheMTASends() throws {
        var c = Config()
        try c.set("skip-senders", "@Lists.Example, Boss@Corp.Example", source: "x", line: 1)
        XCTAssertEqual(c.skipSenders, ["@lists.example", "boss@corp.example"])
        XCTAssertTrue(AddressList.contains(c.skipSenders, "<news@lists.example>"))
        XCTAssertTrue(AddressList.contains(c.skipSenders, "<NEWS@LISTS.EXAMPLE>"))
        XCTAssertTrue(AddressList.contains(c.skipSenders, "boss@corp.example"))
        XCTAssertTrue(AddressList.contains(c.skipSenders, " <Boss@Corp.Example> "))
        XCTAssertFalse(AddressList.contains(c.skipSenders, "<news@otherlists.example.net>"))
        XCTAssertFalse(AddressList.contains(c.skipSenders, "<boss@corp.example.net>"))
        XCTAssertFalse(AddressList.contains(c.skipSenders, "<>"))
        XCTAssertFalse(AddressList.contains([], "<a@b.example>"))
    }
}

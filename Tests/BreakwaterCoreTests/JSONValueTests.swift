import Foundation
import XCTest

@testable import BreakwaterCore

final class JSONValueTests: XCTestCase {
    func testRendersScalarsAndContainers() {
        XCTAssertEqual(JSONValue.string("a").rendered, "\"a\"")
        XCTAssertEqual(JSONValue.int(-42).rendered, "-42")
        XCTAssertEqual(JSONValue.double(0.25).rendered, "0.25")
        XCTAssertEqual(JSONValue.double(.nan).rendered, "null")
        XCTAssertEqual(JSONValue.double(.infinity).rendered, "null")
        XCTAssertEqual(JSONValue.bool(true).rendered, "true")
        XCTAssertEqual(JSONValue.null.rendered, "null")
        XCTAssertEqual(JSONValue.array([]).rendered, "[]")
        XCTAssertEqual(JSONValue.object([]).rendered, "{}")
        XCTAssertEqual(
            JSONValue.object([("b", .int(1)), ("a", .array([.string("x"), .null]))]).rendered,
            "{\"b\":1,\"a\":[\"x\",null]}", "keys keep their order")
    }

    func testEscapesStrings() {
        XCTAssertEqual(JSONValue.string("q\"b\\n\nr\rt\t").rendered, "\"q\\\"b\\\\n\\nr\\rt\\t\"")
        XCTAssertEqual(JSONValue.string("\u{01}\u{1f}").rendered, "\"\\u0001\\u001f\"")
        XCTAssertEqual(JSONValue.string("Zoë ✓ 😀").rendered, "\"Zoë ✓ 😀\"")
    }

    /// Whatever goes in, Foundation's parser reads back the same values.
    func testOutputParsesBack() throws {
        let path = "/tmp/a \"quoted\"\\dir/\u{07}bell\n.eml"
        let v = JSONValue.object([
            ("path", .string(path)), ("n", .int(3)), ("t", .double(0.001234)), ("ok", .bool(false)),
            ("names", .array([.string("Breakwater.Test.EICAR"), .string("x.UNOFFICIAL")])),
        ])
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(v.rendered.utf8)) as? [String: Any])
        XCTAssertEqual(parsed["path"] as? String, path)
        XCTAssertEqual(parsed["n"] as? Int, 3)
        XCTAssertEqual(try XCTUnwrap(parsed["t"] as? Double), 0.001234, accuracy: 1e-12)
        XCTAssertEqual(parsed["ok"] as? Bool, false)
        XCTAssertEqual(parsed["names"] as? [String], ["Breakwater.Test.EICAR", "x.UNOFFICIAL"])
    }
}

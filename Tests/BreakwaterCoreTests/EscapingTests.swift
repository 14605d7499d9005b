import XCTest

@testable import BreakwaterCore

final class EscapingTests: XCTestCase {
    func testControlsAreHexEscaped() {
        XCTAssertEqual(Escape.text("a\u{1b}[2Jb"), "a\\x1b[2Jb")
        XCTAssertEqual(Escape.text("x\r\ny\0z\u{7f}"), "x\\x0d\\x0ay\\x00z\\x7f")
        XCTAssertEqual(Escape.text("tab\there"), "tab\\x09here")
        // C1 controls (0x9b is CSI on 8-bit terminals) by their code point.
        XCTAssertEqual(Escape.text("a\u{9b}2Jb\u{85}"), "a\\x9b2Jb\\x85")
        // Bidirectional overrides and line separators.
        XCTAssertEqual(Escape.text("evil\u{202e}txt.exe\u{2028}"), "evil\\u{202e}txt.exe\\u{2028}")
    }

    func testBackslashIsEscapedSoEscapesCannotBeForged() {
        XCTAssertEqual(Escape.text("\\x1b"), "\\\\x1b")
        XCTAssertNotEqual(Escape.text("\\x1b"), Escape.text("\u{1b}"))
    }

    func testPlainTextIsUnchanged() {
        for s in ["hello world", "Grüße, Jürgen", "日本語のメール", "SRS0=abcd=XY=example.org=user@example.net", ""] {
            XCTAssertEqual(Escape.text(s), s)
        }
        XCTAssertEqual(
            Escape.field("SRS0=abcd=XY=example.org=user@example.net"), "SRS0=abcd=XY=example.org=user@example.net")
    }

    func testFieldCannotForgeAnotherField() {
        let sender = "a> verdict=clean action=accept x=\"y"
        let f = Escape.field(sender)
        XCTAssertFalse(f.contains(" "))
        XCTAssertFalse(f.contains("\""))
        XCTAssertEqual(f, "a>\\x20verdict=clean\\x20action=accept\\x20x=\\x22y")
        let line = "from=<\(f)> verdict=virus"
        XCTAssertEqual(line.split(separator: " ").count, 2)
    }

    func testQuotedCannotCloseItsQuotes() {
        XCTAssertEqual(Escape.quoted("say \"hi\"\u{1b}"), "\"say \\x22hi\\x22\\x1b\"")
        let q = Escape.quoted("a\" verdict=clean \"")
        XCTAssertEqual(q.filter { $0 == "\"" }.count, 2)
    }

    func testNothingUnsafeSurvivesAnyScalar() {
        // Every scalar of the BMP that is a control must come out as an escape.
        var s = ""
        for v in UInt32(0)...0x3000 { if let u = Unicode.Scalar(v) { s.unicodeScalars.append(u) } }
        for out in [Escape.text(s), Escape.field(s), Escape.quoted(s), Escape.shell(s)] {
            XCTAssertFalse(out.unicodeScalars.contains(where: Escape.isUnsafe))
        }
    }

    func testInvalidUTF8() {
        // Raw bytes: valid parts as text, each byte of a broken sequence as \xNN.
        XCTAssertEqual(
            Escape.bytes([0x61, 0xff, 0x62, 0xc3, 0xa9, 0xc3, 0x1b, 0xe2, 0x82]), "a\\xffbé\\xc3\\x1b\\xe2\\x82")
        XCTAssertEqual(Escape.bytes(Array("plain".utf8)), "plain")
        // Decoded (as the milter does): U+FFFD, and JSON of it is valid UTF-8.
        let decoded = String(decoding: [0x41, 0xff, 0xfe, 0x1b, 0x42] as [UInt8], as: UTF8.self)
        XCTAssertEqual(Escape.text(decoded), "A\u{fffd}\u{fffd}\\x1bB")
        let json = JSONValue.string(decoded).rendered
        XCTAssertNotNil(String(validating: Array(json.utf8), as: UTF8.self))
        XCTAssertEqual(json, "\"A\u{fffd}\u{fffd}\\u001bB\"")
    }

    func testJSONEscapesEveryControl() {
        XCTAssertEqual(
            JSONValue.string("\u{1b}[2J\u{7f}\u{9b}\u{202e}\u{2028}\"\\").rendered,
            "\"\\u001b[2J\\u007f\\u009b\\u202e\\u2028\\\"\\\\\"")
        var s = ""
        for v in UInt32(0)...0x3000 { if let u = Unicode.Scalar(v) { s.unicodeScalars.append(u) } }
        let out = JSONValue.string(s).rendered
        XCTAssertFalse(out.unicodeScalars.contains(where: Escape.isUnsafe))
    }

    func testShellQuoting() {
        XCTAssertEqual(Escape.shell("it's"), "'it'\\''s'")
        XCTAssertEqual(Escape.shell("plain"), "'plain'")
        XCTAssertEqual(Escape.shell("a\u{1b}[2J'b\\"), "$'a\\x1b[2J\\'b\\\\'")
        // A C1 control as its two UTF-8 bytes ($'\xNN' is one byte).
        XCTAssertEqual(Escape.shell("x\u{9b}"), "$'x\\xc2\\x9b'")
    }
}

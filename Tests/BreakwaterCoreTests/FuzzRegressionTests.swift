import XCTest

@testable import BreakwaterCore

/// One test per finding of the fuzzers (Fuzz/README.md); each input is also in the fuzzer's seed
/// corpus (Fuzz/corpus/<target>/regress-*).
final class FuzzRegressionTests: XCTestCase {
    /// FuzzConfig: a config file with CRLF line ends (written on Windows) was one line, because
    /// Swift sees "\r\n" as one Character, not as "\n": the first key swallowed the whole file
    /// (socket = "inet:...\r\ncontrol = ...") and every other setting was silently lost.
    func testConfigWithCRLFLineEndsReadsEveryLine() throws {
        var c = Config()
        try c.apply(
            fileText: "socket = inet:8897@127.0.0.1\r\ncontrol = /run/x.sock\r\n\r\n# note\r\nworkers = 3\r\n",
            source: "crlf.conf")
        XCTAssertEqual(c.socket, "inet:8897@127.0.0.1")
        XCTAssertEqual(c.control, "/run/x.sock")
        XCTAssertEqual(c.workers, 3)
        // And an error on such a file names its line.
        var d = Config()
        XCTAssertThrowsError(try d.apply(fileText: "workers = 2\r\nworkerz = 3\r\n", source: "crlf.conf")) { e in
            XCTAssertEqual((e as? ConfigError)?.line, 2)
        }
    }
}

extension FuzzRegressionTests {
    /// FuzzSignature: a regex holding DEL (0x7f) made a signature line with a raw control character
    /// (shown raw by `signatures list`); C0 controls were refused, DEL was not.
    func testSignaturePatternWithDELIsRefused() {
        let p = SignaturePattern.regex("ooooooooooo\u{7F}1oooooooooooooooooo", ignoreCase: true, trigger: nil)
        XCTAssertThrowsError(try SignatureLine.make(name: "Local.Fuzz", pattern: p, prefix: "Local.")) { e in
            XCTAssertEqual(
                (e as? SignatureInputError)?.description, "the regular expression contains the control character 0x7f")
        }
    }

    /// FuzzControl: an answer whose head starts with a combining mark (U+07F2 here) did not parse:
    /// Swift joins the mark and the blank after `ERR` into one Character, so `hasPrefix("ERR ")`
    /// failed and the client reported "unexpected answer".
    func testControlAnswerWithCombiningMarkAtTheStartOfItsHeadParses() {
        let r = ControlProtocol.Response(ok: false, head: "\u{7F2}\u{FFFD}OK RMePx ", body: ["\0"])
        XCTAssertEqual(ControlProtocol.Response.parse(r.rendered), r)
        XCTAssertEqual(
            ControlProtocol.Response.parse("OK \u{301}x\n"), ControlProtocol.Response(ok: true, head: "\u{301}x"))
        XCTAssertNil(ControlProtocol.Response.parse("OKAY\n"))
        XCTAssertNil(ControlProtocol.Response.parse("ERRx\n"))
    }
}

import BreakwaterCore
import XCTest

@testable import BreakwaterWaves

/// What the wave subsystem hands to ops and to the signature tools: reports safe to print, suggestions
/// that make valid signature lines (moved from BreakwaterCoreTests' EscapingTests and LocalSignatureTests).
final class WaveOutputTests: XCTestCase {
    func make(_ name: String, _ p: SignaturePattern) throws -> (SignatureFileKind, String) {
        try SignatureLine.make(name: name, pattern: p, prefix: "Breakwater.Local.")
    }

    func testWaveCommentAndCommandAreSafe() {
        // An encoded-word Subject that decodes to a screen-clearing sequence.
        let subject = WaveSubject.decode("=?utf-8?q?=1B[2J=1B[H_you_won=0D=0A?=")
        XCTAssertTrue(subject.contains("\u{1b}"))
        let w = WaveInfo(
            id: "w1234abcd", active: true, startedAt: 0, endedAt: nil, firstSeen: 0, lastSeen: 0,
            windowCount: 1, totalCount: 1, waveMessages: 1, senders: 1, networks: 1, subject: subject,
            excerpt: "x\u{1b}y", samples: ["alpha bravo charlie delta echo", "alpha bravo charlie delta echo"],
            promotedAs: nil)
        let comment = WaveReport.comment(w)
        XCTAssertNoThrow(try SignatureLine.validateNote(comment, what: "comment"))
        XCTAssertTrue(comment.contains("\\x1b[2J"))
        let text = WaveReport.text([w], now: 0)
        XCTAssertFalse(text.unicodeScalars.contains { $0 != "\n" && Escape.isUnsafe($0) }, text)
        XCTAssertTrue(text.contains("subject: \\x1b[2J\\x1b[H you won"), text)
        let json = WaveReport.json([w], now: 0).rendered
        XCTAssertFalse(json.unicodeScalars.contains(where: Escape.isUnsafe))
        XCTAssertTrue(json.contains("\\u001b[2J"))
    }

    func testWaveSuggestionsMakeValidLines() throws {
        // What `breakwater waves` suggests: words with [^a-z0-9]+ between them, used case-insensitively.
        let s = WaveSuggestion(
            words: ["selected", "to", "receive", "a", "brand", "new", "mini", "cooper"],
            regex:
                "selected[^a-z0-9]+to[^a-z0-9]+receive[^a-z0-9]+a[^a-z0-9]+brand[^a-z0-9]+new[^a-z0-9]+mini[^a-z0-9]+cooper",
            name: "Breakwater.Local.Wave.3fa2c81b")
        let (kind, line) = try make(s.name, .regex(s.regex, ignoreCase: true, trigger: nil))
        XCTAssertEqual(kind, .ldb)
        XCTAssertTrue(line.contains(";73656c6563746564::i;"), line)  // "selected"
    }
}

import Foundation
import XCTest

@testable import BreakwaterCore

/// Signature-line generation and validation for `breakwater signatures add` (the lines are compiled and
/// matched by the real libclamav in BreakwaterEngineTests.SignatureStoreTests).
final class LocalSignatureTests: XCTestCase {
    let prefix = "Breakwater.Local."

    func make(_ name: String, _ p: SignaturePattern) throws -> (SignatureFileKind, String) {
        try SignatureLine.make(name: name, pattern: p, prefix: prefix)
    }

    func refusal(_ name: String, _ p: SignaturePattern, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let made = try make(name, p)
            XCTFail("accepted: \(made)", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    // MARK: names

    func testNamesNeedThePrefixAndSafeCharacters() {
        XCTAssertNoThrow(try SignatureLine.validateName("Breakwater.Local.Spam.Mini-Cooper_2", prefix: prefix))
        XCTAssertTrue(
            refusal("Other.Spam", .text("mini cooper", ignoreCase: false)).contains(
                "does not start with Breakwater.Local."))
        XCTAssertTrue(refusal("Breakwater.Local.", .text("mini cooper", ignoreCase: false)).contains("only the prefix"))
        XCTAssertTrue(refusal("Breakwater.Local.A:B", .text("mini cooper", ignoreCase: false)).contains("':'"))
        XCTAssertTrue(refusal("Breakwater.Local.A;B", .text("mini cooper", ignoreCase: false)).contains("';'"))
        XCTAssertTrue(refusal("Breakwater.Local.A B", .text("mini cooper", ignoreCase: false)).contains("a space"))
        XCTAssertTrue(
            refusal("Breakwater.Local.A\nB", .text("mini cooper", ignoreCase: false)).contains("a line break"))
        XCTAssertTrue(refusal("Breakwater.Local.A\0B", .text("mini cooper", ignoreCase: false)).contains("NUL"))
        XCTAssertTrue(refusal("Breakwater.Local.A..B", .text("mini cooper", ignoreCase: false)).contains("empty part"))
        XCTAssertTrue(refusal("", .text("mini cooper", ignoreCase: false)).contains("empty"))
        XCTAssertNoThrow(try SignatureLine.validateName("Acme.Ops.X", prefix: "Acme.Ops."))
    }

    // MARK: text

    func testOneWordTextIsAnExactExtendedSignature() throws {
        let (kind, line) = try make("Breakwater.Local.T", .text("Cooper", ignoreCase: false))
        XCTAssertEqual(kind, .ndb)
        XCTAssertEqual(line, "Breakwater.Local.T:0:*:436f6f706572")
    }

    func testOneWordIgnoringCaseIsACaseInsensitiveSubsignature() throws {
        let (kind, line) = try make("Breakwater.Local.T", .text("Cooper", ignoreCase: true))
        XCTAssertEqual(kind, .ldb)
        XCTAssertEqual(line, "Breakwater.Local.T;Engine:81-255,Target:0;0;436f6f706572::i")
    }

    func testTextWithBlanksMatchesAnyWhiteSpaceBetweenWords() throws {
        let (kind, line) = try make("Breakwater.Local.T", .text("  mini   cooper  ", ignoreCase: true))
        XCTAssertEqual(kind, .ldb)
        // Trigger: the longest word (case-insensitively); then the PCRE with \s+ between the words.
        XCTAssertEqual(line, "Breakwater.Local.T;Engine:81-255,Target:0;0&1;636f6f706572::i;0/mini\\s+cooper/i")
        let (_, exact) = try make("Breakwater.Local.T", .text("mini cooper", ignoreCase: false))
        XCTAssertEqual(exact, "Breakwater.Local.T;Engine:81-255,Target:0;0&1;636f6f706572;0/mini\\s+cooper/")
    }

    func testTextPunctuationAndNonASCIIBecomeHexEscapes() throws {
        // Regex operators, the database separators ; and :, and the PCRE delimiter / are all literal.
        let (_, line) = try make("Breakwater.Local.T", .text("win $1.000: a/b; (now)? é", ignoreCase: false))
        let pcre = line.components(separatedBy: ";0/").last!
        XCTAssertEqual(pcre, "win\\s+\\x241\\x2e000\\x3a\\s+a\\x2fb\\x3b\\s+\\x28now\\x29\\x3f\\s+\\xc3\\xa9/")
        XCTAssertEqual(line.split(separator: ";").count, 5, "only the four field separators of a logical signature")
        XCTAssertFalse(pcre.dropLast().contains("/"))
    }

    func testTextIsRefusedWhenItCannotMakeASafeSignature() {
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("mini\ncooper", ignoreCase: false)).contains("line break"))
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("mini\r\ncooper", ignoreCase: false)).contains("line break"))
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("mini\0cooper", ignoreCase: false)).contains("NUL"))
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("abc", ignoreCase: false)).contains("shorter than 4"))
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("a b c d e", ignoreCase: false)).contains("no word of 3"))
        XCTAssertTrue(refusal("Breakwater.Local.T", .text("", ignoreCase: false)).contains("empty"))
        XCTAssertTrue(
            refusal("Breakwater.Local.T", .text(String(repeating: "x", count: 2001), ignoreCase: false)).contains(
                "longer than"))
    }

    // MARK: regex

    func testRegexGetsALiteralTriggerAndEscapedSeparators() throws {
        let (kind, line) = try make(
            "Breakwater.Local.R", .regex("claim your (free )?prize: https?://x;y", ignoreCase: true, trigger: nil))
        XCTAssertEqual(kind, .ldb)
        // "claim your " is the longest required literal: the trigger, always case-insensitive.
        XCTAssertEqual(
            line,
            "Breakwater.Local.R;Engine:81-255,Target:0;0&1;636c61696d20796f757220::i;0/claim\\x20your\\x20(free\\x20)?prize\\x3a\\x20https?\\x3a\\/\\/x\\x3by/i"
        )
        let (_, cased) = try make("Breakwater.Local.R", .regex("Mini\\s+Cooper", ignoreCase: false, trigger: nil))
        XCTAssertEqual(cased, "Breakwater.Local.R;Engine:81-255,Target:0;0&1;436f6f706572::i;0/Mini\\s+Cooper/")
    }

    func testEscapedSeparatorsInARegexStayEscaped() throws {
        let (_, line) = try make(
            "Breakwater.Local.R", .regex("abc\\;def\\:ghi\\/jkl\\ mno", ignoreCase: false, trigger: nil))
        XCTAssertTrue(line.hasSuffix(";0/abc\\x3bdef\\x3aghi\\/jkl\\x20mno/"), line)
    }

    func testRequiredLiteral() {
        func lit(_ r: String) -> String? {
            SignatureLine.requiredLiteral(r).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(lit("mini[^a-z0-9]+cooper[^a-z0-9]+giveaway"), "giveaway")
        XCTAssertEqual(lit("abcdef?"), "abcde", "an optional character is not required")
        XCTAssertEqual(lit("abcd*xy"), "abc")
        XCTAssertEqual(lit("abcd{0,3}xy"), "abc")
        XCTAssertEqual(lit("ab{2}cdefg"), "cdefg")
        XCTAssertEqual(lit("abc+defgh"), "defgh")
        XCTAssertEqual(lit("(optional group)?tail"), "tail")
        XCTAssertEqual(lit("\\bprize\\b"), "prize")
        XCTAssertEqual(lit("a\\.b\\x2ecom"), "a.b.com")
        XCTAssertEqual(lit("[xyz]+word"), "word")
        XCTAssertNil(lit("foo|barbaz"), "a top-level alternative requires nothing")
        XCTAssertEqual(lit("(foo|bar)bazz"), "bazz")
        XCTAssertNil(lit("\\d+\\s+\\w+"))
        XCTAssertNil(lit("(?x) mini \\s+ cooper"), "blanks mean nothing in extended mode")
        XCTAssertEqual(lit("[]abc]defg"), "defg")
    }

    func testRegexWithoutALiteralNeedsATrigger() throws {
        let msg = refusal("Breakwater.Local.R", .regex("(gift|prize)\\s+(card|box)", ignoreCase: true, trigger: nil))
        XCTAssertTrue(msg.contains("--trigger"), msg)
        let (_, line) = try make(
            "Breakwater.Local.R", .regex("(gift|prize)\\s+(card|box)", ignoreCase: true, trigger: "card"))
        XCTAssertEqual(line, "Breakwater.Local.R;Engine:81-255,Target:0;0&1;63617264::i;0/(gift|prize)\\s+(card|box)/i")
        XCTAssertTrue(
            refusal("Breakwater.Local.R", .regex("x+", ignoreCase: true, trigger: "ab")).contains("shorter than 3"))
        XCTAssertTrue(
            refusal("Breakwater.Local.R", .regex("abcd\\", ignoreCase: true, trigger: nil)).contains("lone backslash"))
        XCTAssertTrue(
            refusal("Breakwater.Local.R", .regex("abcd\\Q;\\E", ignoreCase: true, trigger: nil)).contains("\\Q"))
        XCTAssertTrue(
            refusal("Breakwater.Local.R", .regex("abcd\nefgh", ignoreCase: true, trigger: nil)).contains("line break"))
    }

    // MARK: hex and hashes

    func testHexIsNormalisedAndChecked() throws {
        XCTAssertEqual(
            try make("Breakwater.Local.H", .hex("DEADbeef??{2-4}(aa|bb)*cafe")).1,
            "Breakwater.Local.H:0:*:deadbeef??{2-4}(aa|bb)*cafe")
        XCTAssertTrue(refusal("Breakwater.Local.H", .hex("dead:beef")).contains("':'"))
        XCTAssertTrue(refusal("Breakwater.Local.H", .hex("dead beef")).contains("a space"))
        XCTAssertTrue(refusal("Breakwater.Local.H", .hex("xyz0")).contains("'x'"))
        XCTAssertTrue(refusal("Breakwater.Local.H", .hex("ab??")).contains("fewer than 2 bytes"))
    }

    func testHashLines() throws {
        let h = String(repeating: "AB", count: 32)
        XCTAssertEqual(
            try make("Breakwater.Local.X", .sha256(h, size: 17)).1, "\(h.lowercased()):17:Breakwater.Local.X")
        XCTAssertEqual(try make("Breakwater.Local.X", .sha256(h, size: 17)).0, .hsb)
        XCTAssertTrue(refusal("Breakwater.Local.X", .sha256(h, size: 0)).contains("empty"))
        XCTAssertTrue(refusal("Breakwater.Local.X", .sha256("abc", size: 3)).contains("not a SHA-256"))
    }

    func testNotesAreOneLine() {
        XCTAssertNoThrow(try SignatureLine.validateNote("wave of 12:00; see ticket #42", what: "comment"))
        XCTAssertThrowsError(try SignatureLine.validateNote("two\nlines", what: "comment"))
        XCTAssertThrowsError(try SignatureLine.validateNote("nul\0", what: "comment"))
        XCTAssertThrowsError(try SignatureLine.validateNote(String(repeating: "x", count: 501), what: "comment"))
    }

    // MARK: owned files and the catalog

    func testOwnedFileRoundTripsNotesAndKeepsHandAddedLines() {
        let note = SignatureNote(
            author: "ops", added: "2025-01-02T03:04:05Z", pattern: "text: a\tb \\ c", comment: "wave: 12:00")
        var f = OwnedSignatureFile(kind: .ldb)
        f.entries.append(
            .init(name: "Breakwater.Local.A", line: "Breakwater.Local.A;Engine:81-255,Target:0;0;616263::i", note: note)
        )
        var text = f.render()
        XCTAssertTrue(text.hasPrefix("# "))
        text += "Breakwater.Local.ByHand;Engine:81-255,Target:0;0;646566\n"
        let back = OwnedSignatureFile.parse(text, kind: .ldb)
        XCTAssertEqual(back.entries.count, 2)
        XCTAssertEqual(back.entries[0], f.entries[0])
        XCTAssertEqual(back.entries[1].name, "Breakwater.Local.ByHand")
        XCTAssertNil(back.entries[1].note)
        // A note line names its signature: a note before another signature is not attached to it.
        let misplaced = OwnedSignatureFile.parse(
            "#@ Breakwater.Local.Other\tauthor=x\nBreakwater.Local.A:0:*:616263\n", kind: .ndb)
        XCTAssertNil(misplaced.entries[0].note)
    }

    func testCatalogNamesEveryFormat() {
        XCTAssertEqual(SignatureCatalog.name(ofLine: "N.a:0:*:6162", type: "ndb"), "N.a")
        XCTAssertEqual(SignatureCatalog.name(ofLine: "N.b;Engine:81-255,Target:0;0;6162", type: "ldb"), "N.b")
        XCTAssertEqual(SignatureCatalog.name(ofLine: "abc:12:N.c:73", type: "hsb"), "N.c")
        XCTAssertEqual(SignatureCatalog.name(ofLine: "N.d:CL_TYPE_ZIP:*:.*\\.exe$:*:*:*:*:*:*", type: "cdb"), "N.d")
        XCTAssertEqual(SignatureCatalog.name(ofLine: "private rule N_e : tag {", type: "yara"), "N_e")
        XCTAssertEqual(SignatureCatalog.name(ofLine: "rule N_f{", type: "yar"), "N_f")
        XCTAssertNil(SignatureCatalog.name(ofLine: "# N.g:0:*:6162", type: "ndb"))
        XCTAssertNil(SignatureCatalog.name(ofLine: "   ", type: "ndb"))
        XCTAssertNil(SignatureCatalog.name(ofLine: "anything", type: "fp"))
    }

    // MARK: directory state (self-check)

    func testDirectoryStateSeesAddedChangedRemovedAndIgnoresOtherFiles() throws {
        let dir = NSTemporaryDirectory() + "bw-dirstate-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s0 = SignatureDirectoryState.capture([dir, dir + "/missing"])
        XCTAssertEqual(s0.unreadable, [dir + "/missing"])
        try "A:0:*:6162\n".write(toFile: dir + "/a.ndb", atomically: false, encoding: .utf8)
        let s1 = SignatureDirectoryState.capture([dir, dir + "/missing"])
        XCTAssertEqual(s1.changes(since: s0), ["added \(dir)/a.ndb"])
        // Temporary, lock and hidden files are not signatures.
        try "x".write(toFile: dir + "/.a.ndb.tmp.123", atomically: false, encoding: .utf8)
        try "x".write(toFile: dir + "/notes.txt", atomically: false, encoding: .utf8)
        XCTAssertEqual(SignatureDirectoryState.capture([dir, dir + "/missing"]).changes(since: s1), [])
        // Rewritten in place with the same size: the modification time says so.
        usleep(20_000)
        try "B:0:*:6162\n".write(toFile: dir + "/a.ndb", atomically: false, encoding: .utf8)
        let s2 = SignatureDirectoryState.capture([dir, dir + "/missing"])
        XCTAssertEqual(s2.changes(since: s1), ["changed \(dir)/a.ndb"])
        // Replaced by rename (a new inode), permissions changed, removed.
        try "C:0:*:6162\n".write(toFile: dir + "/a.ndb", atomically: true, encoding: .utf8)
        let s3 = SignatureDirectoryState.capture([dir])
        XCTAssertEqual(s3.changes(since: s2), ["can read \(dir)/missing again", "changed \(dir)/a.ndb"])
        chmod(dir + "/a.ndb", 0o600)
        XCTAssertEqual(SignatureDirectoryState.capture([dir]).changes(since: s3), ["changed \(dir)/a.ndb"])
        unlink(dir + "/a.ndb")
        XCTAssertEqual(SignatureDirectoryState.capture([dir]).changes(since: s3), ["removed \(dir)/a.ndb"])
    }

    // MARK: control protocol framing

    func testControlResponsesRoundTrip() {
        let r = ControlProtocol.Response(ok: false, head: "reload failed:\nline two", body: ["{\"a\":1}", "x\ny"])
        XCTAssertEqual(r.rendered, "ERR reload failed: line two\n{\"a\":1}\nx y\n")
        XCTAssertEqual(
            ControlProtocol.Response.parse(r.rendered),
            ControlProtocol.Response(ok: false, head: "reload failed: line two", body: ["{\"a\":1}", "x y"]))
        XCTAssertEqual(
            ControlProtocol.Response.parse("OK\n{}\n"), ControlProtocol.Response(ok: true, head: "", body: ["{}"]))
        XCTAssertEqual(
            ControlProtocol.Response.parse("OK generation 3 signatures 42 ms 9\n")?.head,
            "generation 3 signatures 42 ms 9")
        XCTAssertNil(ControlProtocol.Response.parse("HTTP/1.1 200 OK\n"))
        XCTAssertNil(ControlProtocol.Response.parse(""))
    }

    func testControlClientSaysWhenNoDaemonRuns() {
        let path = NSTemporaryDirectory() + "bw-nosuch-" + UUID().uuidString + ".sock"
        XCTAssertThrowsError(try ControlProtocol.request("PING", socket: path, timeout: 1)) { e in
            guard case ControlProtocol.ClientError.notRunning = e else { return XCTFail("\(e)") }
        }
        // A path longer than sun_path is reached through its directory (/proc/self/fd/N/NAME).
        let long = NSTemporaryDirectory() + "bw-" + String(repeating: "x", count: 120)
        try? FileManager.default.createDirectory(atPath: long, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: long) }
        XCTAssertThrowsError(try ControlProtocol.request("PING", socket: long + "/control.sock", timeout: 1)) { e in
            guard case ControlProtocol.ClientError.notRunning = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(
            ControlProtocol.withAddress(long + "/control.sock") { addr in
                withUnsafeBytes(of: &addr.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            }?.hasPrefix("/proc/self/fd/"), true)
        XCTAssertNil(
            ControlProtocol.withAddress(long + "/" + String(repeating: "y", count: 120)) { _ in 0 },
            "the name alone is too long")
    }

    // MARK: configuration

    func testOpsKeys() throws {
        var c = Config()
        XCTAssertEqual(c.ops.selfCheck, 5)
        XCTAssertEqual(c.ops.controlMode, 0o660)
        XCTAssertEqual(c.ops.localPrefix, "Breakwater.Local.")
        XCTAssertFalse(c.ops.officialSignatures)
        try c.apply(
            fileText: "self-check = 0\ncontrol-mode = 0600\nlocal-prefix = Acme.Ops.\nofficial-signatures = yes\n",
            source: "t.conf")
        XCTAssertEqual(c.ops.selfCheck, 0)
        XCTAssertEqual(c.ops.controlMode, 0o600)
        XCTAssertEqual(c.ops.localPrefix, "Acme.Ops.")
        XCTAssertTrue(c.ops.officialSignatures)
        for (text, expect) in [
            ("self-check = 10ms", "t.conf:1: self-check: '10ms' is out of range"),
            ("control-mode = 0999", "t.conf:1: control-mode: '0999' is not an octal mode"),
            ("local-prefix = Bad:Prefix", "t.conf:1: local-prefix: 'Bad:Prefix' is not a name prefix"),
        ] {
            var d = Config()
            XCTAssertThrowsError(try d.apply(fileText: text, source: "t.conf")) { e in
                XCTAssertTrue("\(e)".hasPrefix(expect), "\(e)")
            }
        }
    }
}

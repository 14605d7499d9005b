import XCTest

@testable import BreakwaterCore

final class ConfigTests: XCTestCase {
    func testDefaults() {
        let c = Config()
        XCTAssertEqual(c.socket, "inet:8897@127.0.0.1")
        XCTAssertEqual(c.maxWaiting, 256)
        XCTAssertEqual(c.maxMessageSize, 25 << 20)
        XCTAssertEqual(c.memoryBudget, 256 << 20)
        XCTAssertEqual(c.workers, Config.cores)
        XCTAssertEqual(c.onOversize, .accept)
        XCTAssertEqual(c.onScanError, .tempfail)
        XCTAssertEqual(c.onLimit, .accept)
        XCTAssertEqual(c.onNestingLimit, .reject)
        // clamd's defaults (clamd.conf(5), libclamav 1.4), so no payload passes here that clamd finds.
        XCTAssertEqual(c.limits.maxRecursion, 17)
        XCTAssertEqual(c.limits.maxFiles, 10_000)
        XCTAssertEqual(c.limits.maxFileSize, 100 << 20)
        XCTAssertEqual(c.limits.maxScanSize, 400 << 20)
        XCTAssertEqual(c.limits.maxScanTimeMilliseconds, 120_000)
    }

    func testOnNestingLimitKey() throws {
        var c = Config()
        try c.apply(fileText: "on-nesting-limit = quarantine\non-limit = reject\n", source: "t.conf")
        XCTAssertEqual(c.onNestingLimit, .quarantine)
        XCTAssertEqual(c.onLimit, .reject)
        var bad = Config()
        XCTAssertThrowsError(try bad.apply(fileText: "\non-nesting-limit = tempfail\n", source: "t.conf")) { e in
            XCTAssertTrue("\(e)".hasPrefix("t.conf:2: "), "\(e)")
        }
    }

    func testParsesFileWithCommentsQuotesAndRepeatables() throws {
        var c = Config()
        try c.apply(
            fileText: """
                # a comment
                socket = unix:/var/spool/postfix/breakwater/milter.sock

                workers = 3
                max-wait = 500ms
                memory-budget = 64M
                action = Breakwater.Spam.* tag
                action = *.Phish.* quarantine
                reject-message = "  Go away: %s  "
                skip-networks = 10.0.0.0/8, 2001:db8::/32
                skip-authenticated = yes
                heuristics = none
                """, source: "t.conf")
        XCTAssertEqual(c.socket, "unix:/var/spool/postfix/breakwater/milter.sock")
        XCTAssertEqual(c.workers, 3)
        XCTAssertEqual(c.maxWait, 0.5, accuracy: 1e-9)
        XCTAssertEqual(c.memoryBudget, 64 << 20)
        XCTAssertEqual(
            c.actions,
            [
                ActionRule(pattern: "Breakwater.Spam.*", action: .tag),
                ActionRule(pattern: "*.Phish.*", action: .quarantine),
            ])
        XCTAssertEqual(c.rejectMessage, "  Go away: %s  ")
        XCTAssertEqual(c.skipNetworks.count, 2)
        XCTAssertTrue(c.skipAuthenticated)
        XCTAssertEqual(c.limits.heuristics, [])
    }

    func assertError(
        _ text: String, line: Int?, contains: String, file: StaticString = #filePath, fileLine: UInt = #line
    ) {
        var c = Config()
        do {
            try c.apply(fileText: text, source: "/etc/breakwater/breakwater.conf")
            XCTFail("no error for \(text)", file: file, line: fileLine)
        } catch {
            XCTAssertEqual(error.line, line, file: file, line: fileLine)
            XCTAssertEqual(error.source, "/etc/breakwater/breakwater.conf", file: file, line: fileLine)
            XCTAssertTrue(
                error.description.contains(contains), "\(error) lacks \(contains)", file: file, line: fileLine)
            if let line {
                XCTAssertTrue(
                    error.description.hasPrefix("/etc/breakwater/breakwater.conf:\(line): "), file: file, line: fileLine
                )
            }
        }
    }

    func testErrorsNameFileAndLine() {
        assertError("workers = 2\nworkerz = 3\n", line: 2, contains: "unknown key 'workerz' (did you mean 'workers'?)")
        assertError("\n\nworkers = many\n", line: 3, contains: "workers: 'many' is not a whole number")
        assertError("workers = 0", line: 1, contains: "out of range")
        assertError("memory-budget = 10MiB", line: 1, contains: "write 10M")
        assertError("socket = /tmp/x.sock", line: 1, contains: "unix:/path or inet:PORT@HOST")
        assertError("on-oversize = tempfail", line: 1, contains: "retry")
        assertError("action = *.Spam.*", line: 1, contains: "GLOB ACTION")
        assertError("action = * explode", line: 1, contains: "GLOB ACTION")
        assertError("skip-networks = 10.0.0.0/33", line: 1, contains: "not a network")
        assertError("just words", line: 1, contains: "expected 'key = value'")
        assertError("workers = 1\nworkers = 2", line: 2, contains: "already set on line 1")
        assertError("max-wait = soon", line: 1, contains: "not a duration")
        assertError("skip-authenticated = maybe", line: 1, contains: "not yes or no")
        assertError("heuristics = macros,frobs", line: 1, contains: "unknown heuristic 'frobs'")
    }

    func testMissingFiles() {
        var c = Config()
        XCTAssertNoThrow(try c.load(path: "/nonexistent/breakwater.conf", required: false))
        do {
            try c.load(path: "/nonexistent/breakwater.conf", required: true)
            XCTFail("a missing --config file must be an error")
        } catch {
            XCTAssertTrue(error.description.contains("/nonexistent/breakwater.conf"))
            XCTAssertTrue(error.description.contains("No such file"))
        }
    }

    func testResolveAppliesFlagsOverTheFileAndFlagSignaturesReplaceTheFiles() throws {
        let path = NSTemporaryDirectory() + "/bw-resolve-\(getpid()).conf"
        let text = "workers = 3\nsignatures = /from/file\nmax-waiting = 7\n"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        defer { unlink(path) }
        let c = try Config.resolve(path: path, flags: [("workers", "5"), ("signatures", "/a"), ("signatures", "/b")])
        XCTAssertEqual(c.workers, 5)
        XCTAssertEqual(c.maxWaiting, 7)
        XCTAssertEqual(c.signatures, ["/a", "/b"])
        let f = try Config.resolve(path: path, flags: [])
        XCTAssertEqual(f.signatures, ["/from/file"])
        XCTAssertThrowsError(try Config.resolve(path: path, flags: [("no-such-key", "1")])) { e in
            XCTAssertTrue("\(e)".contains("no-such-key"), "\(e)")
        }
        XCTAssertThrowsError(try Config.resolve(path: path + ".missing", flags: []))
    }

    func testScanTemporaryDirectoryFollowsTheSpoolUnlessSet() throws {
        var c = Config()
        XCTAssertNil(c.limits.temporaryDirectory)
        try c.set("spool-directory", "/var/spool/bw", source: "x", line: nil)
        XCTAssertEqual(c.limits.temporaryDirectory, "/var/spool/bw")
        var d = Config()
        try d.set("scan-temporary-directory", "/run/breakwater", source: "x", line: 1)
        try d.set("spool-directory", "/var/spool/bw", source: "x", line: 2)
        XCTAssertEqual(d.spoolDirectory, "/var/spool/bw")
        XCTAssertEqual(d.limits.temporaryDirectory, "/run/breakwater")
    }

    func testCrossKeyValidation() throws {
        var c = Config()
        try c.set("memory-budget", "1M", source: "x", line: nil)
        try c.set("spool-threshold", "2M", source: "x", line: nil)
        XCTAssertThrowsError(try c.validate())
        // A spool budget below max-message-size could never hold the largest message.
        var d = Config()
        try d.set("spool-budget", "10M", source: "x", line: nil)
        XCTAssertThrowsError(try d.validate()) { e in
            XCTAssertTrue("\(e)".contains("spool-budget"), "\(e)")
        }
        try d.set("max-message-size", "10M", source: "x", line: nil)
        XCTAssertNoThrow(try d.validate())
        XCTAssertEqual(Config().spoolBudget, 1 << 30)
    }

    func testDocumentedDefaultsParseBack() throws {
        // Every line of the generated file is a comment: uncommenting each key must parse.
        let text = Config.documentedDefaults()
        var c = Config()
        try c.apply(fileText: text, source: "defaults")
        var keysSeen = Set<String>()
        for line in text.split(separator: "\n") where line.hasPrefix("#") && line.contains(" = ") {
            let name = line.dropFirst().split(separator: " ").first.map(String.init) ?? ""
            if Config.keys.contains(where: { $0.name == name }) { keysSeen.insert(name) }
        }
        XCTAssertEqual(keysSeen, Set(Config.keys.map(\.name)))
    }

    /// Each default is stated once, in `Config`'s initialisers; a key's default text is written from
    /// it. Setting every key to its default text must give back the same configuration, key by key: a
    /// formatter that disagrees with its key's parser (a unit, a list separator, octal) fails here.
    func testEveryDefaultTextParsesBackToTheDefault() throws {
        let builtIn = Config()
        for k in Config.keys {
            guard let show = k.show else { continue }
            XCTAssertEqual(k.defaultText, show(builtIn), k.name)
            var c = Config()
            try c.set(k.name, k.defaultText, source: "default of \(k.name)", line: nil)
            for other in Config.keys {
                guard let showOther = other.show else { continue }
                XCTAssertEqual(
                    showOther(c), showOther(builtIn), "setting \(k.name) = \(k.defaultText) changed \(other.name)")
            }
        }
    }

    /// The keys whose default is not one value of `Config()` but a description, and what each means.
    /// A new key belongs here only when its default really depends on the machine, the environment or
    /// another key; everything else gets a `show`.
    func testDescribedDefaults() {
        let described = Dictionary(
            uniqueKeysWithValues: Config.keys.filter { $0.show == nil }.map { ($0.name, $0.defaultText) })
        XCTAssertEqual(
            described,
            [
                "signatures": SignatureLocations.installedShipped,
                "workers": "number of cores",
                "spool-directory": "$TMPDIR or /tmp",
                "scan-temporary-directory": "in memory, else the spool directory",
                "crash-directory": "spool-directory/crash",
                "action": "(see below)",
            ])
        let c = Config()
        // Empty means the shipped set: the installed one, or the checkout's Signatures/ from a build tree.
        XCTAssertEqual(c.signatures, [])
        XCTAssertEqual(c.workers, Config.cores)
        XCTAssertEqual(c.spoolDirectory, Config.defaultTemporaryDirectory)
        XCTAssertNil(c.scanTemporaryDirectory)
        XCTAssertNil(c.limits.temporaryDirectory)
        // The built-in rules apply after the configured ones; documentedDefaults() lists them.
        XCTAssertEqual(c.actions, [])
        XCTAssertTrue(Config.documentedDefaults().contains("#action = \(ActionRule.defaults[0])\n"))
    }

    func testDefaultTextFormatters() {
        XCTAssertEqual(ConfigText.seconds(20), "20s")
        XCTAssertEqual(ConfigText.seconds(0.5), "500ms")
        XCTAssertEqual(ConfigText.minutes(600), "10m")
        XCTAssertEqual(ConfigText.minutes(90), "90s")
        XCTAssertEqual(ConfigText.octal(0o660), "0660")
        XCTAssertEqual(ConfigText.octal(0o7), "0007")
        XCTAssertEqual(ConfigText.heuristics([]), "none")
        XCTAssertEqual(ConfigText.heuristics([.phishing, .encryptedArchives]), "encrypted-archives,phishing")
        XCTAssertEqual(ConfigText.list([]), "")
    }

    func testCIDR() {
        let v4 = CIDR("192.0.2.0/24")!
        XCTAssertTrue(v4.contains("192.0.2.77"))
        XCTAssertFalse(v4.contains("192.0.3.1"))
        XCTAssertTrue(v4.contains("::ffff:192.0.2.5"))
        let v6 = CIDR("2001:db8::/32")!
        XCTAssertTrue(v6.contains("2001:db8:1::1"))
        XCTAssertFalse(v6.contains("2001:db9::1"))
        XCTAssertTrue(CIDR("10.1.2.3")!.contains("10.1.2.3"))
        XCTAssertNil(CIDR("300.1.1.1/8"))
        XCTAssertNil(CIDR("10.0.0.0/40"))
        XCTAssertEqual(CIDR("10.1.0.0/16")!.description, "10.1.0.0/16")
    }
}

import XCTest

@testable import BreakwaterCore

final class PolicyTests: XCTestCase {
    func found(_ names: String...) -> ScanResult {
        ScanResult(finding: .found(names.map { Detection(rawName: $0) }), seconds: 0.001, bytes: 100)
    }

    func testGlob() {
        XCTAssertTrue(globMatch("*.Spam.*", "Breakwater.Spam.MiniCooper"))
        XCTAssertTrue(globMatch("Breakwater.*", "Breakwater.X"))
        XCTAssertFalse(globMatch("Breakwater.*", "Other.X"))
        XCTAssertTrue(globMatch("a?c", "abc"))
        XCTAssertFalse(globMatch("a?c", "ac"))
        XCTAssertTrue(globMatch("*", ""))
        XCTAssertTrue(globMatch("*a*b*", "xxaxxbxx"))
    }

    func testDefaultsRejectThreatsTagHeuristics() {
        let p = Policy(config: Config())
        let d = p.decide(found("Breakwater.Malware.X.UNOFFICIAL"))
        XCTAssertEqual(d.action, .reject)
        XCTAssertEqual(d.reply?.code, "550")
        XCTAssertEqual(d.reply?.status, "5.7.1")
        XCTAssertEqual(d.reply?.text, "Rejected: Breakwater.Malware.X")
        XCTAssertEqual(d.signatures, ["Breakwater.Malware.X"])
        XCTAssertEqual(p.decide(found("Heuristics.Encrypted.Zip")).action, .tag)
        XCTAssertEqual(p.decide(found("Breakwater.Phish.Y")).action, .reject)
        XCTAssertEqual(p.decide(found("Breakwater.Test.EICAR")).action, .reject)
    }

    func testReplyTemplate() {
        XCTAssertEqual(ReplyTemplate("Rejected: %s").render("X.Y"), "Rejected: X.Y")
        XCTAssertEqual(ReplyTemplate("%s found, %s refused").render("V"), "V found, V refused")
        XCTAssertEqual(ReplyTemplate("%s").render("V"), "V")
        XCTAssertEqual(ReplyTemplate("No virus here").render("V"), "No virus here V")
        XCTAssertEqual(ReplyTemplate("").render("V"), " V")
        var c = Config()
        c.rejectMessage = "Go away (%s)"
        XCTAssertEqual(
            Policy(config: c).decide(found("Breakwater.Malware.X")).reply?.text, "Go away (Breakwater.Malware.X)")
    }

    func testStrongestActionWinsAcrossMatches() {
        var c = Config()
        c.actions = [ActionRule(pattern: "*.Spam.*", action: .tag)]
        let p = Policy(config: c)
        XCTAssertEqual(p.decide(found("Breakwater.Spam.A")).action, .tag)
        let both = p.decide(found("Breakwater.Spam.A", "Breakwater.Malware.B"))
        XCTAssertEqual(both.action, .reject)
        XCTAssertEqual(both.reply?.text, "Rejected: Breakwater.Malware.B")
        XCTAssertEqual(both.signatures, ["Breakwater.Spam.A", "Breakwater.Malware.B"])
    }

    /// The strictest action any detection can get: the reachable rules (up to the first catch-all)
    /// and the two limit actions.
    func testStrictestScanAction() {
        XCTAssertEqual(Policy(config: Config()).strictestAction, .reject)
        var c = Config()
        c.actions = [ActionRule(pattern: "*", action: .tag)]
        c.onNestingLimit = .tag
        // The built-in rules after the configured catch-all are never reached.
        XCTAssertEqual(Policy(config: c).strictestAction, .tag)
        c.onLimit = .quarantine
        XCTAssertEqual(Policy(config: c).strictestAction, .quarantine)
        c.actions = [ActionRule(pattern: "*.Spam.*", action: .tempfail), ActionRule(pattern: "**", action: .tag)]
        c.onLimit = .accept
        XCTAssertEqual(Policy(config: c).strictestAction, .tempfail)
        // No catch-all: a name no rule matches gets reject.
        XCTAssertEqual(
            Policy.strictestScanAction(
                rules: [ActionRule(pattern: "A.*", action: .tag)], onLimit: .accept, onNestingLimit: .accept),
            .reject)
        XCTAssertEqual(
            Policy.strictestScanAction(rules: [], onLimit: .accept, onNestingLimit: .discard), .reject)
    }

    /// A first-match scan is the verdict only when its one signature's action is the strictest any
    /// name can get; a weaker first match, a heuristic or a limit means a scan for every match.
    func testFirstMatchSettlesOnlyAtTheStrictestAction() {
        let p = Policy(config: Config())
        XCTAssertTrue(p.settles(firstMatch: ScanResult(finding: .clean, seconds: 0, bytes: 1)))
        XCTAssertTrue(p.settles(firstMatch: ScanResult(finding: .error("x"), seconds: 0, bytes: 1)))
        XCTAssertTrue(p.settles(firstMatch: found("Breakwater.Malware.X.UNOFFICIAL")))
        XCTAssertTrue(p.settles(firstMatch: found("Anything.Else")))
        XCTAssertFalse(p.settles(firstMatch: found("Heuristics.Encrypted.Zip")))
        XCTAssertFalse(p.settles(firstMatch: found("Heuristics.Limits.Exceeded.MaxRecursion")))
        XCTAssertFalse(p.settles(firstMatch: found("Breakwater.Malware.X", "Heuristics.Limits.Exceeded.MaxFileSize")))
        XCTAssertFalse(p.settles(firstMatch: ScanResult(finding: .found([]), seconds: 0, bytes: 1)))

        var c = Config()
        c.actions = [ActionRule(pattern: "*.Spam.*", action: .tag)]
        let tagging = Policy(config: c)
        XCTAssertFalse(tagging.settles(firstMatch: found("Breakwater.Spam.A")))
        XCTAssertTrue(tagging.settles(firstMatch: found("Breakwater.Malware.B")))

        // Everything tagged: a tag is already the strictest, unless a limit could reject.
        c.actions = [ActionRule(pattern: "*", action: .tag)]
        c.onNestingLimit = .reject
        XCTAssertFalse(Policy(config: c).settles(firstMatch: found("Breakwater.Spam.A")))
        c.onNestingLimit = .tag
        XCTAssertTrue(Policy(config: c).settles(firstMatch: found("Breakwater.Spam.A")))
    }

    /// Whenever a first match settles, the decision on it is the decision on every match that could
    /// come with it (same action, same reply).
    func testSettledFirstMatchDecidesAsAllMatches() {
        let configs: [[ActionRule]] = [
            [], [ActionRule(pattern: "*.Spam.*", action: .tag)], [ActionRule(pattern: "*", action: .tag)],
            [ActionRule(pattern: "*.Phish.*", action: .tempfail), ActionRule(pattern: "*", action: .quarantine)],
        ]
        let names = [
            "B.Malware.X", "B.Spam.Y", "B.Phish.Z", "Heuristics.Encrypted.Zip", "Heuristics.Limits.Exceeded.MaxFiles",
            "Heuristics.Limits.Exceeded.MaxScanSize", "Other",
        ]
        for rules in configs {
            var c = Config()
            c.actions = rules
            let p = Policy(config: c)
            for first in names where p.settles(firstMatch: found(first)) {
                let settled = p.decide(found(first))
                for other in names {
                    let all = p.decide(found(first, other))
                    XCTAssertEqual(settled.action, all.action, "\(rules) \(first) + \(other)")
                    XCTAssertEqual(settled.reply?.text, all.reply?.text, "\(rules) \(first) + \(other)")
                }
            }
        }
    }

    func testCleanGetsScannedHeaderUnlessOff() {
        var c = Config()
        let d = Policy(config: c).decide(ScanResult(finding: .clean, seconds: 0, bytes: 1))
        XCTAssertEqual(d.action, .accept)
        XCTAssertEqual(d.headers.first?.0, "X-Virus-Scanned")
        c.scannedHeader = ""
        XCTAssertTrue(Policy(config: c).decide(ScanResult(finding: .clean, seconds: 0, bytes: 1)).headers.isEmpty)
    }

    func testLimitIsNeverSilentlyClean() {
        let p = Policy(config: Config())
        let d = p.decide(found("Heuristics.Limits.Exceeded.MaxFileSize"))
        XCTAssertEqual(d.verdict, .limit)
        XCTAssertEqual(d.action, .accept)
        XCTAssertTrue(d.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains("MaxFileSize") })
        var c = Config()
        c.onLimit = .reject
        let r = Policy(config: c).decide(found("Heuristics.Limits.Exceeded.MaxScanSize"))
        XCTAssertEqual(r.reply?.code, "552")
        XCTAssertEqual(r.reply?.status, "5.3.4")
    }

    /// Nesting limits (max-recursion, max-files, libclamav's MIME-structure bounds) and size/time limits
    /// are answered apart: by default a message nested past the scan is rejected (550 5.7.1), one too
    /// large to scan whole is accepted with a header, as on-oversize answers a message over
    /// max-message-size.
    func testNestingAndSizeLimitsAreAnsweredApart() {
        let nesting = [
            "MaxRecursion", "MaxFiles", "EmailMIMEPartsPerMessage", "EmailHeaders", "EmailHeaderBytes",
            "EmailLineFoldCnt", "EmailMIMEArguments",
        ]
        for n in nesting {
            XCTAssertEqual(Detection(rawName: "Heuristics.Limits.Exceeded.\(n)").limitKind, .nesting, n)
        }
        for n in ["MaxFileSize", "MaxScanSize", "MaxScanTime"] {
            XCTAssertEqual(Detection(rawName: "Heuristics.Limits.Exceeded.\(n)").limitKind, .size, n)
        }
        // A limit name this libclamav does not have yet gets the stricter answer.
        XCTAssertEqual(Detection(rawName: "Heuristics.Limits.Exceeded.SomethingNew").limitKind, .nesting)
        XCTAssertEqual(Detection(rawName: "Heuristics.Limits.Exceeded").limitKind, .nesting)
        XCTAssertNil(Detection(rawName: "Breakwater.Malware.X").limitKind)

        let p = Policy(config: Config())
        let deep = p.decide(found("Heuristics.Limits.Exceeded.MaxRecursion"))
        XCTAssertEqual(deep.verdict, .limit)
        XCTAssertEqual(deep.action, .reject)
        XCTAssertEqual(deep.reply?.code, "550")
        XCTAssertEqual(deep.reply?.status, "5.7.1")
        XCTAssertEqual(
            deep.reply?.text, "Message not accepted: exceeds scan limit (Heuristics.Limits.Exceeded.MaxRecursion)")
        XCTAssertEqual(deep.signatures, ["Heuristics.Limits.Exceeded.MaxRecursion"])
        XCTAssertTrue(deep.headers.isEmpty)
        XCTAssertEqual(p.decide(found("Heuristics.Limits.Exceeded.MaxFiles")).action, .reject)
        XCTAssertEqual(p.decide(found("Heuristics.Limits.Exceeded.EmailMIMEPartsPerMessage")).action, .reject)
        for n in ["MaxFileSize", "MaxScanSize", "MaxScanTime"] {
            let d = p.decide(found("Heuristics.Limits.Exceeded.\(n)"))
            XCTAssertEqual(d.action, .accept, n)
            XCTAssertTrue(d.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains(n) }, n)
        }
        // Both kinds in one scan: the stronger action, naming its limit.
        let both = p.decide(found("Heuristics.Limits.Exceeded.MaxFileSize", "Heuristics.Limits.Exceeded.MaxRecursion"))
        XCTAssertEqual(both.action, .reject)
        XCTAssertEqual(both.signatures, ["Heuristics.Limits.Exceeded.MaxRecursion"])

        // The keys move each kind on its own.
        var c = Config()
        c.onNestingLimit = .quarantine
        c.onLimit = .reject
        let q = Policy(config: c)
        let held = q.decide(found("Heuristics.Limits.Exceeded.MaxRecursion"))
        XCTAssertEqual(held.action, .quarantine)
        XCTAssertTrue(held.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains("MaxRecursion") })
        let big = q.decide(found("Heuristics.Limits.Exceeded.MaxScanTime"))
        XCTAssertEqual(big.action, .reject)
        XCTAssertEqual(big.reply?.code, "552")
        XCTAssertEqual(
            q.decide(found("Heuristics.Limits.Exceeded.MaxFileSize", "Heuristics.Limits.Exceeded.MaxRecursion")).reply?
                .code,
            "552", "the stronger action (on-limit reject) wins over on-nesting-limit quarantine")
    }

    /// A signature that is only tagged (a heuristic: an encrypted zip, a phishing link) must not carry a
    /// message past a nesting limit whose action is stronger; a signature whose action is stronger still
    /// decides.
    func testLimitActionCountsBesideSignatures() {
        let p = Policy(config: Config())
        let d = p.decide(found("Heuristics.Encrypted.Zip", "Heuristics.Limits.Exceeded.MaxRecursion"))
        XCTAssertEqual(d.verdict, .infected)
        XCTAssertEqual(d.action, .reject)
        XCTAssertEqual(d.reply?.code, "550")
        XCTAssertEqual(
            d.reply?.text, "Message not accepted: exceeds scan limit (Heuristics.Limits.Exceeded.MaxRecursion)")
        XCTAssertEqual(d.signatures, ["Heuristics.Encrypted.Zip"])

        let s = p.decide(found("Breakwater.Malware.X", "Heuristics.Limits.Exceeded.MaxRecursion"))
        XCTAssertEqual(s.action, .reject)
        XCTAssertEqual(s.reply?.text, "Rejected: Breakwater.Malware.X")

        // A size limit (accept) beside a tagged heuristic: tagged, with both headers.
        let t = p.decide(found("Heuristics.Encrypted.Zip", "Heuristics.Limits.Exceeded.MaxFileSize"))
        XCTAssertEqual(t.action, .tag)
        XCTAssertTrue(t.headers.contains { $0.0 == "X-Breakwater-Signature" && $0.1 == "Heuristics.Encrypted.Zip" })
        XCTAssertTrue(t.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains("MaxFileSize") })

        // on-nesting-limit quarantine beside a tag: held, and the headers say why.
        var c = Config()
        c.onNestingLimit = .quarantine
        let h = Policy(config: c).decide(found("Heuristics.Encrypted.Zip", "Heuristics.Limits.Exceeded.MaxFiles"))
        XCTAssertEqual(h.action, .quarantine)
        XCTAssertTrue(h.headers.contains { $0.0 == "X-Breakwater-Signature" && $0.1 == "Heuristics.Encrypted.Zip" })
        XCTAssertTrue(h.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains("MaxFiles") })
    }

    func testOversizeAndErrorsAndBusy() {
        var c = Config()
        let p = Policy(config: c)
        let o = p.oversize(bytes: 30 << 20, limit: 25 << 20)
        XCTAssertEqual(o.action, .accept)
        XCTAssertTrue(o.headers.contains { $0.0 == "X-Breakwater-Not-Scanned" && $0.1.contains("25M") })
        c.onOversize = .reject
        XCTAssertEqual(Policy(config: c).oversize(bytes: 1, limit: 1).reply?.code, "552")
        let e = p.decide(ScanResult(finding: .error("CL_EMEM"), seconds: 0, bytes: 1))
        XCTAssertEqual(e.action, .tempfail)
        XCTAssertEqual(e.reply?.code, "451")
        XCTAssertEqual(e.tempfailCause, .scanError)
        let b = p.busy(.busy)
        XCTAssertEqual(b.reply?.code, "451")
        XCTAssertEqual(b.reply?.status, "4.3.2")
        XCTAssertTrue(b.reply!.text.contains("busy"))
    }

    func testReplyTextIsMilterSafe() {
        XCTAssertEqual(milterSafeReplyText("100% bad\r\nnext"), "100%% bad next")
    }

    func testStatsCountsByOutcomeAndCause() {
        let s = Stats()
        let p = Policy(config: Config())
        s.count(p.busy(.busy))
        s.count(p.busy(.timeout))
        s.count(p.decide(found("Breakwater.Malware.X")))
        s.count(p.decide(ScanResult(finding: .clean, seconds: 0, bytes: 1)))
        XCTAssertEqual(s.tempfailed.load(ordering: .relaxed), 2)
        XCTAssertEqual(s.tempfails(.busy), 1)
        XCTAssertEqual(s.tempfails(.timeout), 1)
        XCTAssertEqual(s.rejected.load(ordering: .relaxed), 1)
        XCTAssertEqual(s.accepted.load(ordering: .relaxed), 1)
    }

    // MARK: issue 20: one owner per decision

    /// Before: a signature whose action is tempfail was logged and counted as cause scan_error.
    func testSignatureTempfailCarriesPolicyCause() {
        var c = Config()
        c.actions = [ActionRule(pattern: "Hold.*", action: .tempfail)]
        let d = Policy(config: c).decide(found("Hold.X"))
        XCTAssertEqual(d.action, .tempfail)
        XCTAssertEqual(d.reply?.code, "451")
        XCTAssertEqual(d.tempfailCause, .policy)
        let s = Stats()
        s.count(d)
        XCTAssertEqual(s.tempfails(.policy), 1)
        XCTAssertEqual(s.tempfails(.scanError), 0)
    }

    /// By default a wave message is tempfailed, not let through with a tag: in the outage replay
    /// (docs/incident.md) a tagged wave started a handler per message on the ticket host.
    func testWaveActionDefaultsToTempfail() {
        XCTAssertEqual(Config().wave.action, .tempfail)
        let d = Policy(config: Config()).decide(ScanResult(finding: .clean, seconds: 0, bytes: 1), wave: "w1")
        XCTAssertEqual(d.reply?.code, "451")
        XCTAssertEqual(d.tempfailCause, .wave)
    }

    /// The wave result goes into `decide`; a wave tempfail has cause wave (before: scan_error).
    func testWaveRuleIsDecidedByPolicy() {
        let clean = ScanResult(finding: .clean, seconds: 0, bytes: 1)
        var c = Config()
        c.wave.action = .tag
        let tag = Policy(config: c).decide(clean, wave: "w1")
        XCTAssertEqual(tag.action, .tag)
        XCTAssertEqual(tag.wave, "w1")
        XCTAssertEqual(tag.headers.first?.0, "X-Breakwater-Wave")
        XCTAssertEqual(tag.headers.first?.1, "w1")
        XCTAssertEqual(Policy(config: c).decide(clean), Policy(config: c).decide(clean, wave: nil))
        XCTAssertNil(Policy(config: c).decide(clean).wave)
        c.wave.action = .reject
        let rej = Policy(config: c).decide(clean, wave: "w1")
        XCTAssertEqual(rej.reply?.code, "550")
        XCTAssertEqual(rej.reply?.text, "Rejected: wave w1")
        XCTAssertTrue(rej.headers.isEmpty)
        c.wave.action = .tempfail
        let tf = Policy(config: c).decide(clean, wave: "w1")
        XCTAssertEqual(tf.action, .tempfail)
        XCTAssertEqual(tf.reply?.code, "451")
        XCTAssertEqual(tf.reply?.status, "4.7.1")
        XCTAssertEqual(tf.tempfailCause, .wave)
        let s = Stats()
        s.count(tf)
        XCTAssertEqual(s.tempfails(.wave), 1)
        XCTAssertEqual(s.tempfails(.scanError), 0)
        // A signature's reject stands, and still names the wave.
        let kept = Policy(config: c).decide(found("Breakwater.Malware.X"), wave: "w1")
        XCTAssertEqual(kept.action, .reject)
        XCTAssertEqual(kept.reply?.text, "Rejected: Breakwater.Malware.X")
        XCTAssertEqual(kept.wave, "w1")
        // A tagged signature in a wave: the wave's action applies over the tag.
        XCTAssertEqual(Policy(config: c).decide(found("Heuristics.Encrypted.Zip"), wave: "w1").tempfailCause, .wave)
    }

    /// Every tempfail the policy can answer names its cause.
    func testEveryTempfailNamesItsCause() {
        var c = Config()
        c.actions = [ActionRule(pattern: "Hold.*", action: .tempfail)]
        c.onLimit = .tempfail
        c.onNestingLimit = .tempfail
        c.onScanError = .tempfail
        c.wave.action = .tempfail
        let p = Policy(config: c)
        let cases: [(Decision, TempfailCause)] =
            [
                (p.decide(found("Hold.X")), .policy),
                (p.decide(found("Heuristics.Limits.Exceeded.MaxFileSize")), .size),
                (p.decide(found("Heuristics.Limits.Exceeded.MaxRecursion")), .size),
                (p.decide(ScanResult(finding: .error("CL_EMEM"), seconds: 0, bytes: 1)), .scanError),
                (p.decide(ScanResult(finding: .clean, seconds: 0, bytes: 1), wave: "w2"), .wave),
            ] + TempfailCause.allCases.map { (p.busy($0), $0) }
        for (d, cause) in cases {
            XCTAssertEqual(d.action, .tempfail)
            XCTAssertEqual(d.tempfailCause, cause, "\(d)")
        }
        // The metric labels and log values are the raw values, one per cause.
        XCTAssertEqual(Set(TempfailCause.allCases.map(\.rawValue)).count, TempfailCause.allCases.count)
        XCTAssertEqual(TempfailCause.policy.rawValue, "policy")
        XCTAssertEqual(TempfailCause.wave.rawValue, "wave")
    }

    /// Before: `==` ignored `wave`.
    func testDecisionEqualityComparesEveryField() {
        let a = Decision(
            verdict: .infected, action: .tag, reply: ("451", "4.7.1", "x"), headers: [("H", "v")],
            tempfailCause: .policy, signatures: ["S"], wave: "w1")
        XCTAssertEqual(a, a)
        var b = a
        b.wave = nil
        XCTAssertNotEqual(a, b)
        b = a
        b.wave = "w2"
        XCTAssertNotEqual(a, b)
        b = a
        b.verdict = .clean
        XCTAssertNotEqual(a, b)
        b = a
        b.action = .accept
        XCTAssertNotEqual(a, b)
        b = a
        b.reply = ("451", "4.7.1", "y")
        XCTAssertNotEqual(a, b)
        b = a
        b.reply = nil
        XCTAssertNotEqual(a, b)
        b = a
        b.headers = [("H", "w")]
        XCTAssertNotEqual(a, b)
        b = a
        b.tempfailCause = .wave
        XCTAssertNotEqual(a, b)
        b = a
        b.signatures = []
        XCTAssertNotEqual(a, b)
    }

    func testSkipRules() {
        var c = Config()
        XCTAssertFalse(SkipRules(config: c).skipsClient([192, 0, 2, 7]))
        XCTAssertFalse(SkipRules(config: c).skipsRecipients(["a@b.example"]))
        var asked = false
        XCTAssertNil(
            SkipRules(config: c).authenticatedUser {
                asked = true
                return "u"
            })
        XCTAssertFalse(asked, "the {auth_authen} macro is looked up only when skip-authenticated is on")
        try! c.apply(
            fileText: """
                skip-authenticated = yes
                skip-networks = 192.0.2.0/24, 2001:db8::/32
                skip-senders = <Bulk@List.Example>, @trusted.example
                skip-recipients = abuse@dest.example, @quiet.example
                """, source: "t.conf")
        let r = Policy(config: c).skip
        XCTAssertTrue(r.skipsClient([192, 0, 2, 7]))
        XCTAssertTrue(r.skipsClient([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]))
        XCTAssertTrue(r.skipsClient([0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 12)))
        XCTAssertFalse(r.skipsClient([198, 51, 100, 1]))
        XCTAssertFalse(r.skipsClient(nil))
        XCTAssertEqual(r.authenticatedUser { "alice" }, "alice")
        XCTAssertNil(r.authenticatedUser { nil })
        XCTAssertTrue(r.skipsSender("<bulk@list.example>"))
        XCTAssertTrue(r.skipsSender("x@trusted.example"))
        XCTAssertFalse(r.skipsSender("x@untrusted.example"))
        XCTAssertFalse(r.skipsSender(""))
        XCTAssertTrue(r.skipsRecipients(["<abuse@dest.example>", "b@quiet.example"]))
        XCTAssertFalse(r.skipsRecipients(["abuse@dest.example", "c@other.example"]), "every recipient must be listed")
        XCTAssertFalse(r.skipsRecipients([]))
        XCTAssertEqual(SkipRules.Reason.networks.rawValue, "skip-networks")
        XCTAssertEqual(SkipRules.Reason.recipients.rawValue, "skip-recipients")
    }

    func testStatsCountSkippedDecisions() {
        let s = Stats()
        s.count(Decision.skipped)
        s.count(Decision.skipped)
        XCTAssertEqual(s.skipped.load(ordering: .relaxed), 2)
        XCTAssertEqual(s.accepted.load(ordering: .relaxed), 0)
    }

    func testRecipientLimitAndHoldFailuresAreDecidedByPolicy() {
        var c = Config()
        c.maxRecipients = 2
        let p = Policy(config: c)
        XCTAssertFalse(p.refusesRecipient(taken: 1))
        XCTAssertTrue(p.refusesRecipient(taken: 2))
        XCTAssertEqual(p.recipientRefusal.code, "452")
        XCTAssertEqual(p.recipientRefusal.status, "4.5.3")
        XCTAssertEqual(p.recipientRefusal.text, "Too many recipients (Breakwater max-recipients 2)")
        c.maxRecipients = 0
        XCTAssertFalse(Policy(config: c).refusesRecipient(taken: 1_000_000), "0: no limit")
        let spent = p.cannotHold(MessageBuffer.SpoolError(description: "spent", overBudget: true))
        XCTAssertEqual(spent.tempfailCause, .spoolBudget)
        XCTAssertEqual(spent.reply?.code, "451")
        XCTAssertEqual(
            p.cannotHold(MessageBuffer.SpoolError(description: "EIO", overBudget: false)).tempfailCause, .memoryBudget)
    }
}

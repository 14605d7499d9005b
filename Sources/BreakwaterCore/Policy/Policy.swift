/// What Breakwater does with a message.
public enum Action: String, Sendable, CaseIterable {
    /// 550 5.7.1 with the reject template (552 5.3.4 for an oversize message).
    case reject
    /// 451 4.7.1: the MTA keeps the message and retries.
    case tempfail
    /// Accept and silently drop the message.
    case discard
    /// Accept and ask the MTA to hold it (`smfi_quarantine`; Postfix puts it on hold).
    case quarantine
    /// Accept with a header naming what matched.
    case tag
    /// Accept unchanged (apart from the scanned header).
    case accept

    public static func parse(_ s: String) -> Action? { Action(rawValue: s.lowercased()) }
    public static var list: String { allCases.map(\.rawValue).joined(separator: "|") }
}

/// `GLOB ACTION`: signatures whose name matches GLOB get ACTION. First match wins.
public struct ActionRule: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    public let action: Action
    public init(pattern: String, action: Action) {
        self.pattern = pattern
        self.action = action
    }
    public var description: String { "\(pattern) \(action.rawValue)" }

    /// The rules that apply after the configured ones.
    public static let defaults: [ActionRule] = [
        ActionRule(pattern: "Heuristics.*", action: .tag),
        ActionRule(pattern: "*.Malware.*", action: .reject),
        ActionRule(pattern: "*.Phish.*", action: .reject),
        ActionRule(pattern: "*.Spam.*", action: .reject),
        ActionRule(pattern: "*.Test.*", action: .reject),
        ActionRule(pattern: "*", action: .reject),
    ]
}

/// Shell-style glob: `*` any run of characters, `?` one character, everything else literal.
public func globMatch(_ pattern: String, _ text: String) -> Bool {
    let p = Array(pattern.utf8)
    let t = Array(text.utf8)
    var pi = 0
    var ti = 0
    var starP = -1
    var starT = 0
    while ti < t.count {
        if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
            pi += 1
            ti += 1
        } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
            starP = pi
            starT = ti
            pi += 1
        } else if starP >= 0 {
            pi = starP + 1
            starT += 1
            ti = starT
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

/// Why a message was not (fully) scanned or could not be answered normally.
public enum TempfailCause: String, Sendable, CaseIterable {
    case busy
    case memoryBudget = "memory_budget"
    case timeout
    case scanError = "scan_error"
    case size
    /// The spool budget (`spool-budget`) was spent: the message could not be held on disk.
    case spoolBudget = "spool_budget"
    /// More milter sessions open than `max-sessions`: the new one is answered at connect.
    case sessions
    /// A thread the message needed could not be started (the process is at its task limit).
    case threads
    /// A signature whose action is tempfail (`action GLOB tempfail`): held back on purpose.
    case policy
    /// A message of a mail wave, with `wave-action = tempfail`.
    case wave
}

/// The answer for one message, ready for the milter bridge.
public struct Decision: Sendable, Equatable {
    public enum Verdict: String, Sendable { case clean, infected, limit, oversize, error, skipped, busy }
    public var verdict: Verdict
    public var action: Action
    /// SMTP reply code, enhanced status and text for reject/tempfail.
    public var reply: (code: String, status: String, text: String)?
    /// Headers to add (name, value without the leading space).
    public var headers: [(String, String)] = []
    public var tempfailCause: TempfailCause?
    /// Signatures that matched (names as written).
    public var signatures: [String] = []
    /// The wave the message belongs to (wave detection), for the log.
    public var wave: String? = nil

    public init(
        verdict: Verdict, action: Action, reply: (code: String, status: String, text: String)?,
        headers: [(String, String)] = [], tempfailCause: TempfailCause? = nil, signatures: [String] = [],
        wave: String? = nil
    ) {
        self.verdict = verdict
        self.action = action
        self.reply = reply
        self.headers = headers
        self.tempfailCause = tempfailCause
        self.signatures = signatures
        self.wave = wave
    }

    /// A message let through unscanned by a skip rule (the rule is in the log line where it applied).
    public static let skipped = Decision(verdict: .skipped, action: .accept, reply: nil)

    public static func == (a: Decision, b: Decision) -> Bool {
        a.verdict == b.verdict && a.action == b.action && a.reply?.code == b.reply?.code
            && a.reply?.status == b.reply?.status && a.reply?.text == b.reply?.text
            && a.headers.map { "\($0.0): \($0.1)" } == b.headers.map { "\($0.0): \($0.1)" }
            && a.tempfailCause == b.tempfailCause && a.signatures == b.signatures && a.wave == b.wave
    }
}

/// A reply text template (`reject-message`): every `%s` stands for the signature name; without one
/// the name is appended after a space. Split once, so a reply costs one concatenation.
public struct ReplyTemplate: Sendable {
    private let pieces: [String]

    public init(_ template: String) {
        pieces =
            template.contains("%s")
            ? template.split(separator: "%s", omittingEmptySubsequences: false).map(String.init)
            : [template + " ", ""]
    }

    public func render(_ name: String) -> String {
        var out = pieces[0]
        for p in pieces.dropFirst() {
            out += name
            out += p
        }
        return out
    }
}

/// Every answer Breakwater gives a message: the skip rules, signature actions, limits, oversize, scan
/// errors, the wave rule, and the temporary failures under load, each tempfail with its cause. Pure:
/// no I/O, no C.
public struct Policy: Sendable {
    public var skip: SkipRules
    public var rules: [ActionRule]
    public var rejectTemplate: ReplyTemplate
    public var onScanError: Action
    public var onOversize: Action
    public var onLimit: Action
    public var onNestingLimit: Action
    /// `wave-action`: what a message of a mail wave gets (when the scan decided accept or tag).
    public var waveAction: WaveAction
    public var scannedHeader: String
    public var productTag: String
    /// `max-recipients` (0: no limit), and the reply to each RCPT past it, built once.
    public var maxRecipients: Int
    public var recipientRefusal: (code: String, status: String, text: String)

    public init(config: Config) {
        skip = SkipRules(config: config)
        rules = config.actions + ActionRule.defaults
        rejectTemplate = ReplyTemplate(config.rejectMessage)
        onScanError = config.onScanError
        onOversize = config.onOversize
        onLimit = config.onLimit
        onNestingLimit = config.onNestingLimit
        waveAction = config.wave.action
        scannedHeader = config.scannedHeader
        productTag = "Breakwater \(Breakwater.version)"
        maxRecipients = config.maxRecipients
        recipientRefusal = ("452", "4.5.3", "Too many recipients (Breakwater max-recipients \(config.maxRecipients))")
    }

    /// True when an RCPT is past `max-recipients` with `taken` recipients taken so far: it gets
    /// `recipientRefusal` (452 4.5.3), and the transaction goes on with the recipients taken.
    public func refusesRecipient(taken: Int) -> Bool {
        maxRecipients > 0 && taken >= maxRecipients
    }

    public func action(for signature: String) -> Action {
        for r in rules where globMatch(r.pattern, signature) { return r.action }
        return .reject
    }

    /// The action for a limit of this kind: `on-nesting-limit` or `on-limit`.
    public func action(for kind: LimitKind) -> Action {
        kind == .nesting ? onNestingLimit : onLimit
    }

    /// Of the limits a scan hit, the one whose action is the strongest, with that action (a nesting
    /// limit first when both kinds give the same action); nil when the scan hit none.
    func strongestLimit(_ result: ScanResult) -> (limit: Detection, kind: LimitKind, action: Action)? {
        var best: (limit: Detection, kind: LimitKind, action: Action)?
        for l in result.limits {
            let kind = l.limitKind ?? .nesting
            let a = action(for: kind)
            if let b = best {
                let sa = Policy.strength(a)
                let sb = Policy.strength(b.action)
                if sa < sb || (sa == sb && !(kind == .nesting && b.kind == .size)) { continue }
            }
            best = (l, kind, a)
        }
        return best
    }

    /// The decision for a scan result; `wave` is the mail wave the message belongs to (wave
    /// detection), nil when it belongs to none or detection is off.
    public func decide(_ result: ScanResult, wave: String? = nil) -> Decision {
        let d = scanDecision(result)
        guard let wave else { return d }
        return apply(wave: wave, to: d)
    }

    /// The wave rule: `wave-action` for a message the scan would accept or tag; a stronger answer
    /// of the scan (a signature's reject, a scan error's tempfail) stands. Either way the decision
    /// names the wave for the log.
    private func apply(wave id: String, to decision: Decision) -> Decision {
        var d = decision
        d.wave = id
        guard d.action == .accept || d.action == .tag else { return d }
        switch waveAction {
        case .tag:
            d.action = .tag
            d.headers.insert(("X-Breakwater-Wave", id), at: 0)
        case .tempfail:
            d.action = .tempfail
            d.headers = []
            d.reply = ("451", "4.7.1", "Message held back: part of a mail wave (\(id)), please try again later")
            d.tempfailCause = .wave
        case .reject:
            d.action = .reject
            d.headers = []
            d.reply = ("550", "5.7.1", rejectTemplate.render("wave \(id)"))
        }
        return d
    }

    private func scanDecision(_ result: ScanResult) -> Decision {
        switch result.finding {
        case .clean:
            return Decision(verdict: .clean, action: .accept, reply: nil, headers: scanned())
        case .error(let message):
            return fallback(
                verdict: .error, action: onScanError, reason: "scan error: \(message)",
                cause: .scanError, oversizeStatus: false)
        case .found:
            let sigs = result.signatures
            let limit = strongestLimit(result)
            if sigs.isEmpty, let limit {
                var d = fallback(
                    verdict: .limit, action: limit.action, reason: limitReason(limit.limit),
                    cause: .size, oversizeStatus: limit.kind == .size)
                d.signatures = [limit.limit.name]
                return d
            }
            // The strongest action among all matching signatures wins.
            var chosen = Action.accept
            var chosenSig = sigs.first?.name ?? ""
            for s in sigs {
                let a = action(for: s.name)
                if Policy.strength(a) > Policy.strength(chosen) {
                    chosen = a
                    chosenSig = s.name
                }
            }
            let names = sigs.map(\.name)
            // A limit's action counts too: a signature that is only tagged (a heuristic, say) must not
            // carry a message past a limit whose action is stronger (a nesting limit: reject).
            if let limit, Policy.strength(limit.action) > Policy.strength(chosen) {
                var d = fallback(
                    verdict: .infected, action: limit.action, reason: limitReason(limit.limit),
                    cause: .size, oversizeStatus: limit.kind == .size)
                d.signatures = names
                if limit.action == .tag || limit.action == .quarantine {
                    d.headers.insert(("X-Breakwater-Signature", names.joined(separator: ", ")), at: 0)
                }
                return d
            }
            var d = Decision(verdict: .infected, action: chosen, reply: nil, headers: [], signatures: names)
            switch chosen {
            case .reject:
                d.reply = ("550", "5.7.1", rejectTemplate.render(chosenSig))
            case .tempfail:
                d.reply = ("451", "4.7.1", "Message held back for review: \(chosenSig)")
                d.tempfailCause = .policy
            case .tag, .quarantine:
                d.headers = [("X-Breakwater-Signature", names.joined(separator: ", "))] + scanned()
            case .accept, .discard:
                d.headers = scanned()
            }
            if let limit, chosen == .accept || chosen == .tag || chosen == .quarantine {
                d.headers.append(("X-Breakwater-Not-Scanned", limitReason(limit.limit)))
            }
            return d
        }
    }

    private func limitReason(_ limit: Detection) -> String {
        "exceeds scan limit (\(limit.name))"
    }

    /// The decision for a message over `max-message-size`.
    public func oversize(bytes: UInt64, limit: UInt64) -> Decision {
        fallback(
            verdict: .oversize, action: onOversize,
            reason: "message larger than \(ByteSize.format(limit)) (max-message-size)",
            cause: .size, oversizeStatus: true)
    }

    /// Busy, memory budget, wait timeout: always a temporary failure the MTA retries.
    public func busy(_ cause: TempfailCause) -> Decision {
        let text: String
        switch cause {
        case .busy: text = "Breakwater is busy scanning other mail, please try again later"
        case .memoryBudget: text = "Breakwater is over its memory budget, please try again later"
        case .timeout: text = "Breakwater is busy (waited too long for a scanner), please try again later"
        case .scanError: text = "Breakwater could not scan this message, please try again later"
        case .size: text = "Breakwater cannot take this message now, please try again later"
        case .spoolBudget: text = "Breakwater is over its spool budget, please try again later"
        case .sessions: text = "Breakwater has too many sessions open, please try again later"
        case .threads: text = "Breakwater cannot start a thread now, please try again later"
        case .policy, .wave: text = "Breakwater holds this message back, please try again later"
        }
        return Decision(
            verdict: .busy, action: .tempfail, reply: ("451", "4.3.2", text), headers: [],
            tempfailCause: cause)
    }

    /// A message that could not be held (in memory or in the spool): 451 4.3.2, cause spool_budget
    /// when the spool budget was spent, else memory_budget.
    public func cannotHold(_ failure: MessageBuffer.SpoolError) -> Decision {
        busy(failure.overBudget ? .spoolBudget : .memoryBudget)
    }

    private func fallback(
        verdict: Decision.Verdict, action: Action, reason: String, cause: TempfailCause,
        oversizeStatus: Bool
    ) -> Decision {
        var d = Decision(verdict: verdict, action: action, reply: nil, headers: [])
        switch action {
        case .reject:
            d.reply =
                oversizeStatus
                ? ("552", "5.3.4", "Message not accepted: \(reason)")
                : ("550", "5.7.1", "Message not accepted: \(reason)")
        case .tempfail:
            d.reply = ("451", "4.3.0", "Message could not be scanned (\(reason)), please try again later")
            d.tempfailCause = cause
        case .accept, .tag, .quarantine, .discard:
            d.headers = [("X-Breakwater-Not-Scanned", reason)]
        }
        return d
    }

    private func scanned() -> [(String, String)] {
        scannedHeader.isEmpty ? [] : [(scannedHeader, productTag)]
    }

    /// reject > tempfail > discard > quarantine > tag > accept.
    static func strength(_ a: Action) -> Int {
        switch a {
        case .reject: 6
        case .tempfail: 5
        case .discard: 4
        case .quarantine: 3
        case .tag: 2
        case .accept: 1
        }
    }
}

/// Reply text as libmilter wants it: no CR/LF, `%` doubled.
public func milterSafeReplyText(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "\r", "\n", "\r\n": out.append(" ")
        case "%": out.append("%%")
        default: out.append(c)
        }
    }
    return out
}

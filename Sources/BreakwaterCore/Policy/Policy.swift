/// Every answer Breakwater gives a message: the skip rules, signature actions, limits, oversize, scan
/// errors, the wave rule, and the temporary failures under load, each tempfail with its cause. Pure:
/// no I/O, no C.
package struct Policy: Sendable {
    package var skip: SkipRules
    package var rules: [ActionRule]
    package var rejectTemplate: ReplyTemplate
    package var onScanError: Action
    package var onOversize: Action
    package var onLimit: Action
    package var onNestingLimit: Action
    /// `on-scan-crash`: the answer to a message convicted of crashing the scanner.
    package var onScanCrash: Action
    /// `wave-action`: what a message of a mail wave gets (when the scan decided accept or tag).
    package var waveAction: WaveAction
    package var scannedHeader: String
    package var productTag: String
    /// `max-recipients` (0: no limit), and the reply to each RCPT past it, built once.
    package var maxRecipients: Int
    package var recipientRefusal: (code: String, status: String, text: String)
    /// The strictest action a scan's detections can get under this policy (`strictestScanAction`).
    package var strictestAction: Action {
        Policy.strictestScanAction(rules: rules, onLimit: onLimit, onNestingLimit: onNestingLimit)
    }

    package init(config: Config) {
        skip = SkipRules(config: config)
        rules = config.actions + ActionRule.defaults
        rejectTemplate = ReplyTemplate(config.rejectMessage)
        onScanError = config.onScanError
        onOversize = config.onOversize
        onLimit = config.onLimit
        onNestingLimit = config.onNestingLimit
        onScanCrash = config.onScanCrash
        waveAction = config.wave.action
        scannedHeader = config.scannedHeader
        productTag = "Breakwater \(Breakwater.version)"
        maxRecipients = config.maxRecipients
        recipientRefusal = ("452", "4.5.3", "Too many recipients (Breakwater max-recipients \(config.maxRecipients))")
    }

    /// The strictest action any detection can get: the strongest of the rules a name can reach (every
    /// rule up to and including the first catch-all, a pattern of only `*`; `reject` when no rule
    /// catches every name, as `action(for:)` answers then), `on-limit` and `on-nesting-limit` (a
    /// limit's action counts beside the signatures'). A signature whose action is this one decides the
    /// message whatever else would match.
    package static func strictestScanAction(rules: [ActionRule], onLimit: Action, onNestingLimit: Action) -> Action {
        var best = strength(onLimit) >= strength(onNestingLimit) ? onLimit : onNestingLimit
        var caughtAll = false
        for r in rules {
            if strength(r.action) > strength(best) { best = r.action }
            if !r.pattern.isEmpty && r.pattern.allSatisfy({ $0 == "*" }) {
                caughtAll = true
                break
            }
        }
        if !caughtAll && strength(.reject) > strength(best) { best = .reject }
        return best
    }

    /// True when a scan that stopped at its first signature (libclamav without all-matches) already
    /// gives the decision a scan for every match would: it found nothing, failed, or found one
    /// signature (no limit, no heuristic: those come only when no signature matched) whose action is
    /// `strictestAction`, which no other name or limit can make stricter. Otherwise the message is
    /// scanned again for every match, so that the strictest applicable action still wins.
    package func settles(firstMatch result: ScanResult) -> Bool {
        switch result.finding {
        case .clean, .error:
            return true
        case .found(let detections):
            guard !detections.isEmpty, !detections.contains(where: \.isLimit) else { return false }
            let ceiling = Policy.strength(strictestAction)
            return detections.allSatisfy { Policy.strength(action(for: $0.name)) >= ceiling }
        }
    }

    /// True when an RCPT is past `max-recipients` with `taken` recipients taken so far: it gets
    /// `recipientRefusal` (452 4.5.3), and the transaction goes on with the recipients taken.
    package func refusesRecipient(taken: Int) -> Bool {
        maxRecipients > 0 && taken >= maxRecipients
    }

    package func action(for signature: String) -> Action {
        for r in rules where globMatch(r.pattern, signature) { return r.action }
        return .reject
    }

    /// The action for a limit of this kind: `on-nesting-limit` or `on-limit`.
    package func action(for kind: LimitKind) -> Action {
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
    package func decide(_ result: ScanResult, wave: String? = nil) -> Decision {
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
    package func oversize(bytes: UInt64, limit: UInt64) -> Decision {
        fallback(
            verdict: .oversize, action: onOversize,
            reason: "message larger than \(ByteSize.format(limit)) (max-message-size)",
            cause: .size, oversizeStatus: true)
    }

    /// The decision for a message convicted of crashing the scanner (`on-scan-crash`): never scanned again.
    package func scanCrash() -> Decision {
        let reason = "the message crashed the scanner"
        var d = Decision(verdict: .crash, action: onScanCrash, reply: nil, headers: [])
        switch onScanCrash {
        case .reject:
            d.reply = ("550", "5.7.0", "Message could not be scanned safely (\(reason))")
        case .tempfail:
            d.reply = ("451", "4.7.0", "Message could not be scanned safely (\(reason)), please try again later")
            d.tempfailCause = .scanError
        case .accept, .tag, .quarantine, .discard:
            d.headers = [("X-Breakwater-Not-Scanned", reason)]
        }
        return d
    }

    /// Busy, memory budget, wait timeout: always a temporary failure the MTA retries.
    package func busy(_ cause: TempfailCause) -> Decision {
        let text: String
        switch cause {
        case .busy: text = "Breakwater is busy scanning other mail, please try again later"
        case .memoryBudget: text = "Breakwater is over its memory budget, please try again later"
        case .timeout: text = "Breakwater is busy (waited too long for a scanner), please try again later"
        case .scanError: text = "Breakwater could not scan this message, please try again later"
        case .size: text = "Breakwater cannot take this message now, please try again later"
        case .spoolBudget: text = "Breakwater is over its spool budget, please try again later"
        case .sessions: text = "Breakwater has too many sessions open, please try again later"
        case .policy, .wave: text = "Breakwater holds this message back, please try again later"
        }
        return Decision(
            verdict: .busy, action: .tempfail, reply: ("451", "4.3.2", text), headers: [],
            tempfailCause: cause)
    }

    /// A message that could not be held (in memory or in the spool): 451 4.3.2, cause spool_budget
    /// when the spool budget was spent, else memory_budget.
    package func cannotHold(_ failure: MessageBuffer.SpoolError) -> Decision {
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

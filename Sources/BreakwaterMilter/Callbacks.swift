import BreakwaterCore
import CMilter
import Logging

#if canImport(Glibc)
import Glibc
#endif

// libmilter's callbacks. Each finds the daemon in `MilterDaemon.shared` and the connection's state in
// `smfi_getpriv` (an unmanaged, retained `Session`, released in close).

@inline(__always) private func flag(_ v: Int) -> UInt { UInt(v) }

private func session(_ ctx: OpaquePointer?) -> Session? {
    guard let p = smfi_getpriv(ctx) else { return nil }
    return Unmanaged<Session>.fromOpaque(p).takeUnretainedValue()
}

private func attach(_ ctx: OpaquePointer?) -> Session {
    if let s = session(ctx) { return s }
    let daemon = MilterDaemon.shared!
    let s = daemon.newSession()
    let open = daemon.stats.sessionsOpen.add(1, ordering: .relaxed).newValue
    // Counted from the session's first callback (negotiation) to its close.
    s.overSessionCap = open > daemon.config.maxSessions
    _ = smfi_setpriv(ctx, Unmanaged.passRetained(s).toOpaque())
    return s
}

private func macro(_ ctx: OpaquePointer?, _ name: String) -> String? {
    guard let v = name.withCString({ smfi_getsymval(ctx, UnsafeMutablePointer(mutating: $0)) }) else { return nil }
    let s = String(cString: v)
    return s.isEmpty ? nil : s
}

private func setReply(_ ctx: OpaquePointer?, _ reply: (code: String, status: String, text: String)) {
    let text = milterSafeReplyText(reply.text)
    _ = reply.code.withCString { c in
        reply.status.withCString { x in
            text.withCString { t in
                smfi_setreply(
                    ctx, UnsafeMutablePointer(mutating: c), UnsafeMutablePointer(mutating: x),
                    UnsafeMutablePointer(mutating: t))
            }
        }
    }
}

func milterNegotiate(
    _ ctx: OpaquePointer?, _ f0: UInt, _ f1: UInt, _ f2: UInt, _ f3: UInt,
    _ pf0: UnsafeMutablePointer<UInt>?, _ pf1: UnsafeMutablePointer<UInt>?,
    _ pf2: UnsafeMutablePointer<UInt>?, _ pf3: UnsafeMutablePointer<UInt>?
) -> sfsistat {
    let s = attach(ctx)
    // Actions: add headers (tag, scanned header) and quarantine.
    pf0?.pointee = f0 & (flag(SMFIF_ADDHDRS) | flag(SMFIF_QUARANTINE))
    // Steps not used are negotiated away.
    var want = flag(SMFIP_NOHELO) | flag(SMFIP_NOUNKNOWN) | flag(SMFIP_HDR_LEADSPC) | flag(SMFIP_SKIP)
    if MilterDaemon.shared!.socketIsUnix {
        // Callbacks that only continue need no reply. Not over TCP: Postfix then writes several small
        // packets in a row without waiting, and Nagle on its side meets the delayed ACK on ours, about
        // 40 ms per stall (measured: 90 ms per message on inet: against 2.6 ms on unix:). A reply to
        // each step carries the ACK at once.
        // Connect only continues too: a client in skip-networks is accepted at MAIL FROM instead, which
        // saves the MTA a round trip per connection.
        // RCPT keeps its reply while max-recipients is set: past it an RCPT is answered 452 4.5.3. (That
        // reply costs a round trip per recipient: about 0.02 ms of the daemon's CPU per message here.)
        want |= flag(SMFIP_NODATA) | flag(SMFIP_NOEOH) | flag(SMFIP_NR_HDR)
        if MilterDaemon.shared!.config.maxRecipients == 0 { want |= flag(SMFIP_NR_RCPT) }
        // A session over max-sessions is answered at connect, so connect keeps its reply there.
        if !s.overSessionCap { want |= flag(SMFIP_NR_CONN) }
    }
    want &= f1
    pf1?.pointee = want
    pf2?.pointee = 0
    pf3?.pointee = 0
    s.assembly.leadingSpace = want & flag(SMFIP_HDR_LEADSPC) != 0
    s.canSkip = want & flag(SMFIP_SKIP) != 0
    s.noReplyRecipients = want & flag(SMFIP_NR_RCPT) != 0
    s.noReplyHeaders = want & flag(SMFIP_NR_HDR) != 0
    s.noReplyConnect = want & flag(SMFIP_NR_CONN) != 0
    return SMFIS_CONTINUE
}

func milterConnect(
    _ ctx: OpaquePointer?, _ hostname: UnsafeMutablePointer<CChar>?, _ addr: UnsafeMutablePointer<sockaddr>?
) -> sfsistat {
    let s = attach(ctx)
    let daemon = MilterDaemon.shared!
    if s.overSessionCap && !s.noReplyConnect { return refuseSession(ctx, daemon) }
    if let addr {
        var buf = [CChar](repeating: 0, count: 64)
        switch Int32(addr.pointee.sa_family) {
        case AF_INET:
            addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var a = sin.pointee.sin_addr
                s.clientIP = withUnsafeBytes(of: &a) { Array($0) }
                _ = inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
            }
        case AF_INET6:
            addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var a = sin6.pointee.sin6_addr
                s.clientIP = withUnsafeBytes(of: &a) { Array($0) }
                _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
            }
        default:
            break
        }
        if buf[0] != 0 {
            s.clientAddress = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    } else if let hostname {
        s.clientAddress = String(cString: hostname)
    }
    if daemon.policy.skip.skipsClient(s.clientIP) {
        s.clientSkipped = true
        if !s.noReplyConnect { return skipClient(s, daemon) }
    }
    return s.noReplyConnect ? SMFIS_NOREPLY : SMFIS_CONTINUE
}

/// A session past max-sessions: 451 4.3.2 at connect (or at MAIL FROM when connect had no reply),
/// logged at most once a second with the count since the last line.
private func refuseSession(_ ctx: OpaquePointer?, _ daemon: MilterDaemon) -> sfsistat {
    let d = daemon.policy.busy(.sessions)
    daemon.stats.count(d)
    setReply(ctx, d.reply!)
    if let n = daemon.sessionsOverCap.tick() {
        daemon.logger.warning(
            "sessions: more than max-sessions (\(daemon.config.maxSessions)) open: \(n) new session(s) answered 451 4.3.2 since the last line (cause=sessions)"
        )
    }
    return SMFIS_TEMPFAIL
}

/// A client in skip-networks: accepted unscanned, at connect or (when connect has no reply) at each MAIL FROM.
private func skipClient(_ s: Session, _ daemon: MilterDaemon, queue: String = "") -> sfsistat {
    daemon.stats.count(Decision.skipped)
    daemon.logger.info(
        "\(queue)client=\(Escape.field(s.clientAddress)) verdict=skipped reason=\(SkipRules.Reason.networks.rawValue)")
    return SMFIS_ACCEPT
}

/// `queue=ID ` for a line logged at MAIL FROM when the MTA already knows the queue id there: Sendmail
/// sends `{i}` with MAIL; Postfix opens its queue file (and names it) only at the first accepted RCPT,
/// so there the line has no queue field. Escaped like every value from the MTA.
private func queueFieldAtMail(_ ctx: OpaquePointer?) -> String {
    guard let id = macro(ctx, "i") else { return "" }
    return "queue=\(Escape.field(id)) "
}

func milterEnvFrom(_ ctx: OpaquePointer?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat {
    let s = attach(ctx)
    let daemon = MilterDaemon.shared!
    if s.overSessionCap { return refuseSession(ctx, daemon) }
    if s.clientSkipped { return skipClient(s, daemon, queue: queueFieldAtMail(ctx)) }
    s.resetMessage()
    if let argv, let first = argv[0] {
        s.sender = String(cString: first)
        var i = 1
        while let arg = argv[i] {
            let a = String(cString: arg)
            // The declared size only pre-sizes the buffer: oversize is decided on the bytes received.
            if a.count > 5, a.prefix(5).uppercased() == "SIZE=", let n = UInt64(a.dropFirst(5)) {
                s.assembly.declare(size: n)
            }
            i += 1
        }
    }
    if let user = daemon.policy.skip.authenticatedUser({ macro(ctx, "{auth_authen}") }) {
        daemon.stats.count(Decision.skipped)
        daemon.logger.info(
            "\(queueFieldAtMail(ctx))client=\(Escape.field(s.clientAddress)) from=\(Escape.field(s.sender)) auth=\(Escape.field(user)) verdict=skipped reason=\(SkipRules.Reason.authenticated.rawValue)"
        )
        return SMFIS_ACCEPT
    }
    if daemon.policy.skip.skipsSender(s.sender) {
        daemon.stats.count(Decision.skipped)
        daemon.logger.info(
            "\(queueFieldAtMail(ctx))client=\(Escape.field(s.clientAddress)) from=\(Escape.field(s.sender)) verdict=skipped reason=\(SkipRules.Reason.senders.rawValue)"
        )
        return SMFIS_ACCEPT
    }
    if daemon.admission.isSaturated {
        // Turned away before DATA costs anything.
        let d = daemon.policy.busy(.busy)
        daemon.stats.count(d)
        setReply(ctx, d.reply!)
        daemon.logger.info(
            "\(queueFieldAtMail(ctx))client=\(Escape.field(s.clientAddress)) from=\(Escape.field(s.sender)) verdict=\(d.verdict.rawValue) action=\(d.action.rawValue) cause=\(TempfailCause.busy.rawValue) stage=mail-from"
        )
        return SMFIS_TEMPFAIL
    }
    return SMFIS_CONTINUE
}

func milterEnvRcpt(_ ctx: OpaquePointer?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> sfsistat {
    let s = attach(ctx)
    let daemon = MilterDaemon.shared!
    if daemon.policy.refusesRecipient(taken: s.recipients.count) {
        // This RCPT only: the transaction goes on with the recipients taken so far.
        s.recipientsRefused += 1
        daemon.stats.recipientsRefused.add(1, ordering: .relaxed)
        setReply(ctx, daemon.policy.recipientRefusal)
        if s.recipientsRefused == 1 {
            let queueID = macro(ctx, "i") ?? "-"
            daemon.logger.info(
                "queue=\(Escape.field(queueID)) client=\(Escape.field(s.clientAddress)) from=<\(Escape.field(s.sender.trimmingAngles))> rcpts=\(s.recipients.count): more than max-recipients, further RCPTs answered 452 4.5.3"
            )
        }
        return SMFIS_TEMPFAIL
    }
    if let argv, let first = argv[0] {
        s.recipients.append(String(cString: first))
    }
    return s.noReplyRecipients ? SMFIS_NOREPLY : SMFIS_CONTINUE
}

func milterHeader(_ ctx: OpaquePointer?, _ name: UnsafeMutablePointer<CChar>?, _ value: UnsafeMutablePointer<CChar>?)
    -> sfsistat
{
    let s = attach(ctx)
    if let name, let value {
        let n = UnsafeRawBufferPointer(start: name, count: strlen(name))
        let v = UnsafeRawBufferPointer(start: value, count: strlen(value))
        s.assembly.header(name: n, value: v)
        s.digest.header(name: n, value: v)
    }
    return s.noReplyHeaders ? SMFIS_NOREPLY : SMFIS_CONTINUE
}

func milterBody(_ ctx: OpaquePointer?, _ body: UnsafeMutablePointer<UInt8>?, _ len: Int) -> sfsistat {
    let s = attach(ctx)
    let chunk = UnsafeRawBufferPointer(start: body, count: body == nil ? 0 : len)
    let wanted = s.assembly.body(chunk)
    if !s.assembly.oversize { s.digest.body(chunk) }
    if wanted { return SMFIS_CONTINUE }
    return s.canSkip ? SMFIS_SKIP : SMFIS_CONTINUE
}

func milterEOM(_ ctx: OpaquePointer?) -> sfsistat {
    let s = attach(ctx)
    let daemon = MilterDaemon.shared!
    daemon.stats.inFlight.add(1, ordering: .relaxed)
    defer {
        s.resetMessage()
        daemon.stats.inFlight.subtract(1, ordering: .relaxed)
    }
    s.assembly.endOfHeaders()
    let queueID = macro(ctx, "i") ?? "-"
    let size = s.assembly.received
    let spooled = s.assembly.buffer.spoolReason
    let (decision, waitSeconds, scanSeconds, scanned) = daemon.decide(s, queueID: queueID) { _ = smfi_progress(ctx) }
    let waitMs = Int(waitSeconds * 1000)
    let scanMs = Int(scanSeconds * 1000)
    daemon.stats.count(decision)

    var status: sfsistat
    switch decision.action {
    case .reject:
        if let r = decision.reply { setReply(ctx, r) }
        status = SMFIS_REJECT
    case .tempfail:
        if let r = decision.reply { setReply(ctx, r) }
        status = SMFIS_TEMPFAIL
    case .discard:
        status = SMFIS_DISCARD
    case .quarantine:
        let reason =
            "Breakwater: "
            + (decision.signatures.isEmpty
                ? decision.verdict.rawValue : Escape.text(decision.signatures.joined(separator: ", ")))
        _ = reason.withCString { smfi_quarantine(ctx, UnsafeMutablePointer(mutating: $0)) }
        status = SMFIS_CONTINUE
    case .tag, .accept:
        status = SMFIS_CONTINUE
    }
    if status == SMFIS_CONTINUE {
        for (name, value) in decision.headers {
            let v = (s.assembly.leadingSpace ? " " : "") + milterSafeHeaderValue(value)
            _ = name.withCString { n in
                v.withCString {
                    smfi_addheader(ctx, UnsafeMutablePointer(mutating: n), UnsafeMutablePointer(mutating: $0))
                }
            }
        }
    }

    // Every value from the MTA or the message is escaped (Escape.field): one token, no control character.
    var line =
        "queue=\(Escape.field(queueID)) client=\(Escape.field(s.clientAddress)) from=<\(Escape.field(s.sender.trimmingAngles))> rcpts=\(s.recipients.count) size=\(size)"
    if s.recipientsRefused > 0 { line += " rcpts_refused=\(s.recipientsRefused)" }
    line += " verdict=\(decision.verdict.rawValue) action=\(decision.action.rawValue)"
    if !decision.signatures.isEmpty {
        line += " signatures=\(Escape.field(decision.signatures.joined(separator: ",")))"
    }
    if let cause = decision.tempfailCause { line += " cause=\(cause.rawValue)" }
    if let wave = decision.wave { line += " wave=\(wave)" }
    if let spooled { line += " spooled=\(spooled.replacing(" ", with: "-"))" }
    line += " wait_ms=\(waitMs) scan_ms=\(scanMs)"
    if let r = decision.reply { line += " reply=\(Escape.quoted("\(r.code) \(r.status) \(r.text)"))" }
    daemon.logger.info("\(line)")
    if !daemon.observers.isEmpty {
        let record = MessageRecord(
            queueID: queueID, client: s.clientAddress, sender: s.sender, recipients: s.recipients.count,
            bytes: size, decision: decision, waitSeconds: waitSeconds, scanSeconds: scanSeconds,
            scanned: scanned)
        for o in daemon.observers { o(record) }
    }
    return status
}

func milterAbort(_ ctx: OpaquePointer?) -> sfsistat {
    session(ctx)?.resetMessage()
    return SMFIS_CONTINUE
}

func milterClose(_ ctx: OpaquePointer?) -> sfsistat {
    guard let p = smfi_getpriv(ctx) else { return SMFIS_CONTINUE }
    _ = smfi_setpriv(ctx, nil)
    let s = Unmanaged<Session>.fromOpaque(p).takeRetainedValue()
    s.resetMessage()
    MilterDaemon.shared!.stats.sessionsOpen.subtract(1, ordering: .relaxed)
    return SMFIS_CONTINUE
}

/// Header values may not carry bare CR/LF (they would break the header block).
func milterSafeHeaderValue(_ s: String) -> String {
    String(s.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 })
}

extension String {
    var trimmingAngles: Substring {
        var s = Substring(self)
        if s.hasPrefix("<") { s = s.dropFirst() }
        if s.hasSuffix(">") { s = s.dropLast() }
        return s
    }
}

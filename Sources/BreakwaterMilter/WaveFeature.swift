import BreakwaterCore
import BreakwaterEngine
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Wave detection in the daemon: an inspector per scanned message, the wave rule on its decision,
/// the log lines when a wave starts and ends, and what `breakwater waves` asks over the control
/// socket. Present when `waves = yes` (the default).
public final class WaveFeature: Sendable {
    public let detector: WaveDetector
    let memo = WaveMemo()
    let logger: Logger
    /// Prefix of suggested signature names (the names `breakwater signatures add` accepts).
    public let signaturePrefix: String

    public init(config: Config, stats: Stats, logger: Logger) {
        detector = WaveDetector(settings: config.wave, stats: stats, rejectTemplate: config.rejectMessage)
        self.logger = logger
        self.signaturePrefix = config.ops.localPrefix
        let u = detector.store.usage()
        logger.notice("wave detection: \(config.wave.threshold) messages in \(Int(config.wave.window))s from more than \(config.wave.minSources) senders or networks make a wave (action \(config.wave.action.rawValue)); store of \(ByteSize.format(config.wave.storeSize)) holds \(u.capacity) fingerprints")
    }

    /// The inspector for the message about to be scanned. Allow-listed mail is fingerprinted too
    /// (never counted): its body must be in the repeat memo in case the same bytes come again from
    /// a sender that is not allow-listed, which libclamav's cache would not parse again.
    func inspector(sender: String, clientIP: [UInt8]?) -> WaveLayerInspector? {
        WaveLayerInspector(memo: memo)
    }

    /// Counts the scanned message and applies the wave rule to its decision. The store's lock is
    /// taken only inside `observe`, after the scan.
    func apply(_ d: Decision, inspector: WaveLayerInspector?, sender: String, clientIP: [UInt8]?, clientAddress: String,
               subject: String?) -> Decision {
        guard let inspector else { return d }
        let fp = inspector.finish(subject: subject.map(WaveSubject.decode))
        let o = detector.observe(fp, sender: sender, clientIP: clientIP, clientAddress: clientAddress, now: Clock.wall())
        if let started = o.started { logStart(started) }
        if let sampled = o.sampled, let s = WaveReport.suggestion(sampled, prefix: signaturePrefix) {
            logger.notice("wave \(sampled.id): suggested signature from \(sampled.samples.count) messages: \(s.command(comment: WaveReport.comment(sampled))) (or: breakwater waves promote \(sampled.id))")
        }
        guard let id = o.wave else { return d }
        return detector.decide(d, wave: id)
    }

    func logStart(_ w: WaveInfo) {
        var line = "wave \(w.id) started: \(w.windowCount) messages in the window from ~\(w.senders) senders, ~\(w.networks) client networks"
        line += "; action \(detector.settings.action.rawValue); subject=\"\(milterSafeHeaderValue(w.subject))\""
        line += "; excerpt=\"\(w.excerpt)\""
        logger.notice("\(line)")
    }

    /// Ends quiet waves and logs them.
    public func sweep() {
        for event in detector.sweep(now: Clock.wall()) {
            if case .ended(let w) = event {
                var line = "wave \(w.id) ended: \(w.waveMessages) messages while a wave, \(w.totalCount) in all since \(WaveReport.iso(w.firstSeen)), last at \(WaveReport.iso(w.lastSeen))"
                if let p = w.promotedAs { line += "; promoted to \(p)" }
                logger.notice("\(line)")
            }
        }
    }

    // MARK: control socket

    /// `breakwater waves` (text) and `breakwater waves --json`.
    public func list(json: Bool) -> String {
        sweep()
        let now = Clock.wall()
        let waves = detector.waves(now: now)
        return json ? WaveReport.json(waves, now: now, prefix: signaturePrefix).rendered + "\n"
                    : WaveReport.text(waves, now: now, prefix: signaturePrefix)
    }

    /// What `waves promote ID` adds: the suggested signature of wave `id`, or why there is none.
    public func suggestion(id: String) -> Result<(WaveSuggestion, comment: String), WaveError> {
        let key = id.hasPrefix("w") ? id : "w" + id
        guard let w = detector.waves(now: Clock.wall()).first(where: { $0.id == key }) else {
            return .failure(WaveError("no wave \(id): `breakwater waves` lists the active and recent ones"))
        }
        guard let s = WaveReport.suggestion(w, prefix: signaturePrefix) else {
            if w.samples.count < WaveSuggestion.minSamples {
                return .failure(WaveError("wave \(w.id) has no suggested signature yet: it needs \(WaveSuggestion.minSamples) sampled messages and has \(w.samples.count)"))
            }
            return .failure(WaveError("wave \(w.id) has no suggested signature: its samples share no run of \(WaveSuggestion.minWords) or more words"))
        }
        return .success((s, WaveReport.comment(w)))
    }

    /// Records a promotion (shown by `breakwater waves`, logged when the wave ends).
    public func promoted(id: String, as name: String) -> Bool {
        let key = id.hasPrefix("w") ? id : "w" + id
        let ok = detector.store.markPromoted(id: key, as: name)
        if ok { logger.notice("wave \(key) promoted to signature \(name)") }
        return ok
    }

    /// The WAVES request of the control socket.
    public func control(_ argument: String) -> ControlReply {
        let words = argument.split(separator: " ").map(String.init)
        switch words.first?.uppercased() ?? "TEXT" {
        case "TEXT":
            return ControlReply(ok: true, head: "", body: list(json: false).split(separator: "\n").map(String.init))
        case "JSON":
            return ControlReply(ok: true, head: "", body: [list(json: true).trimmed])
        case "SUGGEST" where words.count == 2:
            if let bad = WaveService.badID(words[1]) { return ControlReply(ok: false, head: bad) }
            switch suggestion(id: words[1]) {
            case .success(let (s, comment)): return ControlReply(ok: true, head: s.name, body: [s.regex, comment])
            case .failure(let e): return ControlReply(ok: false, head: e.description)
            }
        case "PROMOTED" where words.count == 3:
            if let bad = WaveService.badID(words[1]) { return ControlReply(ok: false, head: bad) }
            do throws(SignatureInputError) { try SignatureLine.validateName(words[2], prefix: signaturePrefix) } catch {
                return ControlReply(ok: false, head: "WAVES PROMOTED: \(ControlProtocol.escaped(error.description))")
            }
            return promoted(id: words[1], as: words[2]) ? ControlReply(ok: true, head: "")
                                                       : ControlReply(ok: false, head: "no wave \(words[1])")
        default:
            return ControlReply(ok: false, head: "WAVES takes TEXT, JSON, SUGGEST ID or PROMOTED ID NAME, not '\(ControlProtocol.oneLine(argument))'")
        }
    }

    /// The part of `breakwater status` about waves.
    public func statusFields(stats: Stats) -> [(String, JSONValue)] {
        let u = detector.store.usage()
        return [
            ("enabled", .bool(true)),
            ("active", .int(u.activeWaves)),
            ("started", .int(stats.wavesStarted.load(ordering: .relaxed))),
            ("messages_in_waves", .int(stats.waveMessages.load(ordering: .relaxed))),
            ("messages_counted", .int(detector.counted.load(ordering: .relaxed))),
            ("fingerprints", .int(u.entries)),
            ("capacity", .int(u.capacity)),
            ("store_bytes", .int(u.bytes)),
            ("store_budget", .int(u.budget)),
            ("action", .string(detector.settings.action.rawValue)),
        ]
    }

    /// The line of `breakwater status` (text) about waves.
    public func statusText(stats: Stats) -> String {
        let u = detector.store.usage()
        return "waves:        \(u.activeWaves) active, \(stats.wavesStarted.load(ordering: .relaxed)) started, \(stats.waveMessages.load(ordering: .relaxed)) messages in waves (action \(detector.settings.action.rawValue)); store \(u.entries)/\(u.capacity) fingerprints, \(ByteSize.format(UInt64(u.bytes))) of \(ByteSize.format(UInt64(u.budget)))"
    }
}

public struct WaveError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Ends quiet waves every few seconds (and logs them), even when no mail comes in.
public final class WaveService: DaemonService {
    private let stopping = Atomic<Bool>(false)
    private let thread = Locked<Thread?>(nil)

    public init() {}

    /// Registers the service when wave detection is on.
    /// Registers the service, and the WAVES request on the control socket (install the control
    /// server first), when wave detection is on.
    public static func install(on daemon: MilterDaemon) {
        guard let waves = daemon.waves else { return }
        daemon.services.append(WaveService())
        ControlServer.of(daemon)?.register("WAVES", help: WaveService.help) { argument, _ in
            waves.control(argument)
        }
    }

    /// Why `id` is not a wave id (`w` and up to 16 hex digits, the `w` optional), or nil.
    static func badID(_ id: String) -> String? {
        let digits = id.hasPrefix("w") ? id.dropFirst() : Substring(id)
        if !digits.isEmpty && digits.count <= 16 && digits.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) { return nil }
        return "'\(ControlProtocol.escaped(String(id.prefix(40))))' is not a wave id (w and hex digits, as `breakwater waves` lists them)"
    }

    static let help = "WAVES [TEXT|JSON|SUGGEST ID|PROMOTED ID NAME]: active and recent waves (text lines, or one JSON array); SUGGEST answers OK NAME with the regex and the comment as body lines; PROMOTED records that wave ID got signature NAME"

    public func start(_ daemon: MilterDaemon) throws {
        guard let waves = daemon.waves else { return }
        let t = Thread.start(stackSize: 256 << 10) { [self] in
            var ticks = 0
            while !stopping.load(ordering: .relaxed) {
                usleep(200_000)
                ticks += 1
                if ticks % 25 == 0 { waves.sweep() }  // every 5 s
            }
        }
        thread.withLock { $0 = t }
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        thread.withLock { t in t?.join(); t = nil }
    }
}

import BreakwaterCore
import BreakwaterEngine
import BreakwaterWaves
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Wave detection in the daemon: an inspector per scanned message, the wave rule on its decision,
/// the log lines when a wave starts and ends, and what `breakwater waves` asks over the control
/// socket. Present when `waves = yes` (the default).
package final class WaveFeature: Sendable {
    package let detector: WaveDetector
    let memo = WaveMemo()
    let logger: Logger
    /// Prefix of suggested signature names (the names `breakwater signatures add` accepts).
    package let signaturePrefix: String
    /// The last messages accepted clean, for the check of a suggested signature (`hamCheck`).
    package let ham = RecentHam()
    /// For the check's engine: the scan limits, and where its one-signature database is written.
    let limits: EngineLimits
    let checkDirectory: String

    package init(config: Config, stats: Stats, logger: Logger) {
        detector = WaveDetector(settings: config.wave, stats: stats)
        self.logger = logger
        self.signaturePrefix = config.ops.localPrefix
        self.limits = config.limits
        self.checkDirectory = config.spoolDirectory
        let u = detector.store.usage()
        logger.notice(
            "wave detection: \(config.wave.threshold) messages in \(Int(config.wave.window))s from more than \(config.wave.minSources) client networks make a wave (action \(config.wave.action.rawValue)); store of \(ByteSize.format(config.wave.storeSize)) holds \(u.capacity) fingerprints"
        )
    }

    /// The inspector for the message about to be scanned. Allow-listed mail is fingerprinted too
    /// (never counted): its body must be in the repeat memo in case the same bytes come again from
    /// a sender that is not allow-listed, which libclamav's cache would not parse again.
    func inspector() -> WaveLayerInspector? {
        WaveLayerInspector(memo: memo)
    }

    /// The inspector standing for the one a scan worker ran (what it collected), with the daemon's memo.
    func inspector(collected: WaveCollected) -> WaveLayerInspector {
        WaveLayerInspector(memo: memo, collected: collected)
    }

    /// Counts the scanned message in the wave store and returns the wave it belongs to, if any, for
    /// the policy to decide on. The store's lock is taken only inside `observe`, after the scan.
    func observe(
        _ result: ScanResult, inspector: WaveLayerInspector?, sender: String, clientIP: [UInt8]?,
        clientAddress: String, subject: String?
    ) -> String? {
        guard let inspector else { return nil }
        let fp = inspector.finish(subject: subject.map(WaveSubject.decode))
        let o = detector.observe(
            fp, sender: sender, clientIP: clientIP, clientAddress: clientAddress, now: Now.wall())
        if let started = o.started { logStart(started) }
        if o.wave != nil { inspector.rememberAsWaveMember() }
        // Ham for the check of a suggested signature: a clean scan outside any wave (accepted as is).
        if o.wave == nil, result.isClean, let fp { ham.add(fp) }
        if let sampled = o.sampled, let s = WaveReport.suggestion(sampled, prefix: signaturePrefix) {
            logger.notice(
                "wave \(sampled.id): suggested signature from \(sampled.samples.count) messages: \(s.command(comment: WaveReport.comment(sampled))) (or: breakwater waves promote \(sampled.id))"
            )
        }
        return o.wave
    }

    func logStart(_ w: WaveInfo) {
        var line =
            "wave \(w.id) started: \(w.windowCount) messages in the window from ~\(w.senders) senders, ~\(w.networks) client networks"
        line += "; action \(detector.settings.action.rawValue); subject=\(Escape.quoted(w.subject))"
        line += "; excerpt=\(Escape.quoted(w.excerpt))"
        logger.notice("\(line)")
    }

    /// Ends quiet waves and logs them.
    package func sweep() {
        for event in detector.sweep(now: Now.wall()) {
            if case .ended(let w) = event {
                var line =
                    "wave \(w.id) ended: \(w.waveMessages) messages while a wave, \(w.totalCount) in all since \(Timestamp.iso8601(w.firstSeen)), last at \(Timestamp.iso8601(w.lastSeen))"
                if let p = w.promotedAs { line += "; promoted to \(Escape.field(p))" }
                logger.notice("\(line)")
            }
        }
    }

    // MARK: control socket

    /// `breakwater waves` (text) and `breakwater waves --json`.
    package func list(json: Bool) -> String {
        sweep()
        let now = Now.wall()
        let waves = detector.waves(now: now)
        return json
            ? WaveReport.json(waves, now: now, prefix: signaturePrefix).rendered + "\n"
            : WaveReport.text(waves, now: now, prefix: signaturePrefix)
    }

    /// What `waves promote ID` adds: the suggested signature of wave `id`, or why there is none.
    package func suggestion(id: String) -> Result<(WaveSuggestion, comment: String), WaveError> {
        suggestionAndWave(id: id).map { ($0.0, $0.comment) }
    }

    func suggestionAndWave(id: String) -> Result<(WaveSuggestion, comment: String, wave: WaveInfo), WaveError> {
        let key = id.hasPrefix("w") ? id : "w" + id
        guard let w = detector.waves(now: Now.wall()).first(where: { $0.id == key }) else {
            return .failure(
                WaveError("no wave \(Escape.text(id)): `breakwater waves` lists the active and recent ones"))
        }
        guard let s = WaveReport.suggestion(w, prefix: signaturePrefix) else {
            if w.samples.count < WaveSuggestion.minSamples {
                return .failure(
                    WaveError(
                        "wave \(w.id) has no suggested signature yet: it needs \(WaveSuggestion.minSamples) sampled messages and has \(w.samples.count)"
                    ))
            }
            return .failure(
                WaveError(
                    "wave \(w.id) has no suggested signature: its samples share no run of \(WaveSuggestion.minWords) or more words"
                ))
        }
        return .success((s, WaveReport.comment(w), w))
    }

    /// What a suggested signature makes of the recently accepted mail: the suggestion compiled by
    /// libclamav into an engine of its own (the same line `signatures add` writes), which scans the
    /// text of each message in `ham` except the wave's own first messages (and those of any other
    /// wave), accepted before it was a wave. Runs on the control thread, never on the message path.
    package func hamCheck(_ s: WaveSuggestion) -> Result<(matched: [String], checked: Int), WaveError> {
        let now = Now.wall()
        let templates = detector.waves(now: now).map(\.signature).filter { !$0.isEmpty }
        // Half the similarity at which a message joins a fingerprint: a wave's template drifts as it
        // learns, and its early members must not count as ham; unrelated mail shares next to nothing.
        let bins = max(4, Int((detector.settings.similarity * Double(waveSignatureSize) / 2).rounded(.up)))
        let texts = ham.samples(excluding: templates, minEqualBins: bins)
        if texts.isEmpty { return .success(([], 0)) }
        let line: (SignatureFileKind, String)
        do {
            line = try SignatureLine.make(
                name: s.name, pattern: .regex(s.regex, ignoreCase: true, trigger: nil),
                prefix: signaturePrefix)
        } catch {
            return .failure(WaveError("the suggested signature is not valid: \(error)"))
        }
        var template = Array("\(checkDirectory)/.breakwater-ham-check-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            return .failure(
                WaveError(
                    "cannot check it against recent mail: mkdtemp in \(checkDirectory): \(FileWalk.errnoString())"))
        }
        let dir = String(cString: made)
        let file = dir + "/check." + line.0.rawValue
        defer {
            unlink(file)
            rmdir(dir)
        }
        guard WaveFeature.writeNew(file, line.1 + "\n") else {
            return .failure(
                WaveError("cannot check it against recent mail: cannot write \(file): \(FileWalk.errnoString())"))
        }
        let engine: ClamEngine
        do {
            engine = try ClamEngine(directories: [dir], limits: limits)
        } catch {
            return .failure(WaveError("cannot check it against recent mail: libclamav: \(error)"))
        }
        var matched: [String] = []
        for t in texts {
            let r =
                t.utf8.withContiguousStorageIfAvailable { engine.scan(UnsafeRawBufferPointer($0), name: "ham") }
                ?? Array(t.utf8).withUnsafeBytes { engine.scan($0, name: "ham") }
            if r.detections.contains(where: { $0.name == s.name }) { matched.append(t) }
        }
        return .success((matched, texts.count))
    }

    /// Writes a new file (0600, never through a link) in the check's own directory.
    static func writeNew(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Records a promotion (shown by `breakwater waves`, logged when the wave ends).
    package func promoted(id: String, as name: String) -> Bool {
        let key = id.hasPrefix("w") ? id : "w" + id
        let ok = detector.store.markPromoted(id: key, as: name)
        if ok { logger.notice("wave \(Escape.field(key)) promoted to signature \(Escape.field(name))") }
        return ok
    }

    /// The WAVES request of the control socket.
    package func control(_ argument: String) -> ControlReply {
        let words = argument.split(separator: " ").map(String.init)
        switch words.first?.uppercased() ?? "TEXT" {
        case "TEXT":
            return ControlReply(ok: true, head: "", body: list(json: false).split(separator: "\n").map(String.init))
        case "JSON":
            return ControlReply(ok: true, head: "", body: [list(json: true).trimmed])
        case "SUGGEST" where words.count == 2:
            if let bad = WaveService.badID(words[1]) { return ControlReply(ok: false, head: bad) }
            switch suggestionAndWave(id: words[1]) {
            case .success(let (s, comment, _)):
                // Line 3: the check against recently accepted mail, "ham CHECKED MATCHED" (or
                // "ham-error WHY"); then the excerpts of at most 3 messages it matched, escaped.
                var body = [s.regex, comment]
                switch hamCheck(s) {
                case .success(let (matched, checked)):
                    body.append("ham \(checked) \(matched.count)")
                    body += matched.prefix(3).map { Escape.text(WaveFingerprint.excerpt($0)) }
                case .failure(let e):
                    body.append("ham-error \(Escape.text(e.description))")
                }
                return ControlReply(ok: true, head: s.name, body: body)
            case .failure(let e): return ControlReply(ok: false, head: e.description)
            }
        case "PROMOTED" where words.count == 3:
            if let bad = WaveService.badID(words[1]) { return ControlReply(ok: false, head: bad) }
            do throws(SignatureInputError) { try SignatureLine.validateName(words[2], prefix: signaturePrefix) } catch {
                return ControlReply(ok: false, head: "WAVES PROMOTED: \(Escape.text(error.description))")
            }
            return promoted(id: words[1], as: words[2])
                ? ControlReply(ok: true, head: "")
                : ControlReply(ok: false, head: "no wave \(words[1])")
        default:
            return ControlReply(
                ok: false,
                head:
                    "WAVES takes TEXT, JSON, SUGGEST ID or PROMOTED ID NAME, not '\(ControlProtocol.oneLine(argument))'"
            )
        }
    }

    /// The part of `breakwater status` about waves.
    package func statusFields(stats: Stats) -> [(String, JSONValue)] {
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
    package func statusText(stats: Stats) -> String {
        let u = detector.store.usage()
        return
            "waves:        \(u.activeWaves) active, \(stats.wavesStarted.load(ordering: .relaxed)) started, \(stats.waveMessages.load(ordering: .relaxed)) messages in waves (action \(detector.settings.action.rawValue)); store \(u.entries)/\(u.capacity) fingerprints, \(ByteSize.format(UInt64(u.bytes))) of \(ByteSize.format(UInt64(u.budget)))"
    }
}

package struct WaveError: Error, CustomStringConvertible, Sendable {
    package let description: String
    package init(_ d: String) { description = d }
}

/// Ends quiet waves every few seconds (and logs them), even when no mail comes in.
package final class WaveService: DaemonService {
    private let stopping = Atomic<Bool>(false)
    private let thread = Locked<PosixThread?>(nil)

    package init() {}

    /// Registers the service when wave detection is on.
    /// Registers the service, and the WAVES request on the control socket (install the control
    /// server first), when wave detection is on.
    package static func install(on daemon: MilterDaemon) {
        guard let waves = daemon.waves else { return }
        daemon.services.append(WaveService())
        ControlServer.of(daemon)?.register("WAVES", help: WaveService.help) { argument, _ in
            waves.control(argument)
        }
    }

    /// Why `id` is not a wave id (`w` and up to 16 hex digits, the `w` optional), or nil.
    static func badID(_ id: String) -> String? {
        let digits = id.hasPrefix("w") ? id.dropFirst() : Substring(id)
        if !digits.isEmpty && digits.count <= 16
            && digits.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
        {
            return nil
        }
        return
            "'\(Escape.text(String(id.prefix(40))))' is not a wave id (w and hex digits, as `breakwater waves` lists them)"
    }

    static let help =
        "WAVES [TEXT|JSON|SUGGEST ID|PROMOTED ID NAME]: active and recent waves (text lines, or one JSON array); SUGGEST answers OK NAME with the regex, the comment and 'ham CHECKED MATCHED' (the suggestion against recently accepted mail) as body lines, then excerpts of the mail it matched; PROMOTED records that wave ID got signature NAME"

    package func start(_ daemon: MilterDaemon) throws {
        guard let waves = daemon.waves else { return }
        let t = PosixThread.start(stackSize: 256 << 10) { [self] in
            var ticks = 0
            while !stopping.load(ordering: .relaxed) {
                usleep(200_000)
                ticks += 1
                if ticks % 25 == 0 { waves.sweep() }  // every 5 s
            }
        }
        thread.withLock { $0 = t }
    }

    package func stop() {
        stopping.store(true, ordering: .relaxed)
        thread.withLock { t in
            t?.join()
            t = nil
        }
    }
}

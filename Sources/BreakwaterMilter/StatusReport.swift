import BreakwaterCore
import BreakwaterEngine

#if canImport(Glibc)
import Glibc
#endif

/// What `breakwater status` shows, read from the daemon's counters and snapshots (atomics and two short
/// locks; nothing waits for a scan).
package struct StatusReport: Sendable {
    package var pid: Int
    package var startedAt: Double
    package var now: Double
    package var engine: EngineHolder.ReloadStatus
    package var admission: Admission.Snapshot
    package var sessionsOpen: Int
    package var inFlight: Int
    package var counters: [(String, Int)]
    package var tempfails: [(String, Int)]
    package var selfCheck: Double
    package var control: String
    package var localSignatures: String
    /// Wave detection (nil when `waves = no`): the JSON fields and the text line.
    package var waves: (json: [(String, JSONValue)], text: String)?

    package init(daemon: MilterDaemon) {
        let st = daemon.stats
        pid = Int(getpid())
        startedAt = st.startedAt
        now = Now.wall()
        engine = daemon.engines.status
        admission = daemon.admission.snapshot
        sessionsOpen = st.sessionsOpen.load(ordering: .relaxed)
        inFlight = st.inFlight.load(ordering: .relaxed)
        counters = [
            ("scanned", st.scanned.load(ordering: .relaxed)),
            ("accepted", st.accepted.load(ordering: .relaxed)),
            ("rejected", st.rejected.load(ordering: .relaxed)),
            ("tempfailed", st.tempfailed.load(ordering: .relaxed)),
            ("discarded", st.discarded.load(ordering: .relaxed)),
            ("quarantined", st.quarantined.load(ordering: .relaxed)),
            ("tagged", st.tagged.load(ordering: .relaxed)),
            ("skipped", st.skipped.load(ordering: .relaxed)),
        ]
        tempfails = TempfailCause.allCases.map { ($0.rawValue, st.tempfails($0)) }
        selfCheck = daemon.config.ops.selfCheck
        control = daemon.config.control
        localSignatures = daemon.config.localSignatures
        waves = daemon.waves.map { ($0.statusFields(stats: st), $0.statusText(stats: st)) }
    }

    package var json: JSONValue {
        let e = engine
        return .object([
            ("version", .string(Breakwater.version)),
            ("libclamav", .string(ClamEngine.libraryVersion)),
            (
                "prefault",
                .object([
                    ("enabled", .bool(ClamEngine.prefaultStatus?.enabled ?? false)),
                    ("reason", .string(ClamEngine.prefaultStatus?.reason ?? "not decided yet")),
                ])
            ),
            ("pid", .int(pid)),
            ("started_at", .string(Timestamp.iso8601(startedAt))),
            ("uptime_seconds", .double(rounded(now - startedAt))),
            (
                "engine",
                .object([
                    ("generation", .int(e.generation)),
                    ("signatures", .int(e.signatures)),
                    ("directories", .array(e.directories.map(JSONValue.string))),
                    ("loaded_at", .string(Timestamp.iso8601(e.loadedAt))),
                    ("build_seconds", .double(rounded(e.buildSeconds))),
                    ("reloading", .bool(e.reloading)),
                    ("serving", .bool(e.serving)),
                    ("memory_bytes", e.engineBytes.map { .int(Int(clamping: $0)) } ?? .null),
                    (
                        "progress",
                        e.progress.map {
                            .object([
                                ("stage", .string($0.stage)),
                                ("percent", .int(Int(($0.fraction * 100).rounded(.down)))),
                            ])
                        } ?? .null
                    ),
                ])
            ),
            (
                "last_reload",
                .object([
                    ("at", e.lastAttemptAt.map { .string(Timestamp.iso8601($0)) } ?? .null),
                    ("succeeded", .bool(e.lastSucceeded)),
                    ("error", e.lastError.map(JSONValue.string) ?? .null),
                    ("mode", e.lastMode.map(JSONValue.string) ?? .null),
                    ("mode_reason", e.lastModeReason.map(JSONValue.string) ?? .null),
                    ("peak_rss_bytes", e.lastPeakBytes.map { .int(Int(clamping: $0)) } ?? .null),
                ])
            ),
            ("self_check_seconds", .double(selfCheck)),
            ("local_signatures", .string(localSignatures)),
            ("slots", .object([("busy", .int(admission.busy)), ("total", .int(admission.slots))])),
            ("waiting", .object([("now", .int(admission.waiting)), ("max", .int(admission.maxWaiting))])),
            (
                "memory",
                .object([
                    ("buffered_bytes", .int(Int(admission.buffered))), ("budget_bytes", .int(Int(admission.budget))),
                ])
            ),
            (
                "spool",
                .object([
                    ("spooled_bytes", .int(Int(clamping: admission.spooled))),
                    ("budget_bytes", .int(Int(clamping: admission.spoolBudget))),
                ])
            ),
            ("sessions_open", .int(sessionsOpen)),
            ("in_flight", .int(inFlight)),
            ("counters", .object(counters.map { ($0.0, .int($0.1)) })),
            ("tempfailed_by_cause", .object(tempfails.map { ($0.0, .int($0.1)) })),
            ("waves", .object(waves?.json ?? [("enabled", .bool(false))])),
        ])
    }

    /// For people: a few aligned lines.
    package var text: [String] {
        let e = engine
        var lines: [String] = []
        lines.append(
            "breakwater \(Breakwater.version) (libclamav \(ClamEngine.libraryVersion)), pid \(pid), up \(Timestamp.duration(now - startedAt)) since \(Timestamp.iso8601(startedAt))"
        )
        let size = e.engineBytes.map { ", \(ByteSize.format($0))" } ?? ""
        if e.generation == 0 {
            lines.append("engine:       none loaded yet")
        } else {
            lines.append(
                "engine:       generation \(e.generation), \(e.signatures) signatures\(size), loaded \(Timestamp.iso8601(e.loadedAt)) in \(Int((e.buildSeconds * 1000).rounded())) ms\(e.reloading ? " (a reload is running)" : "")\(e.serving ? "" : "; NOT SERVING: mail is answered 451 4.3.2")"
            )
        }
        if let p = e.progress {
            lines.append("              \(p.stage): \(Int((p.fraction * 100).rounded(.down))) %")
        }
        lines.append("directories:  \(e.directories.joined(separator: ", "))")
        lines.append(
            "prefault:     \(ClamEngine.prefaultStatus.map { ($0.enabled ? "on" : "off") + " (" + $0.reason + ")" } ?? "not decided yet")"
        )
        if let at = e.lastAttemptAt {
            let how =
                e.lastMode.map { m in " (\(m)\(e.lastPeakBytes.map { ", peak RSS \(ByteSize.format($0))" } ?? ""))" }
                ?? ""
            if e.lastSucceeded {
                lines.append("last reload:  \(Timestamp.iso8601(at)) OK\(how)")
            } else {
                lines.append(
                    "last reload:  \(Timestamp.iso8601(at)) FAILED, still serving generation \(e.generation): \(Escape.text(e.lastError ?? "?"))\(how)"
                )
            }
        } else {
            lines.append("last reload:  none since start")
        }
        lines.append("self-check:   \(selfCheck > 0 ? "every \(formatSeconds(selfCheck))" : "off")")
        lines.append(
            "scan slots:   \(admission.busy)/\(admission.slots) busy, \(admission.waiting) waiting (at most \(admission.maxWaiting))"
        )
        lines.append(
            "memory:       \(ByteSize.format(admission.buffered)) buffered of \(ByteSize.format(admission.budget)) budget; \(sessionsOpen) sessions open, \(inFlight) messages in progress"
        )
        lines.append(
            "spool:        \(ByteSize.format(admission.spooled)) spooled of \(ByteSize.format(admission.spoolBudget)) budget"
        )
        lines.append("messages:     " + counters.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
        lines.append("tempfailed:   " + tempfails.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
        lines.append(waves?.text ?? "waves:        detection off (waves = no)")
        return lines
    }

    private func rounded(_ d: Double) -> Double { (d * 1000).rounded() / 1000 }

    private func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : "\(Int((s * 1000).rounded()))ms"
    }
}

import BreakwaterCore
import Prometheus
import Synchronization

/// What became of a message, as the metrics count it: every message answered falls in exactly one.
package enum MessageOutcome: String, Sendable, CaseIterable {
    case accepted, rejected, tempfailed, discarded, quarantined, tagged, skipped

    package init(_ d: Decision) {
        if d.verdict == .skipped {
            self = .skipped
            return
        }
        switch d.action {
        case .accept: self = .accepted
        case .reject: self = .rejected
        case .tempfail: self = .tempfailed
        case .discard: self = .discarded
        case .quarantine: self = .quarantined
        case .tag: self = .tagged
        }
    }
}

/// The values read at scrape time: counters since start (monotonic) and gauges now.
package struct MetricsSnapshot: Sendable {
    package var messages: [MessageOutcome: Int] = [:]
    package var tempfails: [TempfailCause: Int] = [:]
    package var scans = 0
    package var rescans = 0
    /// Scans that crashed the previous process (found at start-up).
    package var scanCrashes = 0
    /// Scan workers replaced since start.
    package var workerRestarts = 0
    package var slotsBusy = 0
    package var slots = 0
    package var waiting = 0
    package var waitingLimit = 0
    package var inFlight = 0
    package var bufferedBytes: UInt64 = 0
    package var memoryBudgetBytes: UInt64 = 0
    package var spooledBytes: UInt64 = 0
    package var spoolBudgetBytes: UInt64 = 0
    package var sessionsOpen = 0
    package var threads = 0
    package var engineGeneration = 0
    package var signatures = 0
    package var engineLoadedAt = 0.0
    package var lastReloadAt = 0.0
    package var lastReloadSucceeded = true
    package var reloadSeconds = 0.0
    package var startedAt = 0.0
    /// RSS the engine in service added when it was built.
    package var engineBytes: UInt64 = 0
    /// Peak RSS during the last reload (0 before the first).
    package var reloadPeakBytes: UInt64 = 0
    /// "concurrent" or "blocking": how the last reload made room (nil before the first).
    package var reloadMode: String?

    package init() {}
}

/// Breakwater's instruments in a swift-prometheus registry.
///
/// The per-message path (`observe`) touches only what the daemon does not count already: the detection
/// counter of each matched signature and three histograms (an atomic add or a few-instruction lock
/// each). Message, tempfail and scan counters mirror the daemon's own lock-free `Stats` at scrape time,
/// so they also cover the messages answered before end of data (busy at MAIL FROM, skipped clients).
package final class PrometheusInstruments: Sendable {
    package let registry: PrometheusCollectorRegistry
    package let maxSignatures: Int

    private let messages: [Counter]  // by MessageOutcome.allCases
    private let tempfails: [Counter]  // by TempfailCause.allCases
    private let scans: Counter
    private let rescans: Counter
    private let scanCrashes: Counter
    private let workerRestarts: Counter
    /// Values the mirrored counters had at the last scrape, same order: messages, tempfails, scans, rescans,
    /// scan crashes.
    private let mirrored: Locked<[Int]>

    private let detections: Locked<[String: Counter]>
    private let otherDetections: Counter

    private let scanSeconds: ValueHistogram
    private let waitSeconds: ValueHistogram
    private let messageBytes: ValueHistogram

    private let slotsBusy, slots, waiting, waitingLimit, inFlight: Gauge
    private let bufferedBytes, memoryBudgetBytes, sessionsOpen, threads: Gauge
    private let spooledBytes, spoolBudgetBytes: Gauge
    private let engineGeneration, signatures, engineLoadedAt: Gauge
    private let lastReloadAt, lastReloadSuccess, reloadSeconds, startedAt: Gauge
    private let engineBytes, reloadPeakBytes: Gauge
    private let reloadModes: [Gauge]  // concurrent, blocking

    package static let scanBuckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]
    package static let waitBuckets: [Double] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]
    package static let byteBuckets: [Double] = [
        1024, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864,
    ]

    /// `maxSignatures`: detection series with their own signature label; later names count as `other`.
    /// `info`: labels of `breakwater_build_info`.
    package init(
        maxSignatures: Int, info: [(String, String)] = [],
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) {
        self.registry = registry
        self.maxSignatures = max(0, maxSignatures)
        let r = registry

        messages = MessageOutcome.allCases.map {
            r.makeCounter(
                descriptor: Self.metric(
                    "messages_total",
                    help:
                        "Messages answered, by outcome: accepted (let through unchanged), rejected (5xx), tempfailed (4xx, the MTA retries), discarded, quarantined (held by the MTA), tagged (header added), skipped (not scanned by a skip rule)."
                ), labels: [("outcome", $0.rawValue)])
        }
        tempfails = TempfailCause.allCases.map {
            r.makeCounter(
                descriptor: Self.metric(
                    "tempfails_total",
                    help:
                        "Messages answered 4xx, by cause: busy (no scan slot and the waiting line full), memory_budget (message could not be held), timeout (waited max-wait for a slot), scan_error, size (a scan limit with tempfail configured), spool_budget (spool-budget spent), sessions (max-sessions open: answered at connect), threads (a thread could not be started), policy (a signature whose action is tempfail), wave (a mail wave with wave-action tempfail)."
                ), labels: [("cause", $0.rawValue)])
        }
        scans = r.makeCounter(descriptor: Self.metric("scans_total", help: "Messages scanned by the engine."))
        rescans = r.makeCounter(
            descriptor: Self.metric(
                "rescans_total",
                help:
                    "Messages scanned a second time for every match: the first match's action was not the strictest configured, so another signature could still make the answer stricter."
            ))
        scanCrashes = r.makeCounter(
            descriptor: Self.metric(
                "scan_crashes_total",
                help:
                    "Scans that crashed the scanner: a scan worker that died of a crash signal during the scan (the message is answered on-scan-crash at once), and scans found in flight in the records a crashed daemon process left (counted at start-up)."
            ))
        workerRestarts = r.makeCounter(
            descriptor: Self.metric(
                "scan_worker_restarts_total",
                help:
                    "Scan worker processes that ended (a crash, SIGKILL, found dead) and were replaced by the engine host."
            ))
        mirrored = Locked([Int](repeating: 0, count: MessageOutcome.allCases.count + TempfailCause.allCases.count + 4))

        otherDetections = r.makeCounter(
            descriptor: Self.metric("detections_total", help: PrometheusInstruments.detectionsHelp),
            labels: [("signature", "other")])
        detections = Locked([:])

        scanSeconds = r.makeValueHistogram(
            descriptor: Self.metric("scan_duration_seconds", help: "Seconds the engine took to scan a message."),
            buckets: Self.scanBuckets)
        waitSeconds = r.makeValueHistogram(
            descriptor: Self.metric(
                "slot_wait_seconds",
                help:
                    "Seconds a message waited for a scan slot (0 when one was free), for every message that got a slot or timed out waiting."
            ), buckets: Self.waitBuckets)
        messageBytes = r.makeValueHistogram(
            descriptor: Self.metric("message_size_bytes", help: "Size in bytes of the messages scanned."),
            buckets: Self.byteBuckets)

        slotsBusy = r.makeGauge(descriptor: Self.metric("scan_slots_busy", help: "Scan slots in use now."))
        slots = r.makeGauge(descriptor: Self.metric("scan_slots", help: "Scan slots configured (workers)."))
        waiting = r.makeGauge(
            descriptor: Self.metric("messages_waiting", help: "Messages waiting for a scan slot now."))
        waitingLimit = r.makeGauge(
            descriptor: Self.metric(
                "messages_waiting_limit",
                help: "Messages that may wait for a scan slot (max-waiting); past it new messages get 4xx."))
        inFlight = r.makeGauge(
            descriptor: Self.metric(
                "messages_in_progress", help: "Messages at end of data being scanned or waiting now."))
        bufferedBytes = r.makeGauge(
            descriptor: Self.metric("buffered_bytes", help: "Bytes of message data held in memory now."))
        memoryBudgetBytes = r.makeGauge(
            descriptor: Self.metric(
                "memory_budget_bytes", help: "Bytes of message data that may be held in memory (memory-budget)."))
        spooledBytes = r.makeGauge(
            descriptor: Self.metric("spooled_bytes", help: "Bytes of message data held in spool files now."))
        spoolBudgetBytes = r.makeGauge(
            descriptor: Self.metric(
                "spool_budget_bytes", help: "Bytes of message data that may be held in spool files (spool-budget)."))
        sessionsOpen = r.makeGauge(
            descriptor: Self.metric("milter_sessions", help: "libmilter sessions (MTA connections) open now."))
        threads = r.makeGauge(
            descriptor: Self.metric(
                "process_threads", help: "Threads of the breakwater process (from /proc/self/status)."))
        engineGeneration = r.makeGauge(
            descriptor: Self.metric(
                "engine_generation", help: "Generation of the engine in service: 1 at start, +1 per successful reload.")
        )
        signatures = r.makeGauge(
            descriptor: Self.metric("signatures_loaded", help: "Signatures loaded in the engine in service."))
        engineLoadedAt = r.makeGauge(
            descriptor: Self.metric(
                "engine_loaded_timestamp_seconds", help: "Unix time the engine in service was loaded."))
        lastReloadAt = r.makeGauge(
            descriptor: Self.metric(
                "reload_last_timestamp_seconds",
                help: "Unix time of the last signature load attempt (the initial load until a reload is tried)."))
        lastReloadSuccess = r.makeGauge(
            descriptor: Self.metric(
                "reload_last_success",
                help:
                    "1 when the last signature load attempt succeeded, 0 when it failed (the previous engine stays in service)."
            ))
        reloadSeconds = r.makeGauge(
            descriptor: Self.metric("reload_duration_seconds", help: "Seconds the engine in service took to build."))
        startedAt = r.makeGauge(descriptor: Self.metric("start_time_seconds", help: "Unix time the daemon started."))
        engineBytes = r.makeGauge(
            descriptor: Self.metric(
                "engine_memory_bytes", help: "Resident memory the engine in service added when it was built."))
        reloadPeakBytes = r.makeGauge(
            descriptor: Self.metric(
                "reload_peak_rss_bytes",
                help: "Peak resident memory of the process during the last reload (0: none yet)."))
        reloadModes = ["concurrent", "blocking"].map {
            r.makeGauge(
                descriptor: Self.metric(
                    "reload_last_mode",
                    help:
                        "1 for the way the last reload made room for the new engine (reload-mode; auto picks one), 0 for the other."
                ), labels: [("mode", $0)])
        }
        let build = r.makeGauge(
            descriptor: Self.metric(
                "build_info", help: "Always 1; the labels name the Breakwater version and the libclamav it runs on."),
            labels: [("version", Breakwater.version)] + info)
        build.set(to: 1)
    }

    /// `breakwater_<name>` with its HELP text.
    static func metric(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "breakwater", metricName: name, unitName: "", helpText: help)
    }

    static let detectionsHelp =
        "Signature matches, by signature name; names past metrics-max-signatures distinct ones are counted as signature=\"other\"."

    // MARK: per message

    /// Called after each message answered at end of data. Never blocks for long: atomics, and short
    /// locks in the histograms and the signature table.
    package func observe(_ r: MessageRecord) {
        if r.scanned {
            scanSeconds.record(r.scanSeconds)
            messageBytes.record(Double(r.bytes))
        }
        if r.scanned || r.decision.tempfailCause == .timeout && r.decision.verdict == .busy {
            waitSeconds.record(r.waitSeconds)
        }
        if r.decision.verdict == .infected {
            for name in r.decision.signatures { detectionCounter(name).increment() }
        }
    }

    private func detectionCounter(_ name: String) -> Counter {
        detections.withLock { table in
            if let c = table[name] { return c }
            guard table.count < maxSignatures, name != "other" else { return otherDetections }
            let c = registry.makeCounter(
                descriptor: Self.metric("detections_total", help: PrometheusInstruments.detectionsHelp),
                labels: [("signature", name)])
            table[name] = c
            return c
        }
    }

    // MARK: at scrape time

    /// Brings the mirrored counters and the gauges to `s`.
    package func update(_ s: MetricsSnapshot) {
        var now: [Int] = MessageOutcome.allCases.map { s.messages[$0] ?? 0 }
        now += TempfailCause.allCases.map { s.tempfails[$0] ?? 0 }
        now.append(s.scans)
        now.append(s.rescans)
        now.append(s.scanCrashes)
        now.append(s.workerRestarts)
        let counters = messages + tempfails + [scans, rescans, scanCrashes, workerRestarts]
        mirrored.withLock { last in
            for i in now.indices where now[i] > last[i] {
                counters[i].increment(by: Int64(now[i] - last[i]))
                last[i] = now[i]
            }
        }
        slotsBusy.set(to: Double(s.slotsBusy))
        slots.set(to: Double(s.slots))
        waiting.set(to: Double(s.waiting))
        waitingLimit.set(to: Double(s.waitingLimit))
        inFlight.set(to: Double(s.inFlight))
        bufferedBytes.set(to: Double(s.bufferedBytes))
        memoryBudgetBytes.set(to: Double(s.memoryBudgetBytes))
        spooledBytes.set(to: Double(s.spooledBytes))
        spoolBudgetBytes.set(to: Double(s.spoolBudgetBytes))
        sessionsOpen.set(to: Double(s.sessionsOpen))
        threads.set(to: Double(s.threads))
        engineGeneration.set(to: Double(s.engineGeneration))
        signatures.set(to: Double(s.signatures))
        engineLoadedAt.set(to: s.engineLoadedAt)
        lastReloadAt.set(to: s.lastReloadAt)
        lastReloadSuccess.set(to: s.lastReloadSucceeded ? 1 : 0)
        reloadSeconds.set(to: s.reloadSeconds)
        startedAt.set(to: s.startedAt)
        engineBytes.set(to: Double(s.engineBytes))
        reloadPeakBytes.set(to: Double(s.reloadPeakBytes))
        for (g, mode) in zip(reloadModes, ["concurrent", "blocking"]) { g.set(to: s.reloadMode == mode ? 1 : 0) }
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    package func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }

    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

import BreakwaterCore
import BreakwaterEngine
import BreakwaterMilter
import CoreMetrics
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The Prometheus endpoint of `breakwater run`: GET /metrics and GET /health on the `metrics` address.
package final class MetricsService: ServedWhileLoading {
    /// The `metrics` setting; parsed when the service starts (the configuration has checked it already).
    package let spec: String
    package let metrics: PrometheusInstruments
    private let endpoint = Locked<HTTPEndpoint?>(nil)

    package init(spec: String, metrics: PrometheusInstruments) {
        self.spec = spec
        self.metrics = metrics
    }

    /// The address actually listened on (the port is the bound one), once started.
    package var listening: ListenAddress? {
        endpoint.withLock { e in e.map { ListenAddress(address: $0.address.address, port: $0.port) } }
    }

    private static let bootstrapped = Atomic<Bool>(false)

    /// Registers the service and its per-message observer when `metrics` is set (empty turns it off).
    /// The registry also becomes the swift-metrics backend, so instruments made with the swift-metrics
    /// API anywhere in the process are exported with Breakwater's own.
    package static func install(on daemon: MilterDaemon) {
        let spec = daemon.config.metrics
        guard !spec.isEmpty else { return }
        let metrics = PrometheusInstruments(
            maxSignatures: daemon.config.metricsMaxSignatures,
            info: [("libclamav", ClamEngine.libraryVersion)])
        if bootstrapped.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        }
        daemon.services.append(MetricsService(spec: spec, metrics: metrics))
        daemon.observers.append { record in metrics.observe(record) }
    }

    /// Binds the endpoint (before the first engine loads: /health answers 503 with the progress).
    package func openListener(_ daemon: MilterDaemon) throws {
        let address: ListenAddress
        do { address = try ListenAddress.parse(spec) } catch { throw StartupError("metrics: \(error)") }
        let metrics = self.metrics
        let e = HTTPEndpoint(address: address) { [weak daemon] request in
            guard let daemon else { return .text(503, "Service Unavailable", "stopping\n") }
            return MetricsService.respond(to: request, daemon: daemon, metrics: metrics)
        }
        do { try e.openListener() } catch { throw StartupError(error.description) }
        endpoint.withLock { $0 = e }
        daemon.logger.notice("metrics on http://\(ListenAddress(address: address.address, port: e.port))/metrics")
    }

    /// Serves the endpoint on its thread (binds it now unless `openListener` did).
    package func start(_ daemon: MilterDaemon) throws {
        if endpoint.withLock({ $0 }) == nil { try openListener(daemon) }
        do { try endpoint.withLock { $0 }?.start() } catch { throw StartupError(error.description) }
    }

    /// While the first engine loads, on the loading thread.
    package func serveWaiting(_ daemon: MilterDaemon, until deadline: Double) {
        endpoint.withLock { $0 }?.serveWaiting(until: deadline)
    }

    package func stop() {
        let e = endpoint.withLock { e -> HTTPEndpoint? in
            defer { e = nil }
            return e
        }
        e?.stop()
    }

    /// GET /metrics, GET /health; 405 for another method on those, 404 for anything else.
    static func respond(to request: HTTPRequest, daemon: MilterDaemon, metrics: PrometheusInstruments) -> HTTPResponse {
        switch request.path {
        case "/metrics", "/health":
            guard request.method == "GET" else {
                return .text(405, "Method Not Allowed", "only GET\n", headers: [("Allow", "GET")])
            }
        default:
            return .text(404, "Not Found", "not found: try /metrics or /health\n")
        }
        if request.path == "/health" {
            let status = daemon.engines.status
            if status.serving && status.signatures > 0 {
                return .text(200, "OK", "ok: engine generation \(status.generation), \(status.signatures) signatures\n")
            }
            if let p = status.progress, !status.serving {
                return .text(503, "Service Unavailable", "\(p.stage): \(Int((p.fraction * 100).rounded(.down))) %\n")
            }
            return .text(503, "Service Unavailable", "no signatures loaded\n")
        }
        metrics.update(snapshot(of: daemon))
        return HTTPResponse(
            status: 200, reason: "OK", contentType: PrometheusInstruments.contentType, body: metrics.exposition())
    }

    static func snapshot(of daemon: MilterDaemon) -> MetricsSnapshot {
        var s = MetricsSnapshot()
        let st = daemon.stats
        s.messages = [
            .accepted: st.accepted.load(ordering: .relaxed), .rejected: st.rejected.load(ordering: .relaxed),
            .tempfailed: st.tempfailed.load(ordering: .relaxed), .discarded: st.discarded.load(ordering: .relaxed),
            .quarantined: st.quarantined.load(ordering: .relaxed), .tagged: st.tagged.load(ordering: .relaxed),
            .skipped: st.skipped.load(ordering: .relaxed),
        ]
        for cause in TempfailCause.allCases { s.tempfails[cause] = st.tempfails(cause) }
        s.scans = st.scanned.load(ordering: .relaxed)
        s.rescans = st.rescans.load(ordering: .relaxed)
        s.scanCrashes = st.scanCrashes.load(ordering: .relaxed)
        s.workerRestarts = st.workerRestarts.load(ordering: .relaxed)
        s.inFlight = st.inFlight.load(ordering: .relaxed)
        s.sessionsOpen = st.sessionsOpen.load(ordering: .relaxed)
        s.startedAt = st.startedAt
        let a = daemon.admission.snapshot
        s.slotsBusy = a.busy
        s.slots = a.slots
        s.waiting = a.waiting
        s.waitingLimit = a.maxWaiting
        s.bufferedBytes = a.buffered
        s.memoryBudgetBytes = a.budget
        s.spooledBytes = a.spooled
        s.spoolBudgetBytes = a.spoolBudget
        let e = daemon.engines.status
        s.engineGeneration = e.generation
        s.signatures = e.signatures
        s.engineLoadedAt = e.loadedAt
        s.lastReloadAt = e.lastAttemptAt ?? e.loadedAt
        s.lastReloadSucceeded = e.lastSucceeded
        s.reloadSeconds = e.buildSeconds
        s.engineBytes = e.engineBytes ?? 0
        s.reloadPeakBytes = e.lastPeakBytes ?? 0
        s.reloadMode = e.lastMode
        s.threads = ProcessStatus.threads() ?? 0
        return s
    }
}

/// Fields of /proc/self/status.
enum ProcessStatus {
    /// The `Threads:` line.
    static func threads() -> Int? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return threads(inStatus: String(decoding: bytes, as: UTF8.self))
    }

    static func threads(inStatus text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst("Threads:".count).trimmed)
        }
        return nil
    }
}

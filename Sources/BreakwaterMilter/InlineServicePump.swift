import BreakwaterCore

/// A service that answers while the first engine loads (the control socket: `status` shows the load's
/// progress; the metrics endpoint: /health answers 503 "loading signatures: N %"), with no thread of its
/// own until the load is done: it opens its listening socket before the load (`openListener`), the loading
/// thread serves it now and then (`serveWaiting`), and `start` hands the same socket, and the clients
/// it holds, to the service's threads.
package protocol ServedWhileLoading: DaemonService {
    /// Opens the listening socket; nothing is served until `serveWaiting` or `start`.
    func openListener(_ daemon: MilterDaemon) throws
    /// Serves what is waiting on the socket without blocking: takes new clients, reads what they sent,
    /// answers whole requests with answers that fit the socket's buffer (a client that does not read
    /// loses its answer), and returns by `deadline` (a monotonic time) give or take one answer.
    func serveWaiting(_ daemon: MilterDaemon, until deadline: Double)
}

/// Serves the `ServedWhileLoading` services on the loading thread, from the load and compile progress
/// the engine host reports, while the first engine loads. (It was made so that the process that reads
/// the database has one thread: glibc takes each FILE's lock in getc/feof once a process has had a
/// second thread, and libclamav reads the database files one character at a time with them, a third
/// more CPU at start-up on a set of the official databases' size (docs/benchmarks.md). The engine host
/// now reads the database and is single-threaded on its own; the daemon keeps serving its sockets this
/// way until the engine serves.) At most every `interval` seconds of load time, for at most about
/// `budget`.
final class InlineServicePump: @unchecked Sendable {
    static let interval = 0.025
    static let budget = 0.01

    private let services: [ServedWhileLoading]
    private unowned let daemon: MilterDaemon
    /// The next time the services are served (monotonic); the progress callbacks come far more often.
    private let next = Locked<Double>(0)

    init(_ services: [ServedWhileLoading], daemon: MilterDaemon) {
        self.services = services
        self.daemon = daemon
    }

    /// Opens every service's socket (before the load; on an error, the caller stops them all).
    func openListeners() throws {
        for service in services { try service.openListener(daemon) }
    }

    /// Called on the loading thread as the load makes progress, with no lock held: serves the
    /// services when `interval` has passed since the last time.
    func tick() {
        guard !services.isEmpty else { return }
        let now = Now.monotonic()
        let due = next.withLock { next -> Bool in
            guard now >= next else { return false }
            next = now + InlineServicePump.interval
            return true
        }
        guard due else { return }
        let deadline = now + InlineServicePump.budget
        for service in services { service.serveWaiting(daemon, until: deadline) }
    }

    /// Hands the sockets to the services' threads (after the load).
    func start() throws {
        for service in services { try service.start(daemon) }
    }
}

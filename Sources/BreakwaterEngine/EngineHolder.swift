import BreakwaterCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The engine in service. A scan takes a reference (a few nanoseconds under a lock, never held across
/// the scan); a reload builds a new engine off to the side and swaps it in. The old engine is freed
/// when its last in-flight scan drops its reference.
public final class EngineHolder: Sendable {
    public struct ReloadStatus: Sendable {
        public var generation: Int
        public var signatures: Int
        public var directories: [String]
        public var loadedAt: Double
        public var buildSeconds: Double
        public var lastAttemptAt: Double?
        public var lastError: String?
        public var lastSucceeded: Bool
        public var reloading: Bool
    }

    private let state: Locked<(engine: ClamEngine, status: ReloadStatus)>
    /// Reload attempts: one running, at most one more pending; `started`/`finished` count attempts so a
    /// caller can wait for the first attempt that begins after its request.
    private struct Queue { var running = false, pending = false, inAttempt = false, started = 0, finished = 0 }
    private let reload = Locked(Queue())
    private let attemptHooks = Locked<[@Sendable () -> Void]>([])
    private let build: @Sendable () throws -> ClamEngine
    private let onEvent: @Sendable (String, Bool) -> Void

    /// `build` makes a new engine from the current configuration; `onEvent(message, isError)` logs.
    public init(
        initial: ClamEngine, build: @escaping @Sendable () throws -> ClamEngine,
        onEvent: @escaping @Sendable (String, Bool) -> Void
    ) {
        let status = ReloadStatus(
            generation: 1, signatures: initial.signatureCount, directories: initial.directories,
            loadedAt: initial.loadedAt, buildSeconds: initial.buildSeconds,
            lastAttemptAt: nil, lastError: nil, lastSucceeded: true, reloading: false)
        state = Locked((initial, status))
        self.build = build
        self.onEvent = onEvent
    }

    /// The engine to scan with now.
    public var current: ClamEngine { state.withLock { $0.engine } }

    public var status: ReloadStatus {
        var s = state.withLock { $0.status }
        s.reloading = reload.withLock { $0.running }
        return s
    }

    /// Starts a reload in the background. Reloads never overlap: a trigger during a reload schedules
    /// exactly one more after it. Returns the number of the attempt that will see the files as they are
    /// now (the first to start after this call), for `waitForAttempt`.
    @discardableResult
    public func triggerReload() -> Int {
        let (start, ticket) = reload.withLock { r -> (Bool, Int) in
            // An attempt that has not read the files yet covers this request; one under way does not.
            if r.running {
                if r.inAttempt { r.pending = true }
                return (false, r.started + 1)
            }
            r.running = true
            return (true, r.started + 1)
        }
        guard start else { return ticket }
        let thread = PosixThread.tryStart(stackSize: 8 << 20) { [self] in
            while true {
                reload.withLock {
                    $0.started += 1
                    $0.inAttempt = true
                }
                reloadOnce()
                let again = reload.withLock { r -> Bool in
                    r.finished = r.started
                    r.inAttempt = false
                    if r.pending {
                        r.pending = false
                        return true
                    }
                    r.running = false
                    return false
                }
                if !again { break }
            }
        }
        switch thread {
        case .success(let t):
            t.detach()  // nobody joins it: its stack is released when it ends
        case .failure(let e):
            // At the task limit: this attempt fails (the engine in service stays), the daemon goes on.
            let message = "cannot start the reload thread: \(e)"
            reload.withLock { r in
                r.started += 1
                r.finished = r.started
                r.running = false
                r.pending = false
            }
            let generation = state.withLock { s -> Int in
                s.status.lastAttemptAt = Now.wall()
                s.status.lastError = message
                s.status.lastSucceeded = false
                return s.status.generation
            }
            onEvent("reload failed, still serving engine generation \(generation): \(message)", true)
        }
        return ticket
    }

    /// Waits until reload attempt `ticket` (from `triggerReload`) has finished, up to `timeout` seconds
    /// or until `cancelled` says so; true when it has. `status` then tells how the latest attempt went.
    public func waitForAttempt(_ ticket: Int, timeout: Double, cancelled: () -> Bool = { false }) -> Bool {
        let deadline = Now.monotonic() + timeout
        while reload.withLock({ $0.finished }) < ticket {
            if Now.monotonic() >= deadline || cancelled() { return false }
            usleep(10_000)
        }
        return true
    }

    /// Runs `hook` at the start of every reload attempt, before the signature files are read (the
    /// directory watch records what the attempt is about to load).
    public func beforeEachAttempt(_ hook: @escaping @Sendable () -> Void) {
        attemptHooks.withLock { $0.append(hook) }
    }

    /// Builds and swaps synchronously; returns the error message when the new set does not load.
    @discardableResult
    public func reloadOnce() -> String? {
        let attempt = Now.wall()
        for hook in attemptHooks.withLock({ $0 }) { hook() }
        do {
            let engine = try build()
            let generation = state.withLock { s -> Int in
                s.engine = engine  // the old engine lives on in the scans still holding it
                s.status.generation += 1
                s.status.signatures = engine.signatureCount
                s.status.directories = engine.directories
                s.status.loadedAt = engine.loadedAt
                s.status.buildSeconds = engine.buildSeconds
                s.status.lastAttemptAt = attempt
                s.status.lastError = nil
                s.status.lastSucceeded = true
                return s.status.generation
            }
            onEvent(
                "engine generation \(generation) loaded: \(engine.signatureCount) signatures from \(engine.directories.joined(separator: ", ")) in \(Int(engine.buildSeconds * 1000)) ms",
                false)
            return nil
        } catch {
            let message = "\(error)"
            let generation = state.withLock { s -> Int in
                s.status.lastAttemptAt = attempt
                s.status.lastError = message
                s.status.lastSucceeded = false
                return s.status.generation
            }
            onEvent("reload failed, still serving engine generation \(generation): \(message)", true)
            return message
        }
    }
}

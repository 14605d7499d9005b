import BreakwaterCore
import Synchronization

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

    private let state: Mutex<(engine: ClamEngine, status: ReloadStatus)>
    private let reload = Mutex<(running: Bool, pending: Bool)>((false, false))
    private let build: @Sendable () throws -> ClamEngine
    private let onEvent: @Sendable (String, Bool) -> Void

    /// `build` makes a new engine from the current configuration; `onEvent(message, isError)` logs.
    public init(initial: ClamEngine, build: @escaping @Sendable () throws -> ClamEngine,
                onEvent: @escaping @Sendable (String, Bool) -> Void) {
        let status = ReloadStatus(generation: 1, signatures: initial.signatureCount, directories: initial.directories,
                                  loadedAt: initial.loadedAt, buildSeconds: initial.buildSeconds,
                                  lastAttemptAt: nil, lastError: nil, lastSucceeded: true, reloading: false)
        state = Mutex((initial, status))
        self.build = build
        self.onEvent = onEvent
    }

    /// The engine to scan with now.
    public var current: ClamEngine { state.withLock { $0.engine } }

    public var status: ReloadStatus { state.withLock { $0.status } }

    /// Starts a reload in the background. Reloads never overlap: a trigger during a reload schedules
    /// exactly one more after it.
    public func triggerReload() {
        let start = reload.withLock { r -> Bool in
            if r.running { r.pending = true; return false }
            r.running = true
            return true
        }
        guard start else { return }
        state.withLock { $0.status.reloading = true }
        Thread.start(stackSize: 8 << 20) { [self] in
            while true {
                reloadOnce()
                let again = reload.withLock { r -> Bool in
                    if r.pending { r.pending = false; return true }
                    r.running = false
                    return false
                }
                if !again { break }
            }
            state.withLock { $0.status.reloading = false }
        }
    }

    /// Builds and swaps synchronously; returns the error message when the new set does not load.
    @discardableResult
    public func reloadOnce() -> String? {
        let attempt = Clock.wall()
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
            onEvent("engine generation \(generation) loaded: \(engine.signatureCount) signatures from \(engine.directories.joined(separator: ", ")) in \(Int(engine.buildSeconds * 1000)) ms", false)
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

import BreakwaterCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The engine in service. A scan takes a reference (a few nanoseconds under a lock, never held across
/// the scan); a reload builds a new engine and swaps it in, in one of two ways (`reload-mode`):
///
/// - concurrent: the new engine is built beside the old one, which is freed when its last in-flight
///   scan drops its reference. Mail keeps flowing; memory peaks at two engines.
/// - blocking: new scans are held in the admission line (kept alive, 451 4.3.2 past max-wait), the
///   running ones finish, the old engine is freed, the new one built, scanning resumes. The peak
///   stays at one engine. A set that does not load is replaced by the set in service, built again
///   from its verified copy (`SignatureSnapshots`): the daemon is never left without an engine.
///
/// `auto` picks one before each reload from the memory limit, the process's RSS and the measured
/// size of the engine in service (`ReloadPlan`).
package final class EngineHolderOf<Engine: HeldEngine>: Sendable {
    package typealias ReloadStatus = EngineReloadStatus
    package typealias Daemon = EngineDaemonHooks

    /// Builds an engine from directories (of signature files), reporting progress.
    package typealias Build =
        @Sendable (_ directories: [String], _ progress: @escaping @Sendable (String, Double) -> Void)
        throws -> Engine

    private let state: Locked<(engine: Engine?, status: ReloadStatus)>
    /// Reload attempts: one running, at most one more pending; `started`/`finished` count attempts so a
    /// caller can wait for the first attempt that begins after its request.
    private struct Queue { var running = false, pending = false, inAttempt = false, started = 0, finished = 0 }
    private let reload = Locked(Queue())
    private let attemptHooks = Locked<[@Sendable () -> Void]>([])
    private let directories: @Sendable () -> [String]
    private let build: Build
    private let snapshots: SignatureSnapshots?
    private let mode: ReloadMode
    private let daemon = Locked<Daemon?>(nil)
    private let onEvent: @Sendable (String, Bool) -> Void
    /// True while the copy of the set in service is made (in the background, after each load).
    private let copying = Locked(false)
    private let lastProgressLog = Locked<(stage: String, step: Int, started: Double)>(("", -1, 0))

    /// `directories()` names the signature directories to load (read at each attempt), `build` makes an
    /// engine of them; `snapshots` keeps the verified copies (nil: engines are built from the
    /// directories themselves, and a blocking reload, having no copy to fall back on, runs concurrently);
    /// `onEvent(message, isError)` logs.
    package init(
        directories: @escaping @Sendable () -> [String], build: @escaping Build, snapshots: SignatureSnapshots?,
        mode: ReloadMode = .concurrent, onEvent: @escaping @Sendable (String, Bool) -> Void
    ) {
        let status = ReloadStatus(
            generation: 0, signatures: 0, directories: [], loadedAt: 0, buildSeconds: 0,
            lastAttemptAt: nil, lastError: nil, lastSucceeded: true, reloading: false, serving: false)
        state = Locked((nil, status))
        self.directories = directories
        self.build = build
        self.snapshots = snapshots
        self.mode = mode
        self.onEvent = onEvent
    }

    /// Removes the private copies of the signature set (the daemon stops).
    package func removeCopies() {
        waitForCopy()
        snapshots?.removeAll()
    }

    /// Returns once the copy of the set in service (made in the background after a load) is complete.
    package func waitForCopy() {
        while copying.withLock({ $0 }) { usleep(10_000) }
    }

    /// Connects the daemon's admission and budgets (before the first reload).
    package func attach(_ d: Daemon) { daemon.withLock { $0 = d } }

    /// The engine to scan with now; nil while none serves.
    package var current: Engine? { state.withLock { $0.engine } }

    package var status: ReloadStatus {
        var s = state.withLock { $0.status }
        s.reloading = reload.withLock { $0.running }
        return s
    }

    /// Builds the first engine (generation 1), synchronously, calling `whileLoading` (with no lock held)
    /// each time the build reports progress. Reload requests meanwhile wait for it and run once after it.
    package func loadInitial(whileLoading: (@Sendable () -> Void)? = nil) throws(EngineError) {
        reload.withLock {
            $0.running = true
            $0.inAttempt = true
        }
        var loaded = false
        defer {
            let again = reload.withLock { r -> Bool in
                r.inAttempt = false
                r.running = false
                defer { r.pending = false }
                return r.pending
            }
            if again && loaded { triggerReload() }
        }
        let dirs = directories()
        let files = SignatureDirectoryState.capture(dirs)
        let before = rss
        let engine = try buildEngine(dirs, whileLoading: whileLoading)
        let size = engine.builtBytes ?? measured(before: before)
        state.withLock { s in
            s.engine = engine
            s.status.generation = 1
            s.status.signatures = engine.signatureCount
            s.status.directories = dirs
            s.status.loadedAt = engine.loadedAt
            s.status.buildSeconds = engine.buildSeconds
            s.status.engineBytes = size
            s.status.progress = nil
            s.status.serving = true
        }
        loaded = true
        keepCopyInBackground(dirs, as: files)
    }

    /// `keepCopy` on a thread of its own (the copy of a large set takes seconds: the daemon serves and
    /// a reload's caller is answered meanwhile); the next reload waits for it.
    private func keepCopyInBackground(_ dirs: [String], as files: SignatureDirectoryState) {
        guard snapshots != nil else { return }
        copying.withLock { $0 = true }
        let started = PosixThread.tryStart(stackSize: 256 << 10) { [self] in
            keepCopy(dirs, as: files)
            copying.withLock { $0 = false }
        }
        switch started {
        case .success(let t): t.detach()
        case .failure:
            keepCopy(dirs, as: files)
            copying.withLock { $0 = false }
        }
    }

    /// Copies the set just loaded from `dirs` (which looked like `files` before the load) as the
    /// verified copy of the engine in service, unless a file changed meanwhile (the copy might then
    /// not be what loaded: none is kept until the next load).
    private func keepCopy(_ dirs: [String], as files: SignatureDirectoryState) {
        guard let snapshots else { return }
        let set: SignatureSnapshots.Set
        do { set = try snapshots.stage(dirs, sources: files) } catch {
            snapshots.dropCurrent()
            onEvent(
                "cannot keep a copy of the signature set in \(snapshots.root) (\(error)): until a later reload keeps one, reloads run concurrently",
                true)
            return
        }
        if SignatureDirectoryState.capture(dirs) != files {
            snapshots.discard(set)
            snapshots.dropCurrent()
            onEvent(
                "signature files changed while they were loaded: no verified copy of the set in service until the next reload (which runs concurrently)",
                true)
            return
        }
        snapshots.promote(set)
    }

    /// Starts a reload in the background. Reloads never overlap: a trigger during a reload schedules
    /// exactly one more after it. Returns the number of the attempt that will see the files as they are
    /// now (the first to start after this call), for `waitForAttempt`.
    @discardableResult
    package func triggerReload() -> Int {
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
    package func waitForAttempt(_ ticket: Int, timeout: Double, cancelled: () -> Bool = { false }) -> Bool {
        let deadline = Now.monotonic() + timeout
        while reload.withLock({ $0.finished }) < ticket {
            if Now.monotonic() >= deadline || cancelled() { return false }
            usleep(10_000)
        }
        return true
    }

    /// Runs `hook` at the start of every reload attempt, before the signature files are read (the
    /// directory watch records what the attempt is about to load).
    package func beforeEachAttempt(_ hook: @escaping @Sendable () -> Void) {
        attemptHooks.withLock { $0.append(hook) }
    }

    /// Builds and swaps synchronously; returns the error message when the new set does not load.
    @discardableResult
    package func reloadOnce() -> String? {
        waitForCopy()
        let attempt = Now.wall()
        for hook in attemptHooks.withLock({ $0 }) { hook() }
        if let m = daemon.withLock({ $0?.memory }) { m.resetPeak() } else { ProcessMemory.resetPeak() }
        let dirs = directories()
        let files = SignatureDirectoryState.capture(dirs)
        let (engineBytes, serving) = state.withLock { ($0.status.engineBytes, $0.status.serving) }
        let d = daemon.withLock { $0 }
        var plan = ReloadPlan.decide(
            mode: mode, limit: mode == .auto ? ProcessMemory.limit() : nil, rss: rss,
            engineBytes: engineBytes, headroom: d?.headroom() ?? 0)
        if !plan.concurrent && (d == nil || snapshots?.current == nil) && serving {
            plan = ReloadPlan(
                concurrent: true,
                reason: plan.reason + "; but no verified copy of the set in service to fall back on: concurrent")
        }
        let modeName = plan.concurrent ? "concurrent" : "blocking"
        onEvent("reloading signatures (\(modeName)): \(plan.reason)", false)
        state.withLock {
            $0.status.lastMode = modeName
            $0.status.lastModeReason = plan.reason
        }

        if plan.concurrent {
            let before = rss
            do {
                let engine = try buildEngine(dirs)
                let message = installed(
                    engine, dirs, size: engine.builtBytes ?? measured(before: before), attempt: attempt, mode: modeName)
                keepCopyInBackground(dirs, as: files)
                return message
            } catch {
                return failed(attempt, error.message, mode: modeName)
            }
        }

        // Blocking: no scan runs from here until `resumeScans`.
        d?.pauseScans()
        let paused = Now.monotonic()
        do {
            // The old engine goes first: nothing else holds it while scans are paused (a scan takes
            // the engine once a scanner runs it).
            let old = state.withLock { s -> Engine? in
                defer { s.engine = nil }
                return s.engine
            }
            withExtendedLifetime(old) {}
        }
        d?.releaseFreedMemory()
        let before = rss
        let outcome: String?
        var loaded = false
        do {
            let engine = try buildEngine(dirs)
            outcome = installed(
                engine, dirs, size: engine.builtBytes ?? measured(before: before), attempt: attempt, mode: modeName)
            loaded = true
        } catch {
            restoreFromCopy()
            outcome = failed(attempt, error.message, mode: modeName)
        }
        d?.resumeScans()
        onEvent("scanning resumed after \(Int((Now.monotonic() - paused) * 1000)) ms paused", false)
        if loaded { keepCopyInBackground(dirs, as: files) }
        return outcome
    }

    /// After a blocking reload's set failed: builds the set in service again from its verified copy.
    private func restoreFromCopy() {
        guard let copy = snapshots?.current else {
            state.withLock {
                $0.status.serving = false
                $0.status.progress = nil
            }
            onEvent(
                "no verified copy of the previous signature set: no engine serves; mail is answered 451 4.3.2", true)
            return
        }
        do {
            let engine = try buildEngine(copy.directories)
            state.withLock { s in
                s.engine = engine
                s.status.serving = true
                s.status.progress = nil
            }
            onEvent(
                "engine generation \(status.generation) built again from its verified copy (\(copy.root)): \(engine.signatureCount) signatures in \(Int(engine.buildSeconds * 1000)) ms",
                false)
        } catch {
            state.withLock {
                $0.status.serving = false
                $0.status.signatures = 0
                $0.status.progress = nil
            }
            onEvent(
                "the verified copy of the previous signature set does not load either (\(SignatureSnapshots.unmap(error.message, copy))): no engine serves; mail is answered 451 4.3.2 until a reload succeeds",
                true)
        }
    }

    private func installed(_ engine: Engine, _ dirs: [String], size: UInt64?, attempt: Double, mode: String)
        -> String?
    {
        let peak = peakNow
        let generation = state.withLock { s -> Int in
            s.engine = engine  // the old engine (concurrent) lives on in the scans still holding it
            s.status.generation += 1
            s.status.signatures = engine.signatureCount
            s.status.directories = dirs
            s.status.loadedAt = engine.loadedAt
            s.status.buildSeconds = engine.buildSeconds
            s.status.lastAttemptAt = attempt
            s.status.lastError = nil
            s.status.lastSucceeded = true
            s.status.engineBytes = size ?? s.status.engineBytes
            s.status.lastPeakBytes = peak
            s.status.progress = nil
            s.status.serving = true
            return s.status.generation
        }
        let f = { (b: UInt64?) in b.map(ByteSize.format) ?? "?" }
        onEvent(
            "engine generation \(generation) loaded: \(engine.signatureCount) signatures from \(dirs.joined(separator: ", ")) in \(Int(engine.buildSeconds * 1000)) ms (\(mode) reload; engine \(f(size)), peak RSS \(f(peak)))",
            false)
        return nil
    }

    private func failed(_ attempt: Double, _ message: String, mode: String?) -> String {
        let peak = peakNow
        let generation = state.withLock { s -> Int in
            s.status.lastAttemptAt = attempt
            s.status.lastError = message
            s.status.lastSucceeded = false
            s.status.progress = nil
            if mode != nil { s.status.lastPeakBytes = peak }
            return s.status.generation
        }
        onEvent("reload failed, still serving engine generation \(generation): \(message)", true)
        return message
    }

    /// The RSS of the service (this process, or what `Daemon.memory` says).
    private var rss: UInt64? {
        if let m = daemon.withLock({ $0?.memory }) { return m.rss() }
        return ProcessMemory.rss
    }

    private var peakNow: UInt64? {
        if let m = daemon.withLock({ $0?.memory }) { return m.peak() }
        return ProcessMemory.peak
    }

    /// The RSS added since `before` (the size of the engine just built), when both are known.
    private func measured(before: UInt64?) -> UInt64? {
        guard let before, let after = rss else { return nil }
        return after > before ? after - before : 0
    }

    /// Builds from `dirs`, publishing the progress in `status` and logging it in steps of 25 % once a
    /// stage has run for 2 s (a large set); `whileLoading` runs after each report.
    private func buildEngine(_ dirs: [String], whileLoading: (@Sendable () -> Void)? = nil) throws(EngineError)
        -> Engine
    {
        lastProgressLog.withLock { $0 = ("", -1, Now.monotonic()) }
        do {
            return try build(dirs) { [self] stage, fraction in
                state.withLock { $0.status.progress = (stage, fraction) }
                let line = lastProgressLog.withLock { l -> String? in
                    let now = Now.monotonic()
                    if l.stage != stage { l = (stage, -1, now) }
                    let step = Int(fraction * 4)
                    guard step > l.step, now - l.started >= 2 || (step == 4 && l.step >= 0) else { return nil }
                    l.step = step
                    return "\(stage): \(Int((fraction * 100).rounded(.down))) %"
                }
                if let line { onEvent(line, false) }
                whileLoading?()
            }
        } catch let e as EngineError {
            throw e
        } catch {
            throw EngineError(message: "\(error)", file: nil)
        }
    }
}

/// What `status` and `/metrics` show of the engine in service and its reloads.
package struct EngineReloadStatus: Sendable {
    package var generation: Int
    package var signatures: Int
    package var directories: [String]
    package var loadedAt: Double
    package var buildSeconds: Double
    package var lastAttemptAt: Double?
    package var lastError: String?
    package var lastSucceeded: Bool
    package var reloading: Bool
    /// RSS the engine in service added when it was built (its measured size).
    package var engineBytes: UInt64?
    /// How the last reload made room: "concurrent" or "blocking" (nil before the first).
    package var lastMode: String?
    /// The figures behind that choice.
    package var lastModeReason: String?
    /// Peak RSS of the process during the last reload (VmHWM, reset when it started).
    package var lastPeakBytes: UInt64?
    /// While an engine is being built: the stage ("loading signatures", "compiling") and its
    /// fraction done.
    package var progress: (stage: String, fraction: Double)?
    /// False while no engine serves (before the first load; after a blocking reload whose set and
    /// verified copy both failed to load).
    package var serving: Bool
}

/// What a reload needs from the daemon: the admission line to pause for a blocking reload, and the
/// memory the daemon's budgets may still take (for `auto`).
package struct EngineDaemonHooks: Sendable {
    package var pauseScans: @Sendable () -> Void
    package var resumeScans: @Sendable () -> Void
    package var headroom: @Sendable () -> UInt64
    /// Hands the memory malloc keeps free back to the kernel (after the old engine is freed).
    package var releaseFreedMemory: @Sendable () -> Void
    /// The service's memory when the engine lives in processes of its own (the engine host and its scan
    /// workers): its RSS, its peak since the last `resetPeak`, and the reset. nil: this process's.
    package var memory: ServiceMemory?
    package init(
        pauseScans: @escaping @Sendable () -> Void, resumeScans: @escaping @Sendable () -> Void,
        headroom: @escaping @Sendable () -> UInt64, releaseFreedMemory: @escaping @Sendable () -> Void = {},
        memory: ServiceMemory? = nil
    ) {
        self.memory = memory
        self.pauseScans = pauseScans
        self.resumeScans = resumeScans
        self.headroom = headroom
        self.releaseFreedMemory = releaseFreedMemory
    }
}

/// Memory of a service whose engine lives in other processes.
package struct ServiceMemory: Sendable {
    package var rss: @Sendable () -> UInt64?
    package var peak: @Sendable () -> UInt64?
    package var resetPeak: @Sendable () -> Void
    package init(
        rss: @escaping @Sendable () -> UInt64?, peak: @escaping @Sendable () -> UInt64?,
        resetPeak: @escaping @Sendable () -> Void
    ) {
        self.rss = rss
        self.peak = peak
        self.resetPeak = resetPeak
    }
}

/// What the holder needs of an engine: libclamav's own (`ClamEngine`), or the daemon's set of scan
/// workers forked from an engine built in the engine host.
package protocol HeldEngine: AnyObject, Sendable {
    var signatureCount: Int { get }
    var loadedAt: Double { get }
    var buildSeconds: Double { get }
    /// The engine's size, measured where it was built; nil: measured as the RSS this process added.
    var builtBytes: UInt64? { get }
}

extension ClamEngine: HeldEngine {
    package var builtBytes: UInt64? { nil }
}

/// The holder of the in-process engine (`breakwater scan`, tests).
package typealias EngineHolder = EngineHolderOf<ClamEngine>

import BreakwaterCore
import BreakwaterEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The `self-check` watch: every few seconds, a cheap look at the signature directories (a `readdir`
/// and a `stat` per database file); a change triggers a reload, as clamd's SelfCheck does.
///
/// Each reload attempt, whatever triggered it, records the state it is about to load. The watch
/// compares against that, so a reload made by `breakwater reload` or `signatures add` is not followed
/// by a second one, and a change that failed to load is not retried until the files change again.
package final class SignatureWatch: DaemonService {
    package let interval: Double
    private let baseline = Locked<SignatureDirectoryState?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let thread = Locked<PosixThread?>(nil)

    package init(interval: Double) {
        self.interval = interval
    }

    /// Adds the watch unless `self-check` is 0.
    @discardableResult
    package static func install(on daemon: MilterDaemon) -> SignatureWatch? {
        guard daemon.config.ops.selfCheck > 0 else { return nil }
        let w = SignatureWatch(interval: daemon.config.ops.selfCheck)
        daemon.services.append(w)
        return w
    }

    /// The directories watched: those loaded, the ops directory even while it is empty (the first
    /// `signatures add` then loads), and the official one when it is enabled.
    static func directories(_ config: Config) -> [String] {
        var dirs = config.signatureDirectories
        if !config.localSignatures.isEmpty && !dirs.contains(config.localSignatures) {
            dirs.append(config.localSignatures)
        }
        if config.ops.officialSignatures && !dirs.contains(OpsSettings.officialDirectory) {
            dirs.append(OpsSettings.officialDirectory)
        }
        return dirs
    }

    package func start(_ daemon: MilterDaemon) throws {
        let config = daemon.config
        baseline.withLock { $0 = SignatureDirectoryState.capture(SignatureWatch.directories(config)) }
        daemon.engines.beforeEachAttempt { [weak self] in
            self?.baseline.withLock { $0 = SignatureDirectoryState.capture(SignatureWatch.directories(config)) }
        }
        stopping.store(false, ordering: .relaxed)
        let t = PosixThread.start(stackSize: 256 << 10) { [self, weak daemon] in
            while !sleepUnlessStopped(interval) {
                guard let daemon else { return }
                check(daemon)
            }
        }
        thread.withLock { $0 = t }
    }

    package func stop() {
        stopping.store(true, ordering: .relaxed)
        let t = thread.withLock { t -> PosixThread? in
            defer { t = nil }
            return t
        }
        t?.join()
    }

    /// One look; triggers a reload when the files differ from what the last attempt loaded.
    func check(_ daemon: MilterDaemon) {
        let now = SignatureDirectoryState.capture(SignatureWatch.directories(daemon.config))
        let changes = baseline.withLock { b -> [String] in
            guard let b else { return [] }
            return now.changes(since: b)
        }
        guard !changes.isEmpty else { return }
        let shown =
            changes.prefix(5).joined(separator: ", ") + (changes.count > 5 ? " and \(changes.count - 5) more" : "")
        daemon.logger.notice("signature files changed (\(shown)): reloading")
        // Until the attempt starts and records the new state, the next look must not trigger again.
        baseline.withLock { $0 = now }
        daemon.engines.triggerReload()
    }

    /// Sleeps `seconds` in short steps; true when asked to stop meanwhile.
    private func sleepUnlessStopped(_ seconds: Double) -> Bool {
        let deadline = Now.monotonic() + seconds
        while Now.monotonic() < deadline {
            if stopping.load(ordering: .relaxed) { return true }
            usleep(UInt32(min(100_000, max(1_000, (deadline - Now.monotonic()) * 1e6))))
        }
        return stopping.load(ordering: .relaxed)
    }
}

import BreakwaterCore
import Synchronization

/// Wave detection around a `WaveStore`: allow lists and counters; `Policy` decides what a wave's
/// messages get. Pure (no I/O): the milter feeds it fingerprints and logs the events it returns.
package final class WaveDetector: Sendable {
    package let settings: WaveSettings
    package let store: any WaveStore
    private let stats: Stats
    /// Messages counted in the store, and messages too short to fingerprint.
    package let counted = Atomic<Int>(0)
    package let tooShort = Atomic<Int>(0)
    package let allowListed = Atomic<Int>(0)

    package init(settings: WaveSettings, store: (any WaveStore)? = nil, stats: Stats) {
        self.settings = settings
        self.store = store ?? InProcessWaveStore(settings: settings)
        self.stats = stats
    }

    /// Mail from allow-listed senders and client networks is never counted (and need not be
    /// fingerprinted at all).
    package func isAllowListed(sender: String, clientIP: [UInt8]?) -> Bool {
        settings.allowsSender(sender) || settings.allowsNetwork(clientIP)
    }

    /// Counts one scanned message. `fingerprint` is nil when the message had too little text.
    package func observe(
        _ fingerprint: WaveFingerprint?, sender: String, clientIP: [UInt8]?, clientAddress: String,
        now: Double
    ) -> WaveObservation {
        if isAllowListed(sender: sender, clientIP: clientIP) {
            allowListed.add(1, ordering: .relaxed)
            return WaveObservation()
        }
        guard let fingerprint else {
            tooShort.add(1, ordering: .relaxed)
            return WaveObservation()
        }
        counted.add(1, ordering: .relaxed)
        let origin = WaveOrigin(sender: sender, clientIP: clientIP, clientAddress: clientAddress)
        let o = store.observe(fingerprint, origin: origin, now: now)
        if o.started != nil { stats.wavesStarted.add(1, ordering: .relaxed) }
        if o.wave != nil { stats.waveMessages.add(1, ordering: .relaxed) }
        return o
    }

    /// Ends waves that went quiet; the caller logs the events.
    package func sweep(now: Double) -> [WaveEvent] { store.sweep(now: now) }

    package func waves(now: Double) -> [WaveInfo] { store.waves(now: now) }

    package var activeWaves: Int { store.usage().activeWaves }
}

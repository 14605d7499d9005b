import Synchronization

/// Counters since start, shared by every session; lock-free.
package final class Stats: Sendable {
    package let startedAt = Now.wall()
    package let scanned = Atomic<Int>(0)
    /// Messages scanned a second time for every match, after a first match whose action another name
    /// could make stricter (`Policy.settles`).
    package let rescans = Atomic<Int>(0)
    package let accepted = Atomic<Int>(0)
    package let rejected = Atomic<Int>(0)
    package let discarded = Atomic<Int>(0)
    package let quarantined = Atomic<Int>(0)
    package let tagged = Atomic<Int>(0)
    package let skipped = Atomic<Int>(0)
    package let tempfailed = Atomic<Int>(0)
    private let tempfailBusy = Atomic<Int>(0)
    private let tempfailMemory = Atomic<Int>(0)
    private let tempfailTimeout = Atomic<Int>(0)
    private let tempfailScanError = Atomic<Int>(0)
    private let tempfailSize = Atomic<Int>(0)
    private let tempfailSpoolBudget = Atomic<Int>(0)
    private let tempfailSessions = Atomic<Int>(0)
    private let tempfailPolicy = Atomic<Int>(0)
    private let tempfailWave = Atomic<Int>(0)
    /// RCPTs answered 452 4.5.3 past max-recipients (not messages: the message goes on without them).
    package let recipientsRefused = Atomic<Int>(0)
    package let sessionsOpen = Atomic<Int>(0)
    package let inFlight = Atomic<Int>(0)
    /// Wave detection: waves started, and messages that arrived while their fingerprint was a wave.
    package let wavesStarted = Atomic<Int>(0)
    package let waveMessages = Atomic<Int>(0)
    /// Scans that crashed the process: found at start-up in the records the previous process left.
    package let scanCrashes = Atomic<Int>(0)
    /// Scan workers that ended and were replaced (a crash, SIGKILL, or a worker found dead).
    package let workerRestarts = Atomic<Int>(0)

    package init() {}

    /// Counts one answered message (skipped ones too) by its action, and a tempfail by its cause.
    package func count(_ d: Decision) {
        switch d.action {
        case .accept:
            // A message let through by a skip rule counts as skipped, not also accepted.
            if d.verdict == .skipped {
                skipped.add(1, ordering: .relaxed)
            } else {
                accepted.add(1, ordering: .relaxed)
            }
        case .reject: rejected.add(1, ordering: .relaxed)
        case .discard: discarded.add(1, ordering: .relaxed)
        case .quarantine: quarantined.add(1, ordering: .relaxed)
        case .tag: tagged.add(1, ordering: .relaxed)
        case .tempfail:
            tempfailed.add(1, ordering: .relaxed)
            // Every tempfail the policy answers names its cause; one built without counts as policy.
            switch d.tempfailCause ?? .policy {
            case .busy: tempfailBusy.add(1, ordering: .relaxed)
            case .memoryBudget: tempfailMemory.add(1, ordering: .relaxed)
            case .timeout: tempfailTimeout.add(1, ordering: .relaxed)
            case .scanError: tempfailScanError.add(1, ordering: .relaxed)
            case .size: tempfailSize.add(1, ordering: .relaxed)
            case .spoolBudget: tempfailSpoolBudget.add(1, ordering: .relaxed)
            case .sessions: tempfailSessions.add(1, ordering: .relaxed)
            case .policy: tempfailPolicy.add(1, ordering: .relaxed)
            case .wave: tempfailWave.add(1, ordering: .relaxed)
            }
        }
    }

    package func tempfails(_ cause: TempfailCause) -> Int {
        switch cause {
        case .busy: tempfailBusy.load(ordering: .relaxed)
        case .memoryBudget: tempfailMemory.load(ordering: .relaxed)
        case .timeout: tempfailTimeout.load(ordering: .relaxed)
        case .scanError: tempfailScanError.load(ordering: .relaxed)
        case .size: tempfailSize.load(ordering: .relaxed)
        case .spoolBudget: tempfailSpoolBudget.load(ordering: .relaxed)
        case .sessions: tempfailSessions.load(ordering: .relaxed)
        case .policy: tempfailPolicy.load(ordering: .relaxed)
        case .wave: tempfailWave.load(ordering: .relaxed)
        }
    }
}

import Synchronization

/// Counts events and lets one log line through at most once a second, with the count since the last
/// line: a flood (sessions over max-sessions, a thread that cannot start) costs one line a second.
package final class OncePerSecond: Sendable {
    private let lastSecond = Atomic<Int>(Int.min)
    private let pending = Atomic<Int>(0)

    package init() {}

    /// Counts one event. Returns the events counted since the last non-nil answer (this one
    /// included) when a line may be logged now, else nil.
    package func tick(now: Double = Now.monotonic()) -> Int? {
        pending.add(1, ordering: .relaxed)
        let second = Int(now)
        let last = lastSecond.load(ordering: .relaxed)
        guard last != second,
            lastSecond.compareExchange(expected: last, desired: second, ordering: .relaxed).exchanged
        else { return nil }
        return pending.exchange(0, ordering: .relaxed)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex and condition variable (Synchronization.Mutex has no condition).
package final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    package init() {
        pthread_mutex_init(mutex, nil)
        ConditionLock.initMonotonic(cond)
    }

    /// Initialises a condition variable whose timed waits use the monotonic clock.
    package static func initMonotonic(_ c: UnsafeMutablePointer<pthread_cond_t>) {
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(c, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }

    /// Runs `body` with the lock held.
    package func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    package func unlock() { pthread_mutex_unlock(mutex) }
    package func signal() { pthread_cond_signal(cond) }
    package func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits until signalled or until the monotonic time `deadline` (seconds). Call with the lock held.
    package func wait(until deadline: Double) { wait(cond, until: deadline) }

    /// The same on another condition variable (initialised with `initMonotonic`), with this lock's mutex.
    package func wait(_ c: UnsafeMutablePointer<pthread_cond_t>, until deadline: Double) {
        var ts = timespec()
        ts.tv_sec = Int(deadline)
        ts.tv_nsec = Int((deadline - Double(ts.tv_sec)) * 1e9)
        pthread_cond_timedwait(c, mutex, &ts)
    }
}

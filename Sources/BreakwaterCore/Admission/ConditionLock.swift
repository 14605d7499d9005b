#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex and condition variable (Synchronization.Mutex has no condition).
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        ConditionLock.initMonotonic(cond)
    }

    /// Initialises a condition variable whose timed waits use the monotonic clock.
    static func initMonotonic(_ c: UnsafeMutablePointer<pthread_cond_t>) {
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

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func signal() { pthread_cond_signal(cond) }
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits until signalled or until the monotonic time `deadline` (seconds). Call with the lock held.
    func wait(until deadline: Double) { wait(cond, until: deadline) }

    /// The same on another condition variable (initialised with `initMonotonic`), with this lock's mutex.
    func wait(_ c: UnsafeMutablePointer<pthread_cond_t>, until deadline: Double) {
        var ts = timespec()
        ts.tv_sec = Int(deadline)
        ts.tv_nsec = Int((deadline - Double(ts.tv_sec)) * 1e9)
        pthread_cond_timedwait(c, mutex, &ts)
    }
}

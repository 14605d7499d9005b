#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex, for state shared by a few threads and held for a few instructions.
///
/// `Synchronization.Mutex` would do the same job, but ThreadSanitizer (Swift 6.3 on Linux) does not see
/// its futex as synchronisation and reports every access under it as a race (a counter incremented under
/// `Mutex.withLock` by four threads is reported). A pthread mutex is intercepted by the sanitizer, so code
/// that uses this one can actually be checked with `swift build --sanitize=thread`. Every lock in Breakwater
/// is one of these (the engine holder's swap, the control socket, the directory watch, the wave store,
/// the metrics), so a sanitizer run of the daemon reports only what is real.
package final class Locked<Value: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ value: Value) {
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

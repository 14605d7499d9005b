#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A pthread mutex and condition variable (Synchronization.Mutex has no condition).
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
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
    func wait(until deadline: Double) {
        var ts = timespec()
        ts.tv_sec = Int(deadline)
        ts.tv_nsec = Int((deadline - Double(ts.tv_sec)) * 1e9)
        pthread_cond_timedwait(cond, mutex, &ts)
    }
}

/// Bounded admission: a fixed number of scan slots, a bounded number of messages waiting for one (each
/// for a bounded time), and a byte budget for message data held in memory across all sessions.
/// Nothing here grows with load: past a bound the caller answers 4xx.
public final class Admission: @unchecked Sendable {
    public let slots: Int
    public let maxWaiting: Int
    public let maxWait: Double
    public let memoryBudget: UInt64

    private let lock = ConditionLock()
    private var busy = 0
    private var waiting = 0
    /// Slots released to waiting messages and not yet taken up by one (each still counted in `busy`).
    private var handoffs = 0
    private let buffered = Atomic<UInt64>(0)

    public init(slots: Int, maxWaiting: Int, maxWait: Double, memoryBudget: UInt64) {
        self.slots = max(1, slots)
        self.maxWaiting = max(0, maxWaiting)
        self.maxWait = maxWait
        self.memoryBudget = memoryBudget
    }

    public enum SlotResult: Sendable, Equatable {
        /// A slot is held: call `releaseSlot()` when the scan ends. `waited` is seconds spent waiting.
        case acquired(waited: Double)
        /// Every slot busy and the waiting line full.
        case busy
        /// Waited `maxWait` without getting a slot.
        case timedOut
    }

    /// Takes a scan slot, waiting for one if the line is not full. `keepAlive` is called about once a
    /// second while waiting (the milter sends `smfi_progress` so the MTA does not time out), without the
    /// lock held.
    ///
    /// A slot freed while messages wait is handed to one of them (`handoffs`), never taken by a newcomer:
    /// under a burst, newcomers queue behind the waiting messages instead of overtaking them, so waits
    /// stay close to the line's length times the scan time and no message waits out `maxWait` while
    /// later ones are scanned.
    public func acquireSlot(keepAlive: () -> Void = {}) -> SlotResult {
        let start = Clock.monotonic()
        lock.lock()
        if busy < slots && waiting == 0 {
            busy += 1
            lock.unlock()
            return .acquired(waited: 0)
        }
        if waiting >= maxWaiting {
            lock.unlock()
            return .busy
        }
        waiting += 1
        let deadline = start + maxWait
        var lastKeepAlive = start
        while true {
            if handoffs > 0 {
                handoffs -= 1  // the releasing scan's slot, still counted in `busy`, is now ours
                break
            }
            if busy < slots {
                busy += 1  // a slot that nobody handed over (the line was empty when it was freed)
                break
            }
            let now = Clock.monotonic()
            if now >= deadline {
                waiting -= 1
                lock.unlock()
                return .timedOut
            }
            if now - lastKeepAlive >= 1 {
                lastKeepAlive = now
                lock.unlock()
                keepAlive()
                lock.lock()
                continue
            }
            lock.wait(until: min(deadline, lastKeepAlive + 1))
        }
        waiting -= 1
        lock.unlock()
        return .acquired(waited: Clock.monotonic() - start)
    }

    public func releaseSlot() {
        lock.lock()
        if waiting > handoffs {
            handoffs += 1  // keep it counted in `busy`: a waiting message takes it over
            lock.unlock()
            lock.signal()
        } else {
            busy -= 1
            lock.unlock()
        }
    }

    /// True when a new message could not get a slot or a place in line right now: new transactions are
    /// then turned away at MAIL FROM, before DATA costs anything.
    public var isSaturated: Bool {
        lock.lock()
        defer { lock.unlock() }
        return busy >= slots && waiting >= maxWaiting
    }

    /// Reserves `bytes` of the memory budget. False when that would pass the budget: the caller then
    /// spools to disk or tempfails, never grows the heap.
    public func reserve(_ bytes: UInt64) -> Bool {
        var current = buffered.load(ordering: .relaxed)
        while true {
            let next = current &+ bytes
            if next > memoryBudget || next < current { return false }
            let (exchanged, original) = buffered.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    public func release(_ bytes: UInt64) {
        buffered.subtract(bytes, ordering: .relaxed)
    }

    public struct Snapshot: Sendable {
        public let busy: Int, slots: Int, waiting: Int, maxWaiting: Int
        public let buffered: UInt64, budget: UInt64
    }

    public var snapshot: Snapshot {
        lock.lock()
        let b = busy, w = waiting
        lock.unlock()
        return Snapshot(busy: b, slots: slots, waiting: w, maxWaiting: maxWaiting,
                        buffered: buffered.load(ordering: .relaxed), budget: memoryBudget)
    }
}

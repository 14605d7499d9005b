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

/// Bounded admission: a fixed number of scanner threads, a bounded line of messages waiting for one
/// (each for a bounded time), and a byte budget for message data held in memory across all sessions.
/// Nothing here grows with load: past a bound the caller answers 4xx.
///
/// Scans run on `slots` scanner threads of their own, never on the session's (libmilter's) thread: a
/// session hands its scan over and waits for it. A scanner that finishes takes the next message in
/// line at once, on the CPU it already runs on, so the scan slots stay busy under load. (Scanning on
/// the session's thread, a freed slot went to a waiting session's thread that first had to be woken
/// and scheduled: with 2 slots on 2 cores about a tenth of the CPU stayed idle, measured with the
/// mixed corpus over 8 direct sessions.) It also keeps libclamav's deep stack and its malloc caches
/// on `slots` threads instead of on every session thread. The line is first come, first served: a
/// newcomer never overtakes a waiting message.
public final class Admission: @unchecked Sendable {
    public let slots: Int
    public let maxWaiting: Int
    public let maxWait: Double
    public let memoryBudget: UInt64

    private let line: ScanLine
    private let buffered = Atomic<UInt64>(0)

    /// Each scanner thread's stack: what a thread gets by default (libclamav recurses into nested
    /// archives).
    static let scannerStackSize = 8 << 20

    public init(slots: Int, maxWaiting: Int, maxWait: Double, memoryBudget: UInt64) {
        self.slots = max(1, slots)
        self.maxWaiting = max(0, maxWaiting)
        self.maxWait = maxWait
        self.memoryBudget = memoryBudget
        line = ScanLine(scanners: self.slots, stackSize: Admission.scannerStackSize)
    }

    /// Lets the scanners finish the line, then ends them (the daemon's end with the process).
    deinit { line.stop() }

    public enum ScanOutcome: Sendable, Equatable {
        /// The scan ran; `waited` is the seconds it spent in line before a scanner took it.
        case scanned(waited: Double)
        /// Every scanner busy and the line full: nothing ran.
        case busy
        /// Waited `maxWait` in line without a scanner taking it: nothing ran.
        case timedOut
    }

    /// Runs `scan` on a scanner thread, waiting in line for one if the line is not full, and returns
    /// when it has run (or did not get to run). `keepAlive` is called about once a second while the
    /// message waits in line (the milter sends `smfi_progress` so the MTA does not time out), on the
    /// caller's thread, without the lock held.
    public func scan(_ scan: () -> Void, keepAlive: () -> Void = {}) -> ScanOutcome {
        withoutActuallyEscaping(scan) { scan in
            // `scan` is run by a scanner thread while this thread waits for it, or not at all: it does
            // not outlive this call.
            line.run(ScanLine.Job(scan), maxWaiting: maxWaiting, maxWait: maxWait, keepAlive: keepAlive)
        }
    }

    /// True when a new message could not get a scanner or a place in line right now: new transactions
    /// are then turned away at MAIL FROM, before DATA costs anything.
    public var isSaturated: Bool {
        let (running, waiting) = line.counts
        return running >= slots && waiting >= maxWaiting
    }

    /// Reserves `bytes` of the memory budget. False when that would pass the budget: the caller then
    /// spools to disk or tempfails, never grows the heap.
    public func reserve(_ bytes: UInt64) -> Bool {
        reserve(bytes, ceiling: memoryBudget)
    }

    /// Reserves `bytes` only if the budget taken stays at or under `ceiling` (at most the budget).
    public func reserve(_ bytes: UInt64, ceiling: UInt64) -> Bool {
        let limit = min(ceiling, memoryBudget)
        var current = buffered.load(ordering: .relaxed)
        while true {
            let next = current &+ bytes
            if next > limit || next < current { return false }
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
        let (b, w) = line.counts
        return Snapshot(busy: b, slots: slots, waiting: w, maxWaiting: maxWaiting,
                        buffered: buffered.load(ordering: .relaxed), budget: memoryBudget)
    }
}

/// The scanner threads and their first-come-first-served line (Admission's bounds are applied by the
/// caller of `run`). The threads start with the first scan.
final class ScanLine: @unchecked Sendable {
    /// One message's scan, from the moment it joins the line until its session has the outcome.
    final class Job {
        let work: () -> Void
        var started = false
        var startedAt = 0.0
        var done = false
        /// Signalled (under the line's lock) when the scan has run.
        let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        init(_ work: @escaping () -> Void) {
            self.work = work
            ConditionLock.initMonotonic(finished)
        }

        deinit {
            pthread_cond_destroy(finished)
            finished.deallocate()
        }
    }

    private let scanners: Int
    private let stackSize: Int
    private let lock = ConditionLock()
    /// Jobs not taken by a scanner yet, oldest first (at most maxWaiting + scanners).
    private var queue: [Job] = []
    private var running = 0
    private var stopping = false
    private var threads: [Thread] = []

    init(scanners: Int, stackSize: Int) {
        self.scanners = scanners
        self.stackSize = stackSize
    }

    /// (scans running, messages waiting for a scanner)
    var counts: (Int, Int) {
        lock.lock()
        defer { lock.unlock() }
        return (running, waitingLocked)
    }

    /// Jobs in line beyond those the free scanners are about to take. Call with the lock held.
    private var waitingLocked: Int { max(0, running + queue.count - scanners) }

    func run(_ job: Job, maxWaiting: Int, maxWait: Double, keepAlive: () -> Void) -> Admission.ScanOutcome {
        let start = Clock.monotonic()
        lock.lock()
        if stopping {
            lock.unlock()
            return .busy
        }
        if threads.isEmpty {
            for _ in 0..<scanners { threads.append(Thread.start(stackSize: stackSize) { [self] in scannerLoop() }) }
        }
        // A job a free scanner is about to take does not wait; past that, the line holds maxWaiting.
        if running + queue.count >= scanners + maxWaiting {
            lock.unlock()
            return .busy
        }
        queue.append(job)
        lock.signal()
        let deadline = start + maxWait
        var lastKeepAlive = start
        while !job.done {
            if job.started {
                lock.wait(job.finished, until: Clock.monotonic() + 3600)
                continue
            }
            let now = Clock.monotonic()
            if now >= deadline {
                if let i = queue.firstIndex(where: { $0 === job }) { queue.remove(at: i) }
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
            lock.wait(job.finished, until: min(deadline, lastKeepAlive + 1))
        }
        lock.unlock()
        return .scanned(waited: job.startedAt - start)
    }

    private func scannerLoop() {
        lock.lock()
        while true {
            if queue.isEmpty {
                if stopping { break }
                lock.wait(until: Clock.monotonic() + 3600)
                continue
            }
            let job = queue.removeFirst()
            job.started = true
            job.startedAt = Clock.monotonic()
            running += 1
            lock.unlock()
            job.work()
            lock.lock()
            running -= 1
            job.done = true
            pthread_cond_signal(job.finished)
        }
        lock.unlock()
    }

    /// Lets the scanners finish the line, then ends them.
    func stop() {
        lock.lock()
        stopping = true
        let all = threads
        threads = []
        lock.unlock()
        lock.broadcast()
        for t in all { t.join() }
    }
}

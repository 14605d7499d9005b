import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Bounded admission: a fixed number of scan slots, a bounded line of messages waiting for one (each
/// for a bounded time), and a byte budget for message data held in memory across all sessions.
/// Nothing here grows with load: past a bound the caller answers 4xx.
///
/// A session holds a slot (`hold`) while a scan worker, another process, scans its message: the
/// session's own thread waits for the worker, so no thread is started or handed the message here.
/// The line is first come, first served: a newcomer never overtakes a waiting message, and a slot
/// freed goes to the first in line.
package final class Admission: @unchecked Sendable {
    package let slots: Int
    package let maxWaiting: Int
    package let maxWait: Double
    package let memoryBudget: UInt64
    /// Bytes of message data that may sit in spool files at once (`spool-budget`).
    package let spoolBudget: UInt64

    private let line: ScanLine
    private let buffered = Atomic<UInt64>(0)
    private let spooled = Atomic<UInt64>(0)

    package init(slots: Int, maxWaiting: Int, maxWait: Double, memoryBudget: UInt64, spoolBudget: UInt64 = .max) {
        self.slots = max(1, slots)
        self.maxWaiting = max(0, maxWaiting)
        self.maxWait = maxWait
        self.memoryBudget = memoryBudget
        self.spoolBudget = spoolBudget
        line = ScanLine(slots: self.slots)
    }

    /// Turns away the messages still in line (the daemon's end with the process).
    deinit { line.stop() }

    /// What became of a message's turn for a scan slot.
    package enum SlotResult: Sendable, Equatable {
        /// The slot was held and the body ran; `waited` is the seconds it spent in line first.
        case scanned(waited: Double)
        /// Every slot busy and the line full: nothing ran.
        case busy
        /// Waited `maxWait` in line without getting a slot: nothing ran.
        case timedOut
    }

    /// Waits in line for a scan slot if the line is not full, then runs `body` on the caller's own
    /// thread, holding the slot until it returns; `body` gets the slot's index (0..<slots, no two bodies
    /// running at once hold the same). Returns when it has run (or did not get to run). `keepAlive` is
    /// called every half second while the message waits in line (the milter sends `smfi_progress` so
    /// the MTA does not time out), on the caller's thread, without the lock held; during the scan the
    /// caller keeps the MTA alive itself.
    ///
    /// `alone`: the body runs with no other in flight (a crash suspect: CrashSuspects). When it is
    /// first in line, no other message takes a slot until the scans running have ended and it has
    /// run; the messages behind it wait (within `maxWait`).
    package func hold(alone: Bool = false, _ body: (_ slot: Int) -> Void, keepAlive: () -> Void = {}) -> SlotResult {
        withoutActuallyEscaping(body) { body in
            line.run(
                ScanLine.Job(body, alone: alone), maxWaiting: maxWaiting, maxWait: maxWait, keepAlive: keepAlive)
        }
    }

    /// Gives no slot from now on (messages wait in line as for a busy slot, kept alive, up to
    /// max-wait) and returns once no scan is running: a blocking reload then has the engine to itself.
    package func pauseScans() { line.pause() }

    /// Gives slots again.
    package func resumeScans() { line.resume() }

    /// True when a new message could not get a slot or a place in line right now: new transactions
    /// are then turned away at MAIL FROM, before DATA costs anything.
    package var isSaturated: Bool {
        let (running, waiting) = line.counts
        return running >= slots && waiting >= maxWaiting
    }

    /// Reserves `bytes` of the memory budget. False when that would pass the budget: the caller then
    /// spools to disk or tempfails, never grows the heap.
    package func reserve(_ bytes: UInt64) -> Bool {
        reserve(bytes, ceiling: memoryBudget)
    }

    /// Reserves `bytes` only if the budget taken stays at or under `ceiling` (at most the budget).
    package func reserve(_ bytes: UInt64, ceiling: UInt64) -> Bool {
        Admission.reserve(buffered, bytes, limit: min(ceiling, memoryBudget))
    }

    package func release(_ bytes: UInt64) {
        buffered.subtract(bytes, ordering: .relaxed)
    }

    /// Reserves `bytes` of the spool budget before they are written to a spool file. False when that
    /// would pass the budget: the message is then answered 451 4.3.2 and the disk never fills.
    package func reserveSpool(_ bytes: UInt64) -> Bool {
        Admission.reserve(spooled, bytes, limit: spoolBudget)
    }

    package func releaseSpool(_ bytes: UInt64) {
        spooled.subtract(bytes, ordering: .relaxed)
    }

    private static func reserve(_ counter: borrowing Atomic<UInt64>, _ bytes: UInt64, limit: UInt64) -> Bool {
        var current = counter.load(ordering: .relaxed)
        while true {
            let next = current &+ bytes
            if next > limit || next < current { return false }
            let (exchanged, original) = counter.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    package struct Snapshot: Sendable {
        package let busy: Int, slots: Int, waiting: Int, maxWaiting: Int
        package let buffered: UInt64, budget: UInt64
        package var spooled: UInt64 = 0, spoolBudget: UInt64 = 0
    }

    package var snapshot: Snapshot {
        let (b, w) = line.counts
        return Snapshot(
            busy: b, slots: slots, waiting: w, maxWaiting: maxWaiting,
            buffered: buffered.load(ordering: .relaxed), budget: memoryBudget,
            spooled: spooled.load(ordering: .relaxed), spoolBudget: spoolBudget)
    }
}

/// The scan slots and their first-come-first-served line (Admission's bounds are applied by the
/// caller of `run`).
final class ScanLine: @unchecked Sendable {
    /// How often a session waiting for its scan calls its keep-alive: well within the shortest reply
    /// timeout an MTA is configured with (Sendmail's R= is counted in whole seconds).
    static let keepAliveInterval = 0.5

    /// One message's turn, from the moment it joins the line until its body has run.
    final class Job {
        /// Run by the caller once it holds a slot.
        let body: (Int) -> Void
        /// Runs with no other body in flight.
        let alone: Bool
        /// Signalled (under the line's lock) when it may be able to take a slot.
        let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        init(_ body: @escaping (Int) -> Void, alone: Bool = false) {
            self.body = body
            self.alone = alone
            ConditionLock.initMonotonic(wake)
        }

        deinit {
            pthread_cond_destroy(wake)
            wake.deallocate()
        }
    }

    private let slots: Int
    private let lock = ConditionLock()
    /// Jobs waiting for a slot, oldest first (at most maxWaiting + slots).
    private var queue: [Job] = []
    private var running = 0
    /// A job that must run alone is running: no other takes a slot.
    private var aloneRunning = false
    private var stopping = false
    /// No job takes a slot while set (`pause`).
    private var paused = false
    /// The slot indexes no job holds.
    private var freeSlots: [Int]

    init(slots: Int) {
        self.slots = slots
        freeSlots = Array((0..<slots).reversed())
    }

    /// (scans running, messages waiting for a slot)
    var counts: (Int, Int) {
        lock.lock()
        defer { lock.unlock() }
        return (running, waitingLocked)
    }

    /// Jobs in line beyond those about to take a free slot. Call with the lock held.
    private var waitingLocked: Int { max(0, running + queue.count - slots) }

    func run(_ job: Job, maxWaiting: Int, maxWait: Double, keepAlive: () -> Void) -> Admission.SlotResult {
        let start = Now.monotonic()
        lock.lock()
        // A job about to take a free slot does not wait; past that, the line holds maxWaiting.
        if stopping || running + queue.count >= slots + maxWaiting {
            lock.unlock()
            return .busy
        }
        queue.append(job)
        let deadline = start + maxWait
        var lastKeepAlive = start
        while !takable(job) {
            let now = Now.monotonic()
            if now >= deadline || stopping {
                if let i = queue.firstIndex(where: { $0 === job }) { queue.remove(at: i) }
                wakeHead()
                lock.unlock()
                return stopping ? .busy : .timedOut
            }
            if now - lastKeepAlive >= ScanLine.keepAliveInterval {
                lastKeepAlive = now
                lock.unlock()
                keepAlive()
                lock.lock()
                continue
            }
            lock.wait(job.wake, until: min(deadline, lastKeepAlive + ScanLine.keepAliveInterval))
        }
        queue.removeFirst()
        let startedAt = Now.monotonic()
        running += 1
        if job.alone { aloneRunning = true }
        let slot = freeSlots.removeLast()
        // The next in line may take a slot too.
        wakeHead()
        lock.unlock()
        job.body(slot)
        lock.lock()
        running -= 1
        freeSlots.append(slot)
        if job.alone { aloneRunning = false }
        wakeHead()
        lock.unlock()
        return .scanned(waited: startedAt - start)
    }

    /// Whether `job` may take a slot now: first in line, a slot free, not paused, and the rule of jobs
    /// that run alone kept. Call with the lock held.
    private func takable(_ job: Job) -> Bool {
        queue.first === job && !paused && !stopping && running < slots && !aloneRunning
            && !(job.alone && running > 0)
    }

    /// Wakes the first in line. Call with the lock held.
    private func wakeHead() {
        if let head = queue.first { pthread_cond_signal(head.wake) }
    }

    /// No job takes a slot from now on; returns when none is running.
    func pause() {
        lock.lock()
        paused = true
        while running > 0 {
            lock.unlock()
            usleep(2_000)
            lock.lock()
        }
        lock.unlock()
    }

    func resume() {
        lock.lock()
        paused = false
        wakeHead()
        lock.unlock()
    }

    /// Turns away the jobs in line, and any that come.
    func stop() {
        lock.lock()
        stopping = true
        for job in queue { pthread_cond_signal(job.wake) }
        lock.unlock()
    }
}

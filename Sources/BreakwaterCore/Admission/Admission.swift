import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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
///
/// `hold` is the same line without the scanner threads, for a scan that runs in another process (the
/// daemon's scan workers): the caller holds a slot and waits for the worker itself, which saves the
/// handoff to a scanner thread and back; the worker, not a thread here, has libclamav's stack.
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

    /// Each scanner thread's stack: what a thread gets by default (libclamav recurses into nested
    /// archives).
    static let scannerStackSize = 8 << 20

    package init(slots: Int, maxWaiting: Int, maxWait: Double, memoryBudget: UInt64, spoolBudget: UInt64 = .max) {
        self.slots = max(1, slots)
        self.maxWaiting = max(0, maxWaiting)
        self.maxWait = maxWait
        self.memoryBudget = memoryBudget
        self.spoolBudget = spoolBudget
        line = ScanLine(scanners: self.slots, stackSize: Admission.scannerStackSize)
    }

    /// Lets the scanners finish the line, then ends them (the daemon's end with the process).
    deinit { line.stop() }

    /// What became of a message's turn for a scan slot.
    package enum SlotResult: Sendable, Equatable {
        /// The scan ran; `waited` is the seconds it spent in line before a scanner took it.
        case scanned(waited: Double)
        /// Every scanner busy and the line full: nothing ran.
        case busy
        /// Waited `maxWait` in line without a scanner taking it: nothing ran.
        case timedOut
        /// No scanner thread could be started (the process is at its task limit): nothing ran.
        case noThread(String)
    }

    /// Runs `scan` on a scanner thread, waiting in line for one if the line is not full, and returns
    /// when it has run (or did not get to run). `keepAlive` is called every half second while the
    /// message waits in line or is scanned (the milter sends `smfi_progress` so the MTA does not time
    /// out), on the caller's thread, without the lock held.
    ///
    /// `alone`: the scan runs with no other scan in flight (a crash suspect: CrashSuspects). When it is
    /// first in line, no scanner takes another message until the scans running have ended and it has
    /// run; the messages behind it wait (within `maxWait`).
    package func scan(alone: Bool = false, _ scan: () -> Void, keepAlive: () -> Void = {}) -> SlotResult {
        withoutActuallyEscaping(scan) { scan in
            // `scan` is run by a scanner thread while this thread waits for it, or not at all: it does
            // not outlive this call.
            line.run(
                ScanLine.Job(scan, alone: alone), maxWaiting: maxWaiting, maxWait: maxWait, keepAlive: keepAlive)
        }
    }

    /// Waits in line for a scan slot as `scan` does (same line, same bounds, same keepalives), then
    /// runs `body` on the caller's own thread, holding the slot until it returns; `body` gets the
    /// slot's index (0..<slots, no two bodies running at once hold the same). For a scan that runs in
    /// another process (a scan worker): the caller talks to it itself, with no handoff to a scanner
    /// thread and back (two thread wake-ups a message fewer). A slot freed goes to the first in line.
    package func hold(alone: Bool = false, _ body: (_ slot: Int) -> Void, keepAlive: () -> Void = {}) -> SlotResult {
        withoutActuallyEscaping(body) { body in
            line.run(
                ScanLine.Job(inline: body, alone: alone), maxWaiting: maxWaiting, maxWait: maxWait,
                keepAlive: keepAlive)
        }
    }

    /// Stops handing messages to scanners (they wait in line as for a busy slot, kept alive, up to
    /// max-wait) and returns once no scan is running: a blocking reload then has the engine to itself.
    package func pauseScans() { line.pause() }

    /// Lets the scanners take the line again.
    package func resumeScans() { line.resume() }

    /// True when a new message could not get a scanner or a place in line right now: new transactions
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

/// The scanner threads and their first-come-first-served line (Admission's bounds are applied by the
/// caller of `run`). The threads start with the first scan.
final class ScanLine: @unchecked Sendable {
    /// How often a session waiting for its scan calls its keep-alive: well within the shortest reply
    /// timeout an MTA is configured with (Sendmail's R= is counted in whole seconds).
    static let keepAliveInterval = 0.5

    /// One message's scan, from the moment it joins the line until its session has the outcome.
    final class Job {
        let work: () -> Void
        /// Run by the caller itself once it holds a slot (`Admission.hold`), not by a scanner thread.
        let inline: ((Int) -> Void)?
        /// Runs with no other scan in flight.
        let alone: Bool
        var started = false
        var startedAt = 0.0
        var done = false
        /// Signalled (under the line's lock) when the scan has run.
        let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        init(_ work: @escaping () -> Void, alone: Bool = false) {
            self.work = work
            self.inline = nil
            self.alone = alone
            ConditionLock.initMonotonic(finished)
        }

        init(inline: @escaping (Int) -> Void, alone: Bool = false) {
            self.work = {}
            self.inline = inline
            self.alone = alone
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
    /// A scan that must run alone is running: no scanner takes another job.
    private var aloneRunning = false
    private var stopping = false
    /// Scanners take no job while set (`pause`).
    private var paused = false
    private var threads: [PosixThread] = []
    /// The slot indexes no inline job holds.
    private var freeSlots: [Int]
    /// When starting a scanner thread failed: not tried again before this (monotonic seconds).
    private var nextThreadAttempt = 0.0
    private var threadError = ""

    init(scanners: Int, stackSize: Int) {
        self.scanners = scanners
        self.stackSize = stackSize
        freeSlots = Array((0..<scanners).reversed())
    }

    /// (scans running, messages waiting for a scanner)
    var counts: (Int, Int) {
        lock.lock()
        defer { lock.unlock() }
        return (running, waitingLocked)
    }

    /// Jobs in line beyond those the free scanners are about to take. Call with the lock held.
    private var waitingLocked: Int { max(0, running + queue.count - scanners) }

    func run(_ job: Job, maxWaiting: Int, maxWait: Double, keepAlive: () -> Void) -> Admission.SlotResult {
        let start = Now.monotonic()
        lock.lock()
        if stopping {
            lock.unlock()
            return .busy
        }
        if job.inline != nil {
            return runInline(job, start: start, maxWaiting: maxWaiting, maxWait: maxWait, keepAlive)
        }
        if threads.count < scanners && start >= nextThreadAttempt {
            // Started with the first scan. A thread that cannot be started (EAGAIN at the task limit)
            // is tried again a second later, never more often; the scanners there are serve meanwhile.
            while threads.count < scanners {
                switch PosixThread.tryStart(stackSize: stackSize, { [self] in scannerLoop() }) {
                case .success(let t): threads.append(t)
                case .failure(let e):
                    threadError = "cannot start scanner thread \(threads.count + 1) of \(scanners): \(e)"
                    nextThreadAttempt = start + 1
                }
                if start < nextThreadAttempt { break }
            }
        }
        if threads.isEmpty {
            let why = threadError
            lock.unlock()
            return .noThread(why)
        }
        // A job a free scanner is about to take does not wait; past that, the line holds maxWaiting.
        if running + queue.count >= threads.count + maxWaiting {
            lock.unlock()
            return .busy
        }
        queue.append(job)
        lock.signal()
        let deadline = start + maxWait
        var lastKeepAlive = start
        while !job.done {
            let now = Now.monotonic()
            if !job.started && now >= deadline {
                if let i = queue.firstIndex(where: { $0 === job }) { queue.remove(at: i) }
                lock.unlock()
                return .timedOut
            }
            // In line and while scanned alike: a scan may take max-scan-time, longer than the MTA's
            // wait for one reply (Sendmail's R=, as short as 1 s in its own examples).
            if now - lastKeepAlive >= ScanLine.keepAliveInterval {
                lastKeepAlive = now
                lock.unlock()
                keepAlive()
                lock.lock()
                continue
            }
            let next = lastKeepAlive + ScanLine.keepAliveInterval
            lock.wait(job.finished, until: job.started ? next : min(deadline, next))
        }
        lock.unlock()
        return .scanned(waited: job.startedAt - start)
    }

    /// `run` for a job its caller runs (`Job.inline`); called with the lock held, returns with it free.
    private func runInline(
        _ job: Job, start: Double, maxWaiting: Int, maxWait: Double, _ keepAlive: () -> Void
    ) -> Admission.SlotResult {
        if running + queue.count >= scanners + maxWaiting {
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
            lock.wait(job.finished, until: min(deadline, lastKeepAlive + ScanLine.keepAliveInterval))
        }
        queue.removeFirst()
        job.started = true
        job.startedAt = Now.monotonic()
        running += 1
        if job.alone { aloneRunning = true }
        let slot = freeSlots.removeLast()
        // The next in line may take a slot too.
        wakeHead()
        lock.unlock()
        job.inline!(slot)
        lock.lock()
        running -= 1
        freeSlots.append(slot)
        if job.alone { aloneRunning = false }
        wakeHead()
        lock.unlock()
        return .scanned(waited: job.startedAt - start)
    }

    /// Whether `job`, an inline job, may take a slot now: first in line, a slot free, not paused, and
    /// the rule of scans that run alone kept. Call with the lock held.
    private func takable(_ job: Job) -> Bool {
        queue.first === job && !paused && !stopping && running < scanners && !aloneRunning
            && !(job.alone && running > 0)
    }

    /// Wakes the first in line: its own condition when its caller runs it, else the scanner threads.
    /// Call with the lock held.
    private func wakeHead() {
        guard let head = queue.first else { return }
        if head.inline != nil {
            pthread_cond_signal(head.finished)
        } else {
            lock.broadcast()
        }
    }

    private func scannerLoop() {
        ScanLine.setAlternateSignalStack()
        lock.lock()
        while true {
            if queue.isEmpty || (paused && !stopping) {
                if stopping { break }
                lock.wait(until: Now.monotonic() + 3600)
                continue
            }
            // A job that must run alone waits at the head of the line until the scans running end;
            // while it runs, nothing else starts.
            if aloneRunning || (queue[0].alone && running > 0) || queue[0].inline != nil {
                lock.wait(until: Now.monotonic() + 3600)
                continue
            }
            let job = queue.removeFirst()
            job.started = true
            job.startedAt = Now.monotonic()
            running += 1
            if job.alone { aloneRunning = true }
            lock.unlock()
            job.work()
            lock.lock()
            running -= 1
            job.done = true
            pthread_cond_signal(job.finished)
            if job.alone {
                aloneRunning = false
                lock.broadcast()
            } else if running == 0, let head = queue.first, head.alone {
                lock.broadcast()
            }
            if let head = queue.first, head.inline != nil { pthread_cond_signal(head.finished) }
        }
        lock.unlock()
    }

    /// A scanner thread's own signal stack (64 KB, kept for the thread's life): a crash by stack
    /// overflow (deep recursion in a parser) still runs the crash handler (CrashGuard), which needs a
    /// stack to mark the scan that crashed.
    static func setAlternateSignalStack() {
        let size = 64 << 10
        guard let mem = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            mem != MAP_FAILED
        else { return }
        var ss = stack_t(ss_sp: mem, ss_flags: 0, ss_size: size)
        if sigaltstack(&ss, nil) != 0 { munmap(mem, size) }
    }

    /// Scanners take no new job from now on; returns when none is running.
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
        lock.broadcast()
    }

    /// Lets the scanners finish the line, then ends them.
    func stop() {
        lock.lock()
        stopping = true
        for job in queue where job.inline != nil { pthread_cond_signal(job.finished) }
        let all = threads
        threads = []
        lock.unlock()
        lock.broadcast()
        for t in all { t.join() }
    }
}

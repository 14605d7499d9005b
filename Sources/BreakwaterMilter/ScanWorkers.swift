import BreakwaterCore
import BreakwaterEngine
import BreakwaterWaves
import CProcessTuning
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of the engine host (EngineHost): one request at a time over its socket.
final class EngineHostClient: @unchecked Sendable {
    let pid: pid_t
    private let channel: Int32
    private let requests = ConditionLock()
    /// The service's peak during the last build: the building engine process's peak plus what the
    /// other processes held when it was done.
    private let lastPeak = Atomic<UInt64>(0)
    /// Set once the host was reaped (it died, or the daemon stopped it).
    private let endStatus = Locked<Int32?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// The engine processes alive (built or building), for `memory`.
    private let live = Locked<[Int32: Weak<EngineProcessClient>]>([:])
    /// Called after each worker restart with the old pid, the new one (nil: none came) and the engine
    /// process's; set before the first build.
    var onRestart: (@Sendable (Int32, Int32?, Int32) -> Void)?
    /// Called when a scan finds the engine process of its set gone (its workers end with it); set
    /// before the first build.
    var onEngineLost: (@Sendable (Int32) -> Void)?

    init(pid: pid_t, channel: Int32) {
        self.pid = pid
        self.channel = channel
    }

    /// Builds an engine of `dirs` in a new engine process while the workers in service go on scanning,
    /// and takes `workers` scan workers forked from it. The set in service is retired when the last
    /// scan holding it drops it (a blocking reload drops it before it calls this).
    func build(
        _ dirs: [String], workers: Int, progress: @escaping @Sendable (String, Double) -> Void
    ) throws(EngineError) -> WorkerSet {
        let started: Result<(pid: Int32, socket: Int32), EngineError> = requests.withLock {
            var b = Wire("B")
            b.int(dirs.count)
            for d in dirs { b.string(d) }
            guard b.send(channel), var h = WireReader.receive(channel), h.type == "H", let pid = h.int() else {
                return .failure(hostGone)
            }
            guard pid > 0, h.fd >= 0 else {
                if h.fd >= 0 { close(h.fd) }
                return .failure(
                    EngineError(
                        message: "the engine host could not fork an engine process (its log line says why)", file: nil))
            }
            return .success((Int32(clamping: pid), h.fd))
        }
        let built = try started.get()
        let engine = EngineProcessClient(host: self, pid: built.pid, channel: built.socket)
        live.withLock { $0[engine.pid] = Weak(engine) }
        let others = memory(excluding: engine.pid) ?? 0
        let outcome = engine.build(workers: workers, progress: progress)
        lastPeak.store(engine.peak + others, ordering: .relaxed)
        return try outcome.get()
    }

    private var hostGone: EngineError {
        EngineError(
            message: "the engine host process is gone (\(WorkerDeath.describe(endStatus.withLock { $0 })))", file: nil)
    }

    /// Engine process `pid` is no longer used (its socket is closed: it ends its workers and itself):
    /// the host reaps it before it takes the next request. No reply.
    func retire(_ pid: Int32) {
        live.withLock { $0[pid] = nil }
        requests.withLock {
            var k = Wire("K")
            k.int(Int(pid))
            _ = k.send(channel)
        }
    }

    /// The host's RSS plus that of every engine process and its workers' private memory (what they do
    /// not share with their engine process), from /proc.
    func memory() -> UInt64? { memory(excluding: nil) }

    private func memory(excluding: Int32?) -> UInt64? {
        guard var total = EngineHostClient.rss(pid) else { return nil }
        let engines = live.withLock { $0.values.compactMap(\.value) }
        for e in engines where e.pid != excluding { total += e.memory() }
        return total
    }

    static func rss(_ pid: Int32) -> UInt64? {
        ProcessMemory.read("/proc/\(pid)/status").flatMap { ProcessMemory.kilobytes("VmRSS", in: $0) }
    }

    static func privateMemory(_ pid: Int32) -> UInt64 {
        guard let text = ProcessMemory.read("/proc/\(pid)/smaps_rollup") else { return 0 }
        return (ProcessMemory.kilobytes("Private_Clean", in: text) ?? 0)
            + (ProcessMemory.kilobytes("Private_Dirty", in: text) ?? 0)
    }

    var peak: UInt64 { lastPeak.load(ordering: .relaxed) }

    /// Reaps the host if it ended (SIGCHLD); true when it did and the daemon did not stop it.
    func reapIfEnded() -> Bool {
        var st: Int32 = 0
        guard waitpid(pid, &st, WNOHANG) == pid else { return false }
        endStatus.withLock { $0 = st }
        return !stopping.load(ordering: .relaxed)
    }

    var ended: String? { endStatus.withLock { $0 }.map { WorkerDeath.describe($0) } }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Stops the host (and with it the engine processes and their workers) and reaps it.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(channel, Int32(SHUT_RDWR))
        for _ in 0..<500 {
            var st: Int32 = 0
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        var st: Int32 = 0
        _ = waitpid(pid, &st, 0)
    }
}

/// A weak reference, for a table that must not keep its values alive.
struct Weak<T: AnyObject & Sendable>: Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}

/// The daemon's side of one engine process (EngineProcess): one request at a time over its socket.
/// Retired (its socket closed, the host asked to reap it) when the last holder lets it go.
final class EngineProcessClient: @unchecked Sendable {
    let host: EngineHostClient
    let pid: Int32
    private let channel: Int32
    private let requests = ConditionLock()
    /// Its peak RSS during the build (bytes), once built.
    private(set) var peak: UInt64 = 0
    /// Its workers' pids, for `memory`.
    private let workerPids = Locked<Set<Int32>>([])
    /// Set when its socket failed: the process is gone.
    let gone = Atomic<Bool>(false)

    init(host: EngineHostClient, pid: Int32, channel: Int32) {
        self.host = host
        self.pid = pid
        self.channel = channel
    }

    deinit {
        close(channel)
        host.retire(pid)
    }

    /// Waits for the build's outcome (passing its progress on); once built, takes `workers` workers.
    fileprivate func build(workers: Int, progress: @escaping @Sendable (String, Double) -> Void) -> Result<
        WorkerSet, EngineError
    > {
        requests.withLock {
            while true {
                guard var m = WireReader.receive(channel) else { return .failure(endedDuringBuild()) }
                if m.fd >= 0 { close(m.fd) }
                switch m.type {
                case "P":
                    if let stage = m.string(), let f = m.double() { progress(stage, f) }
                case "E":
                    let message = m.string() ?? "the engine did not load"
                    let file = m.optional() ?? nil
                    peak = m.u64() ?? 0
                    return .failure(EngineError(message: message, file: file))
                case "O":
                    guard let sigs = m.int(), let loadedAt = m.double(), let secs = m.double(),
                        let bytes = m.u64(), let peak = m.u64()
                    else { return .failure(endedDuringBuild()) }
                    self.peak = peak
                    var a = Wire("A")
                    a.int(workers)
                    guard a.send(channel) else { return .failure(endedDuringBuild()) }
                    var taken: [ScanWorkerHandle] = []
                    for _ in 0..<workers {
                        guard var w = WireReader.receive(channel) else {
                            for t in taken { close(t.socket) }
                            return .failure(endedDuringBuild())
                        }
                        if w.type == "W", let pid = w.int(), pid > 0, w.fd >= 0 {
                            taken.append(ScanWorkerHandle(socket: w.fd, pid: Int32(pid)))
                        } else if w.fd >= 0 {
                            close(w.fd)
                        }
                    }
                    workerPids.withLock { $0 = Set(taken.map(\.pid)) }
                    return .success(
                        WorkerSet(
                            engine: self, signatureCount: sigs, loadedAt: loadedAt, buildSeconds: secs,
                            builtBytes: bytes, workers: taken))
                default:
                    continue
                }
            }
        }
    }

    /// Marks the process gone, and says so.
    private func endedDuringBuild() -> EngineError {
        gone.store(true, ordering: .relaxed)
        return EngineError(message: "the engine process \(pid) ended during the build", file: nil)
    }

    /// Asks how worker `pid` ended and for a replacement: (wait status or nil when the engine process
    /// did not say, the new worker or nil).
    func replace(pid: Int32) -> (status: Int32?, worker: ScanWorkerHandle?) {
        let outcome: (Int32?, ScanWorkerHandle?) = requests.withLock {
            var r = Wire("R")
            r.int(Int(pid))
            guard r.send(channel), var x = WireReader.receive(channel), x.type == "X", let st = x.int() else {
                gone.store(true, ordering: .relaxed)
                return (nil, nil)
            }
            let status: Int32? = st >= 0 ? Int32(clamping: st) : nil
            guard var w = WireReader.receive(channel) else { return (status, nil) }
            if w.type == "W", let p = w.int(), p > 0, w.fd >= 0 {
                return (status, ScanWorkerHandle(socket: w.fd, pid: Int32(p)))
            }
            if w.fd >= 0 { close(w.fd) }
            return (status, nil)
        }
        workerPids.withLock {
            $0.remove(pid)
            if let fresh = outcome.1 { $0.insert(fresh.pid) }
        }
        return outcome
    }

    /// Its RSS plus its workers' private memory, kB.
    func memory() -> UInt64 {
        (EngineHostClient.rss(pid) ?? 0)
            + workerPids.withLock { $0 }.reduce(0) { $0 + EngineHostClient.privateMemory($1) }
    }
}

/// One scan worker: its socket and process id.
struct ScanWorkerHandle: Sendable {
    let socket: Int32
    let pid: Int32

    /// Microseconds a receive on the socket waits before the waiting session sends the MTA a keepalive
    /// (as for a message waiting in line: ScanLine.keepAliveInterval).
    static let keepAliveMicroseconds = 500_000

    /// Takes the daemon's side of a worker's socket: a receive on it times out after
    /// `keepAliveMicroseconds` (SO_RCVTIMEO, set once here: no poll before each receive).
    init(socket: Int32, pid: Int32) {
        self.socket = socket
        self.pid = pid
        var tv = timeval(tv_sec: 0, tv_usec: ScanWorkerHandle.keepAliveMicroseconds)
        _ = setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// What a scan handed to a worker came to.
enum WorkerScan {
    case scanned(ScanReply)
    /// The worker died during the scan: of this message. The wait status, when the host told it.
    case died(status: Int32?, pid: Int32)
    /// No scan ran (no worker left, or the message could not be sent): why.
    case failed(String)
}

/// The scan workers forked from one engine generation: the daemon's "engine". Retired (its engine
/// process and workers ended) when the last scan holding it drops it after a reload.
package final class WorkerSet: HeldEngine, @unchecked Sendable {
    let engine: EngineProcessClient
    package let signatureCount: Int
    package let loadedAt: Double
    package let buildSeconds: Double
    package let builtBytes: UInt64?
    private let lock = ConditionLock()
    private var idle: [ScanWorkerHandle]
    /// Workers of this set, idle or busy (a dead one is counted until its replacement came or failed).
    private var total: Int

    init(
        engine: EngineProcessClient, signatureCount: Int, loadedAt: Double,
        buildSeconds: Double, builtBytes: UInt64?, workers: [ScanWorkerHandle]
    ) {
        self.engine = engine
        self.signatureCount = signatureCount
        self.loadedAt = loadedAt
        self.buildSeconds = buildSeconds
        self.builtBytes = builtBytes
        self.idle = workers
        self.total = workers.count
    }

    deinit {
        for w in idle { close(w.socket) }
    }

    /// The workers of this set.
    var count: Int { lock.withLock { total } }

    /// An idle worker, waiting at most 30 s for one (a dead worker's replacement on the way), calling
    /// `keepAlive` every `ScanWorkerHandle.keepAliveMicroseconds` meanwhile; nil when none came.
    private func take(keepAlive: () -> Void) -> ScanWorkerHandle? {
        let deadline = Now.monotonic() + 30
        let interval = Double(ScanWorkerHandle.keepAliveMicroseconds) / 1_000_000
        while true {
            let got: ScanWorkerHandle?? = lock.withLock {
                if idle.isEmpty {
                    if total == 0 || Now.monotonic() >= deadline { return .some(nil) }
                    lock.wait(until: min(deadline, Now.monotonic() + interval))
                }
                // In turn (first in, first out): a worker that died while idle is found at the next
                // scans, not left in the pool until a burst needs it.
                return idle.isEmpty ? .none : .some(idle.removeFirst())
            }
            if let got { return got }
            keepAlive()
        }
    }

    private func put(_ w: ScanWorkerHandle) {
        lock.withLock {
            idle.append(w)
            lock.broadcast()
        }
    }

    /// Hands the message (`fd`, its first `size` bytes) to a worker and waits for the result, calling
    /// `keepAlive` every `ScanWorkerHandle.keepAliveMicroseconds` of a long scan. No lock is
    /// held meanwhile.
    func scan(fd: Int32, size: Int, allMatches: Bool, inspect: Bool, keepAlive: () -> Void = {}) -> WorkerScan {
        var w = Wire("S")
        w.u64((allMatches ? 1 : 0) | (inspect ? 2 : 0))
        w.int(size)
        // A worker found dead before it took the message (killed while idle) did not die of it: the
        // message goes to its replacement.
        for _ in 0..<2 {
            guard let worker = take(keepAlive: keepAlive) else {
                return .failed("no scan worker is left (the engine process is gone?)")
            }
            guard w.send(worker.socket, passing: fd) else {
                _ = restart(worker)
                continue
            }
            guard var m = WireReader.receive(worker.socket, onTimeout: keepAlive) else {
                let status = restart(worker)
                return .died(status: status, pid: worker.pid)
            }
            if m.fd >= 0 { close(m.fd) }
            guard let reply = ScanReply.decode(&m) else {
                _ = restart(worker)
                return .failed("the scan worker's reply is malformed")
            }
            put(worker)
            return .scanned(reply)
        }
        return .failed("the scan workers die before they take the message")
    }

    /// Ends a worker that died or misbehaved, and puts a replacement from the host in its place.
    /// Returns how it ended (nil: unknown).
    private func restart(_ worker: ScanWorkerHandle) -> Int32? {
        close(worker.socket)
        let (status, fresh) = engine.replace(pid: worker.pid)
        engine.host.onRestart?(worker.pid, fresh?.pid, engine.pid)
        if engine.gone.load(ordering: .relaxed) && !engine.host.isStopping { engine.host.onEngineLost?(engine.pid) }
        if let fresh {
            put(fresh)
        } else {
            lock.withLock {
                total -= 1
                lock.broadcast()
            }
        }
        return status
    }
}

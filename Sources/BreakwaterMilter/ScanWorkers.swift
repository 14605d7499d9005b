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
    /// The host's peak RSS during the last build.
    private let lastPeak = Atomic<UInt64>(0)
    /// Set once the host was reaped (it died, or the daemon stopped it).
    private let endStatus = Locked<Int32?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// Set once a generation was put in service: later builds pause scans to put theirs in service.
    private let served = Atomic<Bool>(false)
    /// Called after each worker restart with the old pid and the new one (nil: none came); set before
    /// the first build.
    var onRestart: (@Sendable (Int32, Int32?) -> Void)?

    init(pid: pid_t, channel: Int32) {
        self.pid = pid
        self.channel = channel
    }

    /// Builds an engine of `dirs` in the host while the workers in service scan, then puts it in service
    /// and takes `workers` scan workers forked from it. Putting it in service ends the workers in
    /// service and frees their engine first (EngineHost's `activate`): from the first reload on, scans
    /// are paused for that (`pause`, which returns once no scan runs; messages wait in line) and the
    /// caller resumes them once the new set is installed (`resume` is called here only when the build
    /// fails after the pause).
    func build(
        _ dirs: [String], workers: Int, pause: () -> Void, resume: () -> Void,
        progress: @escaping @Sendable (String, Double) -> Void
    ) throws(EngineError) -> WorkerSet {
        let outcome: Result<WorkerSet, EngineError> = requests.withLock {
            var b = Wire("B")
            b.int(dirs.count)
            for d in dirs { b.string(d) }
            guard b.send(channel) else { return .failure(hostGone) }
            while true {
                guard var m = WireReader.receive(channel) else { return .failure(hostGone) }
                if m.fd >= 0 { close(m.fd) }
                switch m.type {
                case "P":
                    if let stage = m.string(), let f = m.double() { progress(stage, f) }
                case "E":
                    let message = m.string() ?? "the engine did not load"
                    let file = m.optional() ?? nil
                    lastPeak.store(m.u64() ?? 0, ordering: .relaxed)
                    return .failure(EngineError(message: message, file: file))
                case "O":
                    guard let gen = m.u64(), let sigs = m.int(), let loadedAt = m.double(), let secs = m.double(),
                        let bytes = m.u64(), let peak = m.u64()
                    else { return .failure(hostGone) }
                    lastPeak.store(peak, ordering: .relaxed)
                    let reload = served.load(ordering: .relaxed)
                    if reload { pause() }
                    var a = Wire("A")
                    a.u64(gen)
                    a.int(workers)
                    guard a.send(channel) else {
                        if reload { resume() }
                        return .failure(hostGone)
                    }
                    var taken: [ScanWorkerHandle] = []
                    for _ in 0..<workers {
                        guard var w = WireReader.receive(channel) else {
                            for t in taken { close(t.socket) }
                            if reload { resume() }
                            return .failure(hostGone)
                        }
                        if w.type == "W", let pid = w.int(), pid > 0, w.fd >= 0 {
                            taken.append(ScanWorkerHandle(socket: w.fd, pid: Int32(pid)))
                        } else if w.fd >= 0 {
                            close(w.fd)
                        }
                    }
                    served.store(true, ordering: .relaxed)
                    return .success(
                        WorkerSet(
                            host: self, generation: gen, signatureCount: sigs, loadedAt: loadedAt, buildSeconds: secs,
                            builtBytes: bytes, workers: taken))
                default:
                    continue
                }
            }
        }
        return try outcome.get()
    }

    private var hostGone: EngineError {
        EngineError(
            message: "the engine host process is gone (\(WorkerDeath.describe(endStatus.withLock { $0 })))", file: nil)
    }

    /// Asks the host how worker `pid` of `generation` ended and for a replacement. (wait status or
    /// nil when the host did not say, the new worker or nil).
    func replace(generation: UInt64, pid: Int32) -> (status: Int32?, worker: ScanWorkerHandle?) {
        requests.withLock {
            var r = Wire("R")
            r.u64(generation)
            r.int(Int(pid))
            guard r.send(channel), var x = WireReader.receive(channel), x.type == "X", let st = x.int() else {
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
    }

    /// The engine of `generation` is no longer used: the host ends its workers and frees it. No reply
    /// (sent while a build may be under way; the host takes it when it is done).
    func free(generation: UInt64) {
        var f = Wire("F")
        f.u64(generation)
        _ = f.send(channel)
    }

    /// The host's RSS plus its workers' private memory.
    func memory() -> UInt64? {
        requests.withLock {
            guard Wire("M").send(channel), var m = WireReader.receive(channel), m.type == "m" else { return nil }
            return m.u64()
        }
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

    /// Stops the host (and with it its workers) and reaps it.
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

/// The scan workers forked from one engine generation in the host: the daemon's "engine". Freed (its
/// workers ended, the host's engine freed) when the last scan holding it drops it after a reload.
package final class WorkerSet: HeldEngine, @unchecked Sendable {
    let host: EngineHostClient
    let generation: UInt64
    package let signatureCount: Int
    package let loadedAt: Double
    package let buildSeconds: Double
    package let builtBytes: UInt64?
    private let lock = ConditionLock()
    private var idle: [ScanWorkerHandle]
    /// Workers of this set, idle or busy (a dead one is counted until its replacement came or failed).
    private var total: Int

    init(
        host: EngineHostClient, generation: UInt64, signatureCount: Int, loadedAt: Double, buildSeconds: Double,
        builtBytes: UInt64?, workers: [ScanWorkerHandle]
    ) {
        self.host = host
        self.generation = generation
        self.signatureCount = signatureCount
        self.loadedAt = loadedAt
        self.buildSeconds = buildSeconds
        self.builtBytes = builtBytes
        self.idle = workers
        self.total = workers.count
    }

    deinit {
        for w in idle { close(w.socket) }
        host.free(generation: generation)
    }

    /// The workers of this set.
    var count: Int { lock.withLock { total } }

    private func take() -> ScanWorkerHandle? {
        lock.withLock {
            let deadline = Now.monotonic() + 30
            while idle.isEmpty {
                if total == 0 || Now.monotonic() >= deadline { return nil }
                lock.wait(until: min(deadline, Now.monotonic() + 1))
            }
            // In turn (first in, first out): a worker that died while idle is found at the next scans,
            // not left in the pool until a burst needs it.
            return idle.removeFirst()
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
            guard let worker = take() else { return .failed("no scan worker is left (the engine host is gone?)") }
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
        let (status, fresh) = host.replace(generation: generation, pid: worker.pid)
        host.onRestart?(worker.pid, fresh?.pid)
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

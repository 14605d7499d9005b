import BreakwaterCore
import BreakwaterEngine
import BreakwaterWaves
import CProcessTuning
import Logging

#if canImport(Glibc)
import Glibc
#endif

// Crash containment by process (issue 22): `breakwater run` forks the ENGINE HOST first, before any
// thread exists. The host is single-threaded and holds no engine: for each build it forks an ENGINE
// process (one per generation of the signature set), which builds the engine and forks one SCAN
// WORKER per scan slot from it, so the workers share the engine's pages (docs/benchmarks.md:
// "Scanning in a process forked after the engine was built"). The daemon (libmilter, admission,
// policy, waves, control, metrics) never holds an engine: a session's thread, holding a scan slot,
// hands its message to a worker as a descriptor over the worker's own socket and waits for the
// result. A worker that dies mid-scan died of that message; its engine process forks a replacement,
// in milliseconds.
//
// An engine is retired by ending its process and its workers: the kernel takes their memory back at
// once, where freeing an engine of the official set's size in a process whose pages the workers
// share took the host most of a second of faults and libclamav's walk (docs/benchmarks.md). A
// concurrent reload builds in a new engine process while the old one's workers go on scanning, then
// the daemon switches to the new workers with no pause; a blocking one ends the old process first.
//
// Every exchange is one SOCK_SEQPACKET message: a type byte, then fields (`Wire`), at most one
// descriptor attached (SCM_RIGHTS).
//
// daemon -> host                          host -> daemon
//   B dirs...         an engine process     H pid [socket to it] (pid -1: none)
//                     that builds them
//   K pid             retire it (no reply; the host reaps it before it reads the next request)
//
// daemon -> engine process                engine process -> daemon
//   (on its start, it builds)               P stage fraction (progress, any number), then
//                                           E message file? peak | O signatures loadedAt
//                                           buildSeconds bytes peak
//   A count           start the workers     W pid [socket] per worker (pid -1: none)
//   R pid             replace a worker      X waitstatus, then W pid [socket]
//   (socket closed)   end, with the workers
//
// daemon -> worker: S flags size [message]   worker -> daemon: the result (`ScanReply`)

/// A message of the host and worker protocols.
struct Wire {
    var bytes: [UInt8]
    init(_ type: Character) { bytes = [type.asciiValue!] }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func int(_ v: Int) { u64(UInt64(bitPattern: Int64(v))) }
    mutating func double(_ v: Double) { u64(v.bitPattern) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        u64(UInt64(u.count))
        bytes.append(contentsOf: u)
    }
    mutating func optional(_ s: String?) {
        bytes.append(s == nil ? 0 : 1)
        if let s { string(s) }
    }

    /// Sends it with `fd` attached (-1: none). False when the peer is gone.
    func send(_ sock: Int32, passing fd: Int32 = -1) -> Bool {
        bytes.withUnsafeBytes { bw_send_with_fd(sock, $0.baseAddress, $0.count, fd) == $0.count }
    }

    /// Tells the daemon of a child forked with `forkChild` (`type` pid, pid -1 when none) and hands it
    /// the child's socket, closed here once sent (the daemon has its own copy).
    static func forked(_ type: Character, pid: Int32, socket: Int32, to channel: Int32) {
        var w = Wire(type)
        w.int(Int(pid))
        _ = w.send(channel, passing: socket)
        if socket >= 0 { close(socket) }
    }
}

/// Forks a child process named `name` that gets one end of a new socket pair and runs `child` with
/// it; the child first closes the other end and `inherited` (its parent's own socket to the daemon).
/// Returns the child's pid and the other end, (-1, -1) when the pair or the fork failed (errno says
/// why). `noCore`: the child dumps no core (a scan worker holds mail).
func forkChild(_ name: String, noCore: Bool, closing inherited: Int32, _ child: (Int32) -> Never) -> (
    pid: Int32, socket: Int32
) {
    var pair: [Int32] = [-1, -1]
    guard bw_seqpacket_pair(&pair) == 0 else { return (-1, -1) }
    let pid = bw_fork_child(name, noCore ? 1 : 0)
    if pid == 0 {
        close(pair[0])
        close(inherited)
        child(pair[1])
    }
    close(pair[1])
    if pid < 0 {
        let saved = errno
        close(pair[0])
        errno = saved
        return (-1, -1)
    }
    return (pid, pair[0])
}

struct WireReader {
    let bytes: [UInt8]
    var at = 1
    /// The descriptor that came with it (-1: none); the receiver owns it.
    let fd: Int32
    var type: Character { Character(Unicode.Scalar(bytes[0])) }

    mutating func u64() -> UInt64? {
        guard at + 8 <= bytes.count else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        at += 8
        return v
    }
    mutating func int() -> Int? { u64().map { Int(Int64(bitPattern: $0)) } }
    mutating func double() -> Double? { u64().map { Double(bitPattern: $0) } }
    mutating func string() -> String? {
        guard let n = u64(), n <= UInt64(bytes.count - at) else { return nil }
        defer { at += Int(n) }
        return String(decoding: bytes[at..<(at + Int(n))], as: UTF8.self)
    }
    mutating func optional() -> String?? {
        guard at < bytes.count else { return nil }
        at += 1
        if bytes[at - 1] == 0 { return .some(nil) }
        return string().map { .some($0) }
    }

    /// Receives one message (nil at end of file or on an error). On a socket with a receive timeout
    /// (SO_RCVTIMEO), `onTimeout` is called each time it passes and the receive goes on.
    static func receive(_ sock: Int32, capacity: Int = 64 << 10, onTimeout: () -> Void = {}) -> WireReader? {
        var fd: Int32 = -1
        let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buf, count in
            var n = bw_recv_with_fd(sock, buf.baseAddress, capacity, &fd)
            while n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                onTimeout()
                n = bw_recv_with_fd(sock, buf.baseAddress, capacity, &fd)
            }
            count = max(0, n)
        }
        guard !bytes.isEmpty else {
            if fd >= 0 { close(fd) }
            return nil
        }
        return WireReader(bytes: bytes, fd: fd)
    }
}

/// The signals that end a scan worker as a crash of the scan (a parser bug or a trap), as against
/// SIGKILL (the OOM killer, or ops) and an exit.
enum WorkerDeath {
    static let crashSignals: Set<Int32> = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS]

    /// The signal of a wait status, if the process was killed by one.
    static func signal(_ status: Int32) -> Int32? {
        let sig = status & 0x7f
        return sig != 0 && sig != 0x7f ? sig : nil
    }

    static func describe(_ status: Int32?) -> String {
        guard let status else { return "ended (how is unknown: the engine host did not say)" }
        if let sig = signal(status) { return "killed by signal \(sig) (\(String(cString: strsignal(sig))))" }
        return "exited with status \((status >> 8) & 0xff)"
    }
}

// MARK: the engine host (its own process)

/// What an engine process needs to build its engine and run its workers: fixed when the daemon starts,
/// handed from the host to each engine process it forks.
struct EngineSettings {
    let limits: EngineLimits
    let inspectLayers: Bool
    let scanDirectory: ScanDirectory
    let logger: Logger
}

/// The engine host: forks an engine process for each build and reaps it when the daemon retires it.
/// Single-threaded, and holds no engine, so each engine process starts from a clean, single-threaded
/// copy of it. Ends, with every engine process, when the daemon's socket closes.
final class EngineHost {
    private let channel: Int32
    private let settings: EngineSettings
    private var logger: Logger { settings.logger }
    /// Live engine processes.
    private var engines: Set<Int32> = []

    /// Forks the host (call before any thread exists) and returns the daemon's side.
    static func start(limits: EngineLimits, inspectLayers: Bool, scanDirectory: ScanDirectory, logger: Logger)
        throws -> EngineHostClient
    {
        var pair: [Int32] = [-1, -1]
        guard bw_seqpacket_pair(&pair) == 0 else {
            throw StartupError("cannot make the engine host's socket: \(FileWalk.errnoString())")
        }
        let pid = bw_fork_child("bw-host", 0)
        if pid < 0 {
            throw StartupError("cannot fork the engine host process: \(FileWalk.errnoString())")
        }
        if pid == 0 {
            close(pair[0])
            EngineHost(
                channel: pair[1],
                settings: EngineSettings(
                    limits: limits, inspectLayers: inspectLayers, scanDirectory: scanDirectory, logger: logger)
            ).run()
        }
        close(pair[1])
        return EngineHostClient(pid: pid, channel: pair[0])
    }

    private init(channel: Int32, settings: EngineSettings) {
        self.channel = channel
        self.settings = settings
    }

    private func run() -> Never {
        while true {
            reap()
            var p = pollfd(fd: channel, events: Int16(POLLIN), revents: 0)
            let rc = poll(&p, 1, 1000)
            if rc == 0 || (rc < 0 && errno == EINTR) { continue }
            guard var m = WireReader.receive(channel, capacity: 1 << 20) else { shutdown() }
            if m.fd >= 0 { close(m.fd) }
            switch m.type {
            case "B":
                guard let n = m.int(), n >= 0, n < 4096 else { continue }
                var dirs: [String] = []
                for _ in 0..<n { if let d = m.string() { dirs.append(d) } }
                fork(building: dirs)
            case "K":
                guard let pid = m.int() else { continue }
                retire(Int32(clamping: pid))
            default:
                continue
            }
        }
    }

    /// Forks an engine process that builds `dirs`, and sends the daemon its socket.
    private func fork(building dirs: [String]) {
        let (pid, socket) = forkChild("bw-engine", noCore: false, closing: channel) { socket in
            EngineProcess(channel: socket, settings: settings).run(building: dirs)
        }
        if pid > 0 {
            engines.insert(pid)
        } else {
            logger.error("engine host: cannot fork an engine process: \(FileWalk.errnoString())")
        }
        Wire.forked("H", pid: pid, socket: socket, to: channel)
    }

    /// Waits for engine process `pid` to end (the daemon closed its socket: it ends its workers, then
    /// itself), so that its memory is back before the next request (a blocking reload's build) is
    /// read. One that has not ended within 2 s is killed (its workers follow: PR_SET_PDEATHSIG).
    private func retire(_ pid: Int32) {
        guard engines.remove(pid) != nil else { return }
        var st: Int32 = 0
        for _ in 0..<2000 {
            let got = waitpid(pid, &st, WNOHANG)
            if got == pid || (got < 0 && errno == ECHILD) { return }
            usleep(1_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
    }

    /// Reaps the engine processes that ended on their own.
    private func reap() {
        while true {
            var st: Int32 = 0
            let pid = waitpid(-1, &st, WNOHANG)
            if pid <= 0 { return }
            engines.remove(pid)
        }
    }

    /// The daemon is gone or stopping: the engine processes (and their workers) end with the host.
    private func shutdown() -> Never {
        for pid in engines { kill(pid, SIGKILL) }
        for pid in engines {
            var st: Int32 = 0
            while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        }
        _exit(0)
    }
}

// MARK: an engine process (its own process, one per generation, forked from the host)

/// Builds one engine, forks scan workers from it, reaps them and replaces those that die. Ends, with
/// its workers, when the daemon closes its socket: the engine is never freed, its memory goes back
/// with the process.
final class EngineProcess {
    private let channel: Int32
    private let settings: EngineSettings
    private var scanDirectory: ScanDirectory { settings.scanDirectory }
    private var logger: Logger { settings.logger }
    private var engine: ClamEngine?
    /// Live workers.
    private var workers: Set<Int32> = []
    /// Workers reaped before the daemon asked how they ended: pid -> wait status.
    private var ended: [Int32: Int32] = [:]

    init(channel: Int32, settings: EngineSettings) {
        self.channel = channel
        self.settings = settings
    }

    func run(building dirs: [String]) -> Never {
        build(dirs)
        while true {
            reap()
            var p = pollfd(fd: channel, events: Int16(POLLIN), revents: 0)
            let rc = poll(&p, 1, 1000)
            if rc == 0 || (rc < 0 && errno == EINTR) { continue }
            guard var m = WireReader.receive(channel, capacity: 4096) else { shutdown() }
            if m.fd >= 0 { close(m.fd) }
            switch m.type {
            case "A":
                guard let count = m.int(), count >= 0, count < 4096 else { continue }
                for _ in 0..<count { sendWorker() }
            case "R":
                guard let pid = m.int() else { continue }
                replace(pid: Int32(clamping: pid))
            default:
                continue
            }
        }
    }

    /// The daemon retired this generation (or stopped): the workers end, then the process.
    private func shutdown() -> Never {
        for pid in workers { kill(pid, SIGKILL) }
        for pid in workers {
            var st: Int32 = 0
            while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
            scanDirectory.forget(pid: pid)
        }
        _exit(0)
    }

    /// Reaps the workers that ended (their status kept for the daemon's question).
    private func reap() {
        while true {
            var st: Int32 = 0
            let pid = waitpid(-1, &st, WNOHANG)
            if pid <= 0 { return }
            if workers.remove(pid) != nil { ended[pid] = st }
            scanDirectory.forget(pid: pid)
        }
    }

    /// Builds the engine of `dirs` and reports it (`O`) or why not (`E`).
    private func build(_ dirs: [String]) {
        let channel = self.channel
        let before = ProcessMemory.rss
        do {
            engine = try ClamEngine(
                directories: dirs, limits: settings.limits, inspectLayers: settings.inspectLayers,
                progress: { stage, fraction in
                    var w = Wire("P")
                    w.string(stage)
                    w.double(fraction)
                    _ = w.send(channel)
                })
        } catch {
            let e = (error as? EngineError) ?? EngineError(message: "\(error)", file: nil)
            var w = Wire("E")
            w.string(e.message)
            w.optional(e.file)
            w.u64(ProcessMemory.peak ?? 0)
            _ = w.send(channel)
            return
        }
        guard let engine else { return }
        var w = Wire("O")
        w.int(engine.signatureCount)
        w.double(engine.loadedAt)
        w.double(engine.buildSeconds)
        w.u64(before.flatMap { b in ProcessMemory.rss.map { $0 > b ? $0 - b : 0 } } ?? 0)
        w.u64(ProcessMemory.peak ?? 0)
        _ = w.send(channel)
    }

    /// Forks a worker and sends the daemon its socket (`W pid`, pid -1 when none).
    private func sendWorker() {
        var pid: Int32 = -1
        var socket: Int32 = -1
        if let engine {
            let scanDirectory = scanDirectory
            (pid, socket) = forkChild("bw-scan", noCore: true, closing: channel) { socket in
                ScanWorker(engine: engine, socket: socket, scanDirectory: scanDirectory).run()
            }
            if pid > 0 {
                workers.insert(pid)
            } else {
                logger.error("engine process: cannot fork a scan worker: \(FileWalk.errnoString())")
            }
        }
        Wire.forked("W", pid: pid, socket: socket, to: channel)
    }

    private func replace(pid: Int32) {
        var status: Int32 = -1
        if let st = ended.removeValue(forKey: pid) {
            status = st
        } else if workers.contains(pid) {
            // Its socket closed: it is ending. Waited for a while, then killed (a worker that closed its
            // socket and hangs is of no use).
            var st: Int32 = 0
            var got: Int32 = 0
            for _ in 0..<200 {
                got = waitpid(pid, &st, WNOHANG)
                if got != 0 { break }
                usleep(10_000)
            }
            if got == 0 {
                kill(pid, SIGKILL)
                while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
            }
            workers.remove(pid)
            scanDirectory.forget(pid: pid)
            status = st
        }
        var x = Wire("X")
        x.int(Int(status))
        _ = x.send(channel)
        sendWorker()
    }
}

// MARK: a scan worker (its own process, forked from an engine process)

/// Scans the messages the daemon sends over its socket with the engine it inherited, one at a time,
/// until the socket closes.
struct ScanWorker {
    let engine: ClamEngine
    let socket: Int32
    let scanDirectory: ScanDirectory

    /// Messages up to this size are read (pread into a buffer kept for the worker's life), larger ones
    /// mapped: for a small message one system call instead of mmap and munmap.
    static let readLimit = 64 << 10

    /// Seconds without a message after which a worker hands the memory its scans freed back.
    static let idleTrim = 1

    func run() -> Never {
        // Only for the repeat key the inspector computes; the daemon keeps the real memo.
        let memo = WaveMemo()
        let small = UnsafeMutableRawPointer.allocate(byteCount: ScanWorker.readLimit, alignment: 16)
        // Idle for `idleTrim` seconds after a scan: the memory the scans freed goes back to the kernel
        // (malloc_trim), once. Under load the receive never times out: nothing a message.
        var tv = timeval(tv_sec: ScanWorker.idleTrim, tv_usec: 0)
        _ = setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var trimmed = true
        while true {
            guard
                var m = WireReader.receive(
                    socket, capacity: 4096,
                    onTimeout: {
                        if !trimmed { _ = bw_malloc_trim() }
                        trimmed = true
                    })
            else { _exit(0) }
            trimmed = false
            let fd = m.fd
            guard m.type == "S", fd >= 0, let flags = m.u64(), let size = m.int(), size >= 0 else {
                if fd >= 0 { close(fd) }
                _exit(2)
            }
            let allMatches = flags & 1 != 0
            let inspect = flags & 2 != 0
            // A small message is read into the worker's own buffer (one pread); a larger one is mapped.
            var base: UnsafeMutableRawPointer?
            var mapped = false
            if size > 0 && size <= ScanWorker.readLimit {
                if pread(fd, small, size, 0) == size { base = small }
            } else if size > 0 {
                let p = mmap(nil, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
                if let p, p != MAP_FAILED {
                    base = p
                    mapped = true
                }
            }
            var inspector = inspect ? WaveLayerInspector(memo: memo) : nil
            let reply: ScanReply
            if size > 0 && base == nil {
                reply = ScanReply(
                    result: ScanResult(
                        finding: .error("cannot read the message in the scan worker: \(FileWalk.errnoString())"),
                        seconds: 0, bytes: size), place: .disk, wave: nil)
            } else {
                let (result, place) = scanDirectory.run { again in
                    if again && inspect { inspector = WaveLayerInspector(memo: memo) }
                    return engine.scan(
                        UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: size),
                        inspector: inspector, allMatches: allMatches)
                }
                reply = ScanReply(result: result, place: place, wave: inspector?.collected)
            }
            if let base, mapped { munmap(base, size) }
            close(fd)
            guard reply.encoded().send(socket) else { _exit(0) }
        }
    }
}

/// A worker's answer: the scan's result, where it ran, and what the wave inspector collected.
struct ScanReply {
    var result: ScanResult
    var place: ScanDirectory.Place
    var wave: WaveCollected?

    /// Detection names beyond this many bytes are left out (a reply is one socket message).
    static let namesLimit = 32 << 10

    func encoded() -> Wire {
        var w = Wire("s")
        switch result.finding {
        case .clean: w.int(0)
        case .found(let d):
            w.int(1)
            var names: [String] = []
            var total = 0
            for x in d {
                total += x.rawName.utf8.count + 8
                if total > ScanReply.namesLimit { break }
                names.append(x.rawName)
            }
            w.int(names.count)
            for n in names { w.string(n) }
        case .error(let e):
            w.int(2)
            w.string(String(e.prefix(4096)))
        }
        w.double(result.seconds)
        w.int(result.bytes)
        w.optional(result.temporaryFileFailure.map { String($0.prefix(4096)) })
        switch place {
        case .memory: w.int(0)
        case .disk: w.int(1)
        case .diskAfterFailure(let why):
            w.int(2)
            w.string(String(why.prefix(4096)))
        }
        if let wave {
            w.bytes.append(1)
            wave.encode(into: &w.bytes)
        } else {
            w.bytes.append(0)
        }
        return w
    }

    static func decode(_ m: inout WireReader) -> ScanReply? {
        guard m.type == "s", let kind = m.int() else { return nil }
        let finding: ScanResult.Finding
        switch kind {
        case 0: finding = .clean
        case 1:
            guard let n = m.int(), n >= 0, n < 1 << 16 else { return nil }
            var d: [Detection] = []
            for _ in 0..<n {
                guard let s = m.string() else { return nil }
                d.append(Detection(rawName: s))
            }
            finding = .found(d)
        case 2:
            guard let e = m.string() else { return nil }
            finding = .error(e)
        default: return nil
        }
        guard let seconds = m.double(), let bytes = m.int(), let tff = m.optional(), let p = m.int() else {
            return nil
        }
        var result = ScanResult(finding: finding, seconds: seconds, bytes: bytes)
        result.temporaryFileFailure = tff
        let place: ScanDirectory.Place
        switch p {
        case 0: place = .memory
        case 1: place = .disk
        default:
            guard let why = m.string() else { return nil }
            place = .diskAfterFailure(why)
        }
        guard m.at < m.bytes.count else { return nil }
        m.at += 1
        var wave: WaveCollected?
        if m.bytes[m.at - 1] == 1 {
            guard let c = WaveCollected.decode(m.bytes, at: &m.at) else { return nil }
            wave = c
        }
        return ScanReply(result: result, place: place, wave: wave)
    }
}

import BreakwaterCore
import BreakwaterEngine
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An answer of the control socket: `OK head` or `ERR head`, then body lines.
public typealias ControlReply = ControlProtocol.Response

/// The control socket of `breakwater run` (the `control` key; empty turns it off): a unix socket with the
/// line protocol of `ControlProtocol`. One thread accepts; each connection is served on a short-lived
/// thread of its own (at most `maxConnections` at once; past that a client gets `ERR busy`), with a
/// bounded request and a read deadline. Nothing here touches the scan path: handlers read atomics and
/// snapshots, and a RELOAD waits on the reload thread, not on scans.
///
/// Built-in requests: `PING`, `HELP`, `STATUS` (JSON), `STATUS TEXT`, `RELOAD` (waits for the new
/// generation), `RELOAD NOWAIT`. Other features add theirs with `register`.
public final class ControlServer: DaemonService {
    public typealias Handler = @Sendable (_ argument: String, _ daemon: MilterDaemon) -> ControlReply

    public let path: String
    public let mode: UInt32
    /// Longest a RELOAD waits for its attempt (the official databases take up to a minute or so).
    public let reloadTimeout: Double
    public static let maxConnections = 8
    static let readTimeout = 5.0

    private let handlers = Locked<[(verb: String, help: String, handler: Handler)]>([])
    private let listener = Locked<Int32>(-1)
    private let stopping = Atomic<Bool>(false)
    private let connections = Atomic<Int>(0)
    private let acceptThread = Locked<Thread?>(nil)
    private let socketInode = Locked<UInt64>(0)

    public init(path: String, mode: UInt32, reloadTimeout: Double = 600) {
        self.path = path
        self.mode = mode
        self.reloadTimeout = reloadTimeout
        registerBuiltins()
    }

    /// Adds the control socket to the daemon unless `control` is empty; returns it so other features
    /// can register their own requests.
    @discardableResult
    public static func install(on daemon: MilterDaemon) -> ControlServer? {
        guard !daemon.config.control.isEmpty else { return nil }
        let server = ControlServer(path: daemon.config.control, mode: daemon.config.ops.controlMode)
        daemon.services.append(server)
        return server
    }

    /// The daemon's control server, if it has one (for features that add requests to it).
    public static func of(_ daemon: MilterDaemon) -> ControlServer? {
        daemon.services.lazy.compactMap { $0 as? ControlServer }.first
    }

    /// Answers `VERB [argument]` (the verb is matched without regard to case). Register before the
    /// daemon runs, or at any time: later registrations win.
    public func register(_ verb: String, help: String, _ handler: @escaping Handler) {
        let v = verb.uppercased()
        handlers.withLock { list in
            list.removeAll { $0.verb == v }
            list.append((v, help, handler))
        }
    }

    // MARK: service

    public func start(_ daemon: MilterDaemon) throws {
        let fd = try openSocket()
        listener.withLock { $0 = fd }
        stopping.store(false, ordering: .relaxed)
        let t = Thread.start(stackSize: 256 << 10) { [self, weak daemon] in
            acceptLoop(fd: fd, daemon: daemon)
        }
        acceptThread.withLock { $0 = t }
        daemon.logger.notice("control socket \(path) (mode 0\(String(mode, radix: 8)))")
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        let t = acceptThread.withLock { t -> Thread? in defer { t = nil }; return t }
        t?.join()
        let fd = listener.withLock { fd -> Int32 in defer { fd = -1 }; return fd }
        if fd >= 0 { close(fd) }
        // Remove the socket only if it is still ours (not one a newer daemon made meanwhile).
        var st = stat()
        let ino = socketInode.withLock { $0 }
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK, UInt64(st.st_ino) == ino { unlink(path) }
    }

    /// Binds the socket: a stale socket (nothing listening) is replaced; a live one or a file that is
    /// not a socket is an error, as is a missing directory.
    private func openSocket() throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw StartupError("control \(path): exists and is not a socket; remove it or set control to another path")
            }
            switch Result(catching: { () throws(ControlProtocol.ClientError) in try ControlProtocol.request("PING", socket: path, timeout: 2) }) {
            case .success:
                throw StartupError("control \(path): another daemon answers on it (is breakwater already running?)")
            case .failure(.notRunning):
                unlink(path)  // stale: left by a daemon that did not stop cleanly
            case .failure(.failed(let why)):
                throw StartupError("control \(path): a socket is there and cannot be checked: \(why)")
            }
        }
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        if !dir.isEmpty && !SignatureLocations.isDirectory(dir) {
            throw StartupError("control \(path): the directory \(dir) does not exist (systemd's RuntimeDirectory= creates /run/breakwater; create it, set control to another path, or set control to nothing to turn the control socket off)")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StartupError("control \(path): socket: \(FileWalk.errnoString())") }
        // Bind with no permission for others, then open it up to `mode`: never wider than asked.
        let old = umask(0o177)
        let result = ControlProtocol.withAddress(path) { addr -> (Int32, Int32) in
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            return (rc, errno)
        }
        umask(old)
        guard let (rc, bindErrno) = result else {
            close(fd)
            throw StartupError("control \(path): the path is too long for a unix socket")
        }
        guard rc == 0 else {
            close(fd)
            throw StartupError("control \(path): cannot bind: \(FileWalk.errnoString(bindErrno))")
        }
        guard chmod(path, mode_t(mode)) == 0, listen(fd, 16) == 0 else {
            let e = FileWalk.errnoString()
            close(fd)
            unlink(path)
            throw StartupError("control \(path): \(e)")
        }
        if lstat(path, &st) == 0 { socketInode.withLock { $0 = UInt64(st.st_ino) } }
        return fd
    }

    private func acceptLoop(fd: Int32, daemon: MilterDaemon?) {
        while !stopping.load(ordering: .relaxed) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 200)
            if r <= 0 { continue }
            let c = accept(fd, nil, nil)
            if c >= 0 { _ = fcntl(c, F_SETFD, FD_CLOEXEC) }
            if c < 0 {
                if errno == EMFILE || errno == ENFILE { usleep(100_000) }  // out of descriptors: do not spin
                continue
            }
            guard let daemon else { close(c); continue }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if connections.add(1, ordering: .relaxed).newValue > ControlServer.maxConnections {
                connections.subtract(1, ordering: .relaxed)
                // Take the request line if it is already there (clients write it right after connecting),
                // so the answer is not lost to a reset; never wait long on this thread.
                var p = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 50) > 0 {
                    var buf = [UInt8](repeating: 0, count: ControlProtocol.maxRequest)
                    _ = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                }
                ControlServer.send(c, ControlReply(ok: false, head: "busy: \(ControlServer.maxConnections) control requests are being served, try again"))
                shutdown(c, Int32(SHUT_WR))
                close(c)
                continue
            }
            Thread.start(stackSize: 512 << 10) { [self] in
                serve(c, daemon: daemon)
                close(c)
                connections.subtract(1, ordering: .relaxed)
            }.detach()
        }
    }

    private func serve(_ fd: Int32, daemon: MilterDaemon) {
        let reply: ControlReply
        switch ControlServer.readRequest(fd, timeout: ControlServer.readTimeout) {
        case .failure(let why):
            reply = ControlReply(ok: false, head: why.description)
        case .success(let line):
            let (verb, argument) = ControlProtocol.split(line)
            if verb == "RELOAD" {
                daemon.logger.notice("control: RELOAD\(argument.isEmpty ? "" : " " + argument) from \(ControlServer.peer(fd))")
            }
            if let h = handlers.withLock({ list in list.first { $0.verb == verb }?.handler }) {
                reply = h(argument, daemon)
            } else {
                reply = ControlReply(ok: false, head: verb.isEmpty ? "empty request: try HELP" : "unknown request '\(ControlProtocol.oneLine(String(line.prefix(64))))': try HELP")
            }
        }
        ControlServer.send(fd, reply)
        ControlServer.lingeringClose(fd)
    }

    /// Ends the answer, then reads and drops what the client still sends (a request too long, for
    /// one), briefly: closing with unread input would reset the connection and lose the answer.
    static func lingeringClose(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        var buf = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        let deadline = Clock.monotonic() + 0.5
        while drained < 1 << 20 && Clock.monotonic() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) <= 0 { break }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            drained += n
        }
    }

    /// One line, at most `maxRequest` bytes, within `timeout` seconds.
    static func readRequest(_ fd: Int32, timeout: Double) -> Result<String, RequestError> {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        let deadline = Clock.monotonic() + timeout
        while true {
            if let line = ControlProtocol.requestLine(bytes) { return line }
            let left = deadline - Clock.monotonic()
            if left <= 0 { return .failure(RequestError("no request line within \(Int(timeout)) s")) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(left * 1000) + 1)
            if r < 0 && errno != EINTR { return .failure(RequestError("poll failed")) }
            if r <= 0 { continue }
            let want = min(buf.count, ControlProtocol.maxRequest - bytes.count)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, 0) }
            if n < 0 { if errno == EINTR { continue }; return .failure(RequestError("read failed")) }
            if n == 0 {
                // A request without its newline, then end of input, still counts.
                if bytes.isEmpty { return .failure(RequestError("empty request: try HELP")) }
                bytes.append(10)
                continue
            }
            bytes += buf[0..<n]
        }
    }

    typealias RequestError = ControlProtocol.RequestError

    static func send(_ fd: Int32, _ reply: ControlReply) {
        var text = reply.rendered
        text.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.send(fd, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    /// `uid U pid P` of the client (SO_PEERCRED), for the log.
    static func peer(_ fd: Int32) -> String {
        // struct ucred (pid, uid, gid); Glibc's module map leaves it out (it needs _GNU_SOURCE).
        struct PeerCredentials { var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0 }
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return "an unknown client" }
        return "uid \(cred.uid) pid \(cred.pid)"
    }

    // MARK: built-in requests

    private func registerBuiltins() {
        register("PING", help: "PING: answers OK breakwater VERSION") { _, _ in
            ControlReply(ok: true, head: "breakwater \(Breakwater.version)")
        }
        register("HELP", help: "HELP: lists the requests") { [weak self] _, _ in
            let lines = self?.handlers.withLock { $0.map(\.help) } ?? []
            return ControlReply(ok: true, head: "requests:", body: lines)
        }
        register("STATUS", help: "STATUS [JSON|TEXT]: the daemon's status as one JSON object (default) or as text lines") { argument, daemon in
            let report = StatusReport(daemon: daemon)
            switch argument.uppercased() {
            case "", "JSON": return ControlReply(ok: true, head: "", body: [report.json.rendered])
            case "TEXT": return ControlReply(ok: true, head: "", body: report.text)
            default: return ControlReply(ok: false, head: "STATUS takes JSON or TEXT, not '\(ControlProtocol.oneLine(argument))'")
            }
        }
        register("RELOAD", help: "RELOAD [NOWAIT]: reloads the signatures; answers once the new engine serves (OK generation N signatures M) or failed (ERR why)") { [weak self] argument, daemon in
            let timeout = self?.reloadTimeout ?? 600
            switch argument.uppercased() {
            case "": break
            case "NOWAIT":
                daemon.engines.triggerReload()
                return ControlReply(ok: true, head: "reload started")
            default:
                return ControlReply(ok: false, head: "RELOAD takes nothing or NOWAIT, not '\(ControlProtocol.oneLine(argument))'")
            }
            let ticket = daemon.engines.triggerReload()
            let done = daemon.engines.waitForAttempt(ticket, timeout: timeout) { self?.stopping.load(ordering: .relaxed) ?? true }
            let s = daemon.engines.status
            guard done else {
                return ControlReply(ok: false, head: "the reload did not finish within \(Int(timeout)) s; still serving generation \(s.generation) (see STATUS)")
            }
            if s.lastSucceeded {
                return ControlReply(ok: true, head: "generation \(s.generation) signatures \(s.signatures) ms \(Int((s.buildSeconds * 1000).rounded()))")
            }
            return ControlReply(ok: false, head: "reload failed, still serving generation \(s.generation) (\(s.signatures) signatures): \(s.lastError ?? "unknown error")")
        }
    }
}

import BreakwaterCore
import BreakwaterEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An answer of the control socket: `OK head` or `ERR head`, then body lines.
package typealias ControlReply = ControlProtocol.Response

/// The control socket of `breakwater run` (the `control` key; empty turns it off): a unix socket with the
/// line protocol of `ControlProtocol`. One thread accepts; each connection is served on a short-lived
/// thread of its own (at most `maxConnections` at once; past that a client gets `ERR busy`), with a
/// bounded request and a read deadline. Nothing here touches the scan path: handlers read atomics and
/// snapshots, and a RELOAD waits on the reload thread, not on scans. While the first engine loads, the
/// loading thread answers instead (`serveWaiting`), except a RELOAD that waits: the accept thread
/// serves that one once it runs.
///
/// Built-in requests: `PING`, `HELP`, `STATUS` (JSON), `STATUS TEXT`, `RELOAD` (waits for the new
/// generation), `RELOAD NOWAIT`. Other features add theirs with `register`.
package final class ControlServer: ServedWhileLoading {
    package typealias Handler = @Sendable (_ argument: String, _ daemon: MilterDaemon) -> ControlReply

    package let path: String
    package let mode: UInt32
    /// Longest a RELOAD waits for its attempt (the official databases take up to a minute or so).
    package let reloadTimeout: Double
    package static let maxConnections = 8
    static let readTimeout = 5.0

    private let handlers = Locked<[(verb: String, help: String, handler: Handler)]>([])
    private let listener = Locked<Int32>(-1)
    private let stopping = Atomic<Bool>(false)
    private let connections = Atomic<Int>(0)
    private let acceptThread = Locked<PosixThread?>(nil)
    /// Clients taken while the first engine loaded: still sending their request (`pending`), or with a
    /// request that waits for the engine (`deferred`). The accept thread takes them over.
    private let beforeStart = Locked<(pending: [Pending], deferred: [Pending])>(([], []))
    /// The socket file's inode and group when bound.
    private let socketFile = Locked<(ino: UInt64, gid: UInt32)>((0, 0))

    package init(path: String, mode: UInt32, reloadTimeout: Double = 600) {
        self.path = path
        self.mode = mode
        self.reloadTimeout = reloadTimeout
        registerBuiltins()
    }

    /// Adds the control socket to the daemon unless `control` is empty; returns it so other features
    /// can register their own requests.
    @discardableResult
    package static func install(on daemon: MilterDaemon) -> ControlServer? {
        guard !daemon.config.control.isEmpty else { return nil }
        let server = ControlServer(path: daemon.config.control, mode: daemon.config.ops.controlMode)
        daemon.services.append(server)
        return server
    }

    /// The daemon's control server, if it has one (for features that add requests to it).
    package static func of(_ daemon: MilterDaemon) -> ControlServer? {
        daemon.services.lazy.compactMap { $0 as? ControlServer }.first
    }

    /// Answers `VERB [argument]` (the verb is matched without regard to case). Register before the
    /// daemon runs, or at any time: later registrations win.
    package func register(_ verb: String, help: String, _ handler: @escaping Handler) {
        let v = verb.uppercased()
        handlers.withLock { list in
            list.removeAll { $0.verb == v }
            list.append((v, help, handler))
        }
    }

    // MARK: service

    /// Binds the socket (before the first engine loads: `status` shows the progress).
    package func openListener(_ daemon: MilterDaemon) throws {
        let fd = try openSocket()
        listener.withLock { $0 = fd }
        daemon.logger.notice("control socket \(path) (mode 0\(String(mode, radix: 8)))")
    }

    /// Starts the accept thread on the socket (bound now unless `openListener` did), with the clients taken
    /// before.
    package func start(_ daemon: MilterDaemon) throws {
        if listener.withLock({ $0 }) < 0 { try openListener(daemon) }
        let fd = listener.withLock { $0 }
        stopping.store(false, ordering: .relaxed)
        let t = PosixThread.start(stackSize: 256 << 10) { [self, weak daemon] in
            acceptLoop(fd: fd, daemon: daemon)
        }
        acceptThread.withLock { $0 = t }
    }

    /// Longest the loading thread spends writing one answer: one that does not fit the socket's buffer
    /// (a client that does not read, or a huge one) is cut there.
    static let inlineWriteTimeout = 0.02

    /// RELOAD requests kept while the first engine loads, to be served once it does.
    static let maxDeferredReloads = 2

    /// While the first engine loads, on the loading thread: takes new clients, reads their requests and
    /// answers them, by `deadline` give or take one answer; returns at once when nothing is waiting.
    package func serveWaiting(_ daemon: MilterDaemon, until deadline: Double) {
        let fd = listener.withLock { $0 }
        guard fd >= 0 else { return }
        var pending = beforeStart.withLock { b -> [Pending] in
            defer { b.pending = [] }
            return b.pending
        }
        var deferred: [Pending] = []
        let waiting = beforeStart.withLock { $0.deferred.count }
        for _ in 0..<ControlServer.maxPending {
            let active = turn(fd, &pending, wait: 0, daemon: daemon) { p in
                guard let kept = serveInline(p, daemon: daemon) else { return }
                // A reload that waits for the load loads the newest files when it runs: past
                // maxDeferredReloads waiting, one more would only load them again, and is answered now.
                if waiting + deferred.count < ControlServer.maxDeferredReloads {
                    deferred.append(kept)
                } else {
                    ControlServer.finish(
                        kept.fd,
                        ControlReply(
                            ok: false,
                            head:
                                "\(ControlServer.maxDeferredReloads) reloads already wait for the signatures being loaded; the first of them, once they are, loads the files as they are then"
                        ), writeTimeout: ControlServer.inlineWriteTimeout)
                }
            }
            if !active || Now.monotonic() >= deadline { break }
        }
        beforeStart.withLock {
            $0.pending = pending
            $0.deferred += deferred
        }
    }

    /// Answers a whole request on the loading thread; returns it, unanswered, when it waits for the
    /// engine (RELOAD: the accept thread serves it once the load is done, so it still answers with the
    /// generation it made).
    private func serveInline(_ p: Pending, daemon: MilterDaemon) -> Pending? {
        guard let request = authorized(p, daemon: daemon) else { return nil }
        if case .success(let r) = request, r.verb == "RELOAD" && r.argument.isEmpty { return p }
        let reply = answer(request, fd: p.fd, daemon: daemon)
        ControlServer.finish(p.fd, reply, writeTimeout: ControlServer.inlineWriteTimeout)
        return nil
    }

    package func stop() {
        stopping.store(true, ordering: .relaxed)
        let t = acceptThread.withLock { t -> PosixThread? in
            defer { t = nil }
            return t
        }
        t?.join()
        let fd = listener.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { close(fd) }
        let left = beforeStart.withLock { b -> [Pending] in
            defer { b = ([], []) }
            return b.pending + b.deferred
        }
        for p in left { close(p.fd) }
        // Remove the socket only if it is still ours (not one a newer daemon made meanwhile).
        var st = stat()
        let ino = socketFile.withLock { $0.ino }
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK, UInt64(st.st_ino) == ino { unlink(path) }
    }

    /// Binds the socket: a stale socket (nothing listening) is replaced; a live one or a file that is
    /// not a socket is an error, as is a missing directory.
    private func openSocket() throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw StartupError(
                    "control \(path): exists and is not a socket; remove it or set control to another path")
            }
            switch Result(catching: { () throws(ControlProtocol.ClientError) in
                try ControlProtocol.request("PING", socket: path, timeout: 2)
            }) {
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
            throw StartupError(
                "control \(path): the directory \(dir) does not exist (systemd's RuntimeDirectory= creates /run/breakwater; create it, set control to another path, or set control to nothing to turn the control socket off)"
            )
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StartupError("control \(path): socket: \(FileWalk.errnoString())") }
        // Bind with no permission for others, then open it up to `mode`: never wider than asked.
        let old = umask(0o177)
        let result = ControlProtocol.withAddress(path) { addr -> (Int32, Int32) in
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
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
        if lstat(path, &st) == 0 { socketFile.withLock { $0 = (UInt64(st.st_ino), UInt32(st.st_gid)) } }
        return fd
    }

    /// Connections still sending their request line, served by the accept thread with poll: a
    /// client that connects and sends nothing (or sends slowly) holds no thread and no handler slot,
    /// only one of `maxPending` entries until its `readTimeout`; when all are taken, the oldest
    /// (the slowest) is closed to make room, so a prompt client always gets in.
    package static let maxPending = 64
    /// Seconds a client has to take its whole answer once the handler is done.
    static let writeTimeout = 5.0

    private struct Pending {
        let fd: Int32
        let peer: ControlPeer?
        let deadline: Double
        var bytes: [UInt8] = []
    }

    /// At most one refusal log line a second, with the count of the ones not logged.
    private let refusals = Locked<(last: Double, suppressed: Int)>((-1e9, 0))

    private func acceptLoop(fd: Int32, daemon: MilterDaemon?) {
        var (pending, deferred) = beforeStart.withLock { b -> ([Pending], [Pending]) in
            defer { b = ([], []) }
            return b
        }
        defer { for p in pending + deferred { close(p.fd) } }
        if let daemon {
            for p in deferred { dispatch(p, daemon: daemon) }
            deferred = []
        }
        while !stopping.load(ordering: .relaxed) {
            guard let daemon else { break }
            turn(fd, &pending, wait: 0.2, daemon: daemon) { dispatch($0, daemon: daemon) }
        }
    }

    /// One turn of taking clients: waits up to `wait` seconds (less when a pending client's deadline
    /// comes first) for a new client or input; reads what the pending clients sent and hands each
    /// whole request (or ended input, or the most a request may have) to `serve`; closes those with no
    /// time left; takes one new client. True when anything was ready.
    @discardableResult
    private func turn(
        _ fd: Int32, _ pending: inout [Pending], wait: Double, daemon: MilterDaemon, serve: (Pending) -> Void
    ) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 1024)
        let now = Now.monotonic()
        var timeout = wait * 1000
        for p in pending { timeout = min(timeout, max(0, (p.deadline - now) * 1000) + 1) }
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        fds += pending.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let r = poll(&fds, nfds_t(fds.count), Int32(timeout))
        if r < 0 && errno != EINTR && wait > 0 { usleep(10_000) }
        // Read what the pending clients sent; finish those with a whole line, an error, or no time left.
        let after = Now.monotonic()
        var keep: [Pending] = []
        for (i, var p) in pending.enumerated() {
            var ended = false
            if r > 0 && fds[i + 1].revents != 0 {
                let want = min(chunk.count, ControlProtocol.maxRequest - p.bytes.count)
                let n = chunk.withUnsafeMutableBytes { recv(p.fd, $0.baseAddress, want, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    p.bytes += chunk[0..<n]
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    ended = true
                }
            }
            if ended || p.bytes.contains(10) || p.bytes.count >= ControlProtocol.maxRequest {
                serve(p)
            } else if after >= p.deadline {
                ControlServer.finish(
                    p.fd, ControlReply(ok: false, head: "no request line within \(Int(ControlServer.readTimeout)) s"))
            } else {
                keep.append(p)
            }
        }
        pending = keep
        guard r > 0, fds[0].revents & Int16(POLLIN) != 0 else { return r > 0 }
        let c = accept(fd, nil, nil)
        if c < 0 {
            if (errno == EMFILE || errno == ENFILE) && wait > 0 { usleep(100_000) }  // out of descriptors: do not spin
            return true
        }
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
        if pending.count >= ControlServer.maxPending {
            let oldest = pending.removeFirst()
            ControlServer.finish(
                oldest.fd,
                ControlReply(
                    ok: false,
                    head: "no request line in time (\(ControlServer.maxPending) control clients were waiting)"))
        }
        pending.append(
            Pending(
                fd: c, peer: ControlServer.peerCredentials(c), deadline: Now.monotonic() + ControlServer.readTimeout))
        return true
    }

    /// A pending client sent its line (or ended its input, or sent the most a request may have):
    /// refuse it, answer busy, or serve it on a thread of its own.
    private func dispatch(_ p: Pending, daemon: MilterDaemon) {
        guard let request = authorized(p, daemon: daemon) else { return }
        if connections.add(1, ordering: .relaxed).newValue > ControlServer.maxConnections {
            connections.subtract(1, ordering: .relaxed)
            ControlServer.finish(
                p.fd,
                ControlReply(
                    ok: false,
                    head: "busy: \(ControlServer.maxConnections) control requests are being served, try again"))
            return
        }
        let fd = p.fd
        let served = PosixThread.tryStart(stackSize: 512 << 10) { [self] in
            serve(fd, request: request, daemon: daemon)
            close(fd)
            connections.subtract(1, ordering: .relaxed)
        }
        switch served {
        case .success(let t): t.detach()
        case .failure(let e):
            // At the task limit: this request is refused, the daemon goes on.
            connections.subtract(1, ordering: .relaxed)
            ControlServer.finish(fd, ControlReply(ok: false, head: "busy: cannot start a thread (\(e)), try again"))
        }
    }

    /// The client's request, parsed, when it may make one; else answers the refusal, logs it, and
    /// returns nil.
    private func authorized(_ p: Pending, daemon: MilterDaemon) -> Result<ControlRequest, ControlRequestError>? {
        let daemonUID = UInt32(getuid())
        let socketGID = self.socketGID()
        guard let peer = p.peer, peer.allowed(daemonUID: daemonUID, socketGID: socketGID) else {
            logRefusal(p.peer, daemonUID: daemonUID, socketGID: socketGID, daemon: daemon)
            let why =
                p.peer?.refusal(daemonUID: daemonUID, socketGID: socketGID)
                ?? "permission denied: the client's credentials cannot be read"
            ControlServer.finish(p.fd, ControlReply(ok: false, head: why))
            return nil
        }
        return ControlProtocol.parseRequest(p.bytes)
    }

    /// The socket file's group now (an operator may have changed it), or the one it had when bound.
    private func socketGID() -> UInt32 {
        var st = stat()
        let file = socketFile.withLock { $0 }
        if lstat(path, &st) == 0, UInt64(st.st_ino) == file.ino { return UInt32(st.st_gid) }
        return file.gid
    }

    private func logRefusal(_ peer: ControlPeer?, daemonUID: UInt32, socketGID: UInt32, daemon: MilterDaemon) {
        let now = Now.monotonic()
        let more: Int? = refusals.withLock { r in
            if now - r.last < 1 {
                r.suppressed += 1
                return nil
            }
            defer { r = (now, 0) }
            return r.suppressed
        }
        guard let more else { return }
        let who =
            peer.map { "uid \($0.uid) gid \($0.gid) pid \($0.pid)" } ?? "a client whose credentials cannot be read"
        daemon.logger.warning(
            "control: refused \(who) on \(path): not root, uid \(daemonUID) or a member of group \(socketGID)\(more > 0 ? " (\(more) more refused since the last such line)" : "")"
        )
    }

    private func serve(_ fd: Int32, request: Result<ControlRequest, ControlRequestError>, daemon: MilterDaemon) {
        let reply = answer(request, fd: fd, daemon: daemon)
        ControlServer.send(fd, reply, deadline: Now.monotonic() + ControlServer.writeTimeout)
        ControlServer.lingeringClose(fd)
    }

    /// Runs the request's handler (logs a RELOAD).
    private func answer(_ request: Result<ControlRequest, ControlRequestError>, fd: Int32, daemon: MilterDaemon)
        -> ControlReply
    {
        let reply: ControlReply
        switch request {
        case .failure(let why):
            reply = ControlReply(ok: false, head: why.description)
        case .success(let request):
            let verb = request.verb
            let argument = request.argument
            if verb == "RELOAD" {
                daemon.logger.notice(
                    "control: RELOAD\(argument.isEmpty ? "" : " " + Escape.text(argument)) from \(ControlServer.peer(fd))"
                )
            }
            if let h = handlers.withLock({ list in list.first { $0.verb == verb }?.handler }) {
                reply = h(argument, daemon)
            } else {
                let line = argument.isEmpty ? verb : verb + " " + argument
                reply = ControlReply(ok: false, head: "unknown request '\(String(line.prefix(64)))': try HELP")
            }
        }
        return reply
    }

    /// Answers from the accept thread (a refusal, busy, a timeout: short answers that fit the socket's
    /// buffer) or the loading thread, and closes, never waiting long.
    static func finish(_ fd: Int32, _ reply: ControlReply, writeTimeout: Double = 0.05) {
        send(fd, reply, deadline: Now.monotonic() + writeTimeout)
        shutdown(fd, Int32(SHUT_WR))
        var buf = [UInt8](repeating: 0, count: 4096)
        _ = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        close(fd)
    }

    /// Ends the answer, then reads and drops what the client still sends (a request too long, for
    /// one), briefly: closing with unread input would reset the connection and lose the answer.
    static func lingeringClose(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        var buf = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        let deadline = Now.monotonic() + 0.5
        while drained < 1 << 20 && Now.monotonic() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) <= 0 { break }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            drained += n
        }
    }

    /// Writes the whole answer by `deadline` (a monotonic time), or gives up: a client that does not
    /// read holds its thread no longer than that.
    static func send(_ fd: Int32, _ reply: ControlReply, deadline: Double) {
        var text = reply.rendered
        text.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.send(fd, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                if n >= 0 {
                    off += n
                    continue
                }
                if errno == EINTR { continue }
                guard errno == EAGAIN else { return }
                let left = deadline - Now.monotonic()
                if left <= 0 { return }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, Int32(min(left, 1) * 1000) + 1)
            }
        }
    }

    /// `uid U pid P` of the client (SO_PEERCRED), for the log.
    static func peer(_ fd: Int32) -> String {
        guard let p = peerCredentials(fd) else { return "an unknown client" }
        return "uid \(p.uid) pid \(p.pid)"
    }

    /// SO_PEERGROUPS (Linux 4.13): the peer's supplementary groups as they were at connect(). The Glibc
    /// module does not export the constant.
    static let soPeerGroups: Int32 = 59

    /// The client's credentials as of its connect(): SO_PEERCRED for pid, uid and gid, SO_PEERGROUPS
    /// for the supplementary groups (/proc/PID/status where that is missing). All are seen in the
    /// daemon's user namespace (under systemd's PrivateUsers=, ids it does not map read as 65534).
    static func peerCredentials(_ fd: Int32) -> ControlPeer? {
        // struct ucred (pid, uid, gid); Glibc's module map leaves it out (it needs _GNU_SOURCE).
        struct PeerCredentials { var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0 }
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return nil }
        var groups = [UInt32](repeating: 0, count: 64)
        var glen = socklen_t(groups.count * 4)
        var rc = groups.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, soPeerGroups, $0.baseAddress, &glen) }
        if rc != 0 && errno == ERANGE && glen <= 65536 * 4 {
            groups = [UInt32](repeating: 0, count: Int(glen) / 4 + 1)
            glen = socklen_t(groups.count * 4)
            rc = groups.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, soPeerGroups, $0.baseAddress, &glen) }
        }
        if rc == 0 {
            groups = Array(groups.prefix(Int(glen) / 4))
        } else {
            groups = procGroups(cred.pid) ?? []
        }
        return ControlPeer(pid: cred.pid, uid: cred.uid, gid: cred.gid, groups: groups)
    }

    private static func procGroups(_ pid: Int32) -> [UInt32]? {
        guard pid > 0 else { return nil }
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16384)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return ControlPeer.groups(inStatus: String(decoding: bytes[0..<n], as: UTF8.self))
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
        register(
            "STATUS", help: "STATUS [JSON|TEXT]: the daemon's status as one JSON object (default) or as text lines"
        ) { argument, daemon in
            let report = StatusReport(daemon: daemon)
            switch argument.uppercased() {
            case "", "JSON": return ControlReply(ok: true, head: "", body: [report.json.rendered])
            case "TEXT": return ControlReply(ok: true, head: "", body: report.text)
            default:
                return ControlReply(
                    ok: false, head: "STATUS takes JSON or TEXT, not '\(ControlProtocol.oneLine(argument))'")
            }
        }
        register(
            "RELOAD",
            help:
                "RELOAD [NOWAIT]: reloads the signatures; answers once the new engine serves (OK generation N signatures M) or failed (ERR why)"
        ) { [weak self] argument, daemon in
            let timeout = self?.reloadTimeout ?? 600
            switch argument.uppercased() {
            case "": break
            case "NOWAIT":
                daemon.engines.triggerReload()
                return ControlReply(ok: true, head: "reload started")
            default:
                return ControlReply(
                    ok: false, head: "RELOAD takes nothing or NOWAIT, not '\(ControlProtocol.oneLine(argument))'")
            }
            let ticket = daemon.engines.triggerReload()
            let done = daemon.engines.waitForAttempt(ticket, timeout: timeout) {
                self?.stopping.load(ordering: .relaxed) ?? true
            }
            let s = daemon.engines.status
            guard done else {
                return ControlReply(
                    ok: false,
                    head:
                        "the reload did not finish within \(Int(timeout)) s; still serving generation \(s.generation) (see STATUS)"
                )
            }
            if s.lastSucceeded {
                return ControlReply(
                    ok: true,
                    head:
                        "generation \(s.generation) signatures \(s.signatures) ms \(Int((s.buildSeconds * 1000).rounded()))"
                )
            }
            return ControlReply(
                ok: false,
                head:
                    "reload failed, still serving generation \(s.generation) (\(s.signatures) signatures): \(s.lastError ?? "unknown error")"
            )
        }
    }
}

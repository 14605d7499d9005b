#if canImport(Glibc)
import Glibc
#endif

/// The control socket's line protocol (documented in breakwater(8), CONTROL SOCKET).
///
/// A client connects to the unix socket, writes one request line (`VERB [ARGUMENT]`, at most
/// `maxRequest` bytes with its `\n`), and reads the answer until the daemon closes the connection:
/// a first line `OK [text]` or `ERR text`, then the body lines, if any. One request per connection.
package enum ControlProtocol {
    package static let maxRequest = 4096

    /// An answer as the client reads it.
    package struct Response: Sendable, Equatable {
        package var ok: Bool
        /// The first line without `OK `/`ERR `.
        package var head: String
        package var body: [String]

        package init(ok: Bool, head: String, body: [String] = []) {
            self.ok = ok
            self.head = head
            self.body = body
        }

        /// The answer as the daemon writes it.
        package var rendered: String {
            var s = ok ? "OK" : "ERR"
            if !head.isEmpty { s += " " + ControlProtocol.oneLine(head) }
            s += "\n"
            for l in body { s += ControlProtocol.oneLine(l) + "\n" }
            return s
        }

        package static func parse(_ text: String) -> Response? {
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            guard let first = lines.first else { return nil }
            let body = Array(lines.dropFirst())
            // Compared as bytes: a head starting with a combining mark makes one Character of it and
            // the blank before it, so `hasPrefix("OK ")` would not see the blank.
            for (ok, word) in [(true, "OK"), (false, "ERR")] where first.utf8.starts(with: word.utf8) {
                let rest = first.utf8.dropFirst(word.utf8.count)
                if rest.isEmpty { return Response(ok: ok, head: "", body: body) }
                if rest.first == UInt8(ascii: " ") {
                    return Response(ok: ok, head: String(decoding: rest.dropFirst(), as: UTF8.self), body: body)
                }
            }
            return nil
        }
    }

    /// Why a request did not get an answer.
    package enum ClientError: Error, CustomStringConvertible, Sendable {
        /// Nothing listens on the socket: the daemon is not running (or runs with another `control`).
        case notRunning(String)
        case failed(String)

        package var description: String {
            switch self {
            case .notRunning(let s), .failed(let s): return s
            }
        }
    }

    /// Longest request argument (the text after the verb), in bytes.
    package static let maxArgument = 1024
    /// Longest verb; every verb is ASCII letters only.
    package static let maxVerb = 32

    /// Parses what a client sent: the request is the bytes up to the first `\n` (an optional `\r`
    /// before it is dropped), or all of `bytes` when there is no `\n` (the client ended its input).
    /// Pure: no I/O, no state, any bytes (the fuzz target calls it directly).
    ///
    /// The line is at most `maxRequest` bytes with its `\n`, UTF-8 without NUL, C0/C1 controls or DEL;
    /// the verb is ASCII letters (at most `maxVerb`), matched without regard to case and returned in
    /// upper case; the argument is the rest, without surrounding spaces, at most `maxArgument` bytes.
    /// Whether the verb exists and what its argument may be is the handler's business.
    package static func parseRequest(_ bytes: [UInt8]) -> Result<ControlRequest, ControlRequestError> {
        let nl = bytes.firstIndex(of: 10)
        // With its `\n` the line must fit `maxRequest`: so must one the client ended without it.
        let lineLength = nl.map { $0 + 1 } ?? bytes.count + 1
        guard lineLength <= maxRequest else {
            return .failure(ControlRequestError("request too long (at most \(maxRequest) bytes)"))
        }
        var line = bytes[..<(nl ?? bytes.count)]
        if line.last == 13 { line = line.dropLast() }
        guard let text = String(validating: line, as: UTF8.self) else {
            return .failure(ControlRequestError("the request is not a line of UTF-8 text"))
        }
        if let bad = text.unicodeScalars.first(where: isControl) {
            return .failure(
                ControlRequestError(
                    "the request contains a control character (\(Escape.text(String(bad)))): one line of printable text"
                ))
        }
        let trimmed = text.trimmed
        guard !trimmed.isEmpty else { return .failure(ControlRequestError("empty request: try HELP")) }
        let parts = trimmed.split(separator: " ", maxSplits: 1)
        let verb = String(parts[0])
        guard verb.utf8.count <= maxVerb,
            verb.utf8.allSatisfy({ ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") })
        else {
            return .failure(ControlRequestError("unknown request '\(String(verb.prefix(maxVerb)))': try HELP"))
        }
        let argument = parts.count > 1 ? parts[1].trimmed : ""
        guard argument.utf8.count <= maxArgument else {
            return .failure(
                ControlRequestError("the argument of \(verb.uppercased()) is longer than \(maxArgument) bytes"))
        }
        return .success(ControlRequest(verb: verb.uppercased(), argument: argument))
    }

    /// C0 controls (tab included), DEL and C1 controls: never in a request, never echoed raw.
    package static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (u.value >= 0x7f && u.value <= 0x9f)
    }

    /// Replaces line breaks, which would end the line early.
    package static func oneLine(_ s: String) -> String {
        guard s.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return s }
        return String(s.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }

    /// Fills a `sockaddr_un` for `path`; nil when the path is too long for one.
    package static func address(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return addr
    }

    /// Runs `body` with a `sockaddr_un` for `path`. A path too long for `sun_path` (108 bytes) is
    /// reached through its directory: `/proc/self/fd/N/NAME`, N a descriptor of the directory, which the
    /// kernel resolves to the same place. nil when even that does not fit or the directory cannot be
    /// opened.
    package static func withAddress<T>(_ path: String, _ body: (inout sockaddr_un) -> T) -> T? {
        if var addr = address(path) { return body(&addr) }
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let dir = String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { return nil }
        defer { close(dfd) }
        guard var addr = address("/proc/self/fd/\(dfd)/\(name)") else { return nil }
        return body(&addr)
    }

    /// Sends one request and reads the whole answer, waiting up to `timeout` seconds for it.
    package static func request(_ line: String, socket path: String, timeout: Double) throws(ClientError) -> Response {
        guard !path.isEmpty else { throw .notRunning("the control socket is turned off (control is empty)") }
        guard !line.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else {
            throw .failed("the request contains a line break: '\(Escape.text(line.prefix(80)))'")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failed("socket: \(FileWalk.errnoString())") }
        defer { close(fd) }
        let result = withAddress(path) { addr -> (Int32, Int32) in
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            return (rc, errno)
        }
        guard let (rc, connectErrno) = result else {
            if access(path, F_OK) != 0 && errno == ENOENT { throw .notRunning("no daemon: \(path) does not exist") }
            throw .failed("control socket path too long: \(path)")
        }
        if rc != 0 {
            let e = connectErrno
            switch e {
            case ENOENT: throw .notRunning("no daemon: \(path) does not exist")
            case ECONNREFUSED: throw .notRunning("no daemon listens on \(path)")
            case EACCES, EPERM:
                throw .failed("\(path): permission denied (run as root or as the service's user or group)")
            default: throw .failed("cannot connect to \(path): \(FileWalk.errnoString(e))")
            }
        }
        var request = line + "\n"
        let sent: Bool = request.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = send(fd, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
        // A daemon that refuses (busy) may answer and close before the request is written: read anyway.
        if !sent && errno != EPIPE && errno != ECONNRESET {
            throw .failed("cannot send to \(path): \(FileWalk.errnoString())")
        }
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        let deadline = Now.monotonic() + timeout
        while true {
            let left = deadline - Now.monotonic()
            if left <= 0 { throw .failed("no answer from \(path) within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1) * 1000) + 1)
            if r < 0 {
                if errno == EINTR { continue }
                throw .failed("poll: \(FileWalk.errnoString())")
            }
            if r == 0 { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == ECONNRESET && !answer.isEmpty { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw .failed("cannot read from \(path): \(FileWalk.errnoString())")
            }
            if n == 0 { break }
            answer += buf[0..<n]
            if answer.count > 64 << 20 { throw .failed("answer from \(path) too large") }
        }
        guard let response = Response.parse(String(decoding: answer, as: UTF8.self)) else {
            throw .failed("unexpected answer from \(path): \(String(decoding: answer.prefix(200), as: UTF8.self))")
        }
        return response
    }
}

/// A request of the control socket that passed `ControlProtocol.parseRequest`.
package struct ControlRequest: Sendable, Equatable {
    /// ASCII letters, upper case.
    package var verb: String
    /// The rest of the line without surrounding spaces; printable text, at most `maxArgument` bytes.
    package var argument: String

    package init(verb: String, argument: String) {
        self.verb = verb
        self.argument = argument
    }
}

/// Why a request line was refused; the text is the answer's `ERR` line (it never echoes a control
/// character).
package struct ControlRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    package let description: String
    package init(_ d: String) { description = d }
}

/// Who may use the control socket: root, the daemon's own user, or a member of the socket file's
/// group (by the peer's primary group or a supplementary one). The file's mode (`control-mode`) is a
/// first gate; this one holds even when the mode is wider than it should be.
package struct ControlPeer: Sendable, Equatable {
    package var pid: Int32
    package var uid: UInt32
    package var gid: UInt32
    /// Supplementary groups (SO_PEERGROUPS); may include `gid`.
    package var groups: [UInt32]

    package init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    package func allowed(daemonUID: UInt32, socketGID: UInt32) -> Bool {
        uid == 0 || uid == daemonUID || gid == socketGID || groups.contains(socketGID)
    }

    /// The `ERR` text a refused peer gets.
    package func refusal(daemonUID: UInt32, socketGID: UInt32) -> String {
        "permission denied: uid \(uid) is not root, the daemon's user (uid \(daemonUID)) or a member of the control socket's group (gid \(socketGID))"
    }

    /// The `Groups:` line of /proc/PID/status (a fallback where SO_PEERGROUPS is missing).
    package static func groups(inStatus text: String) -> [UInt32]? {
        for line in text.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap {
                UInt32($0)
            }
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The control socket's line protocol (documented in README.md, "Signature operations").
///
/// A client connects to the unix socket, writes one request line (`VERB [ARGUMENT]`, at most
/// `maxRequest` bytes with its `\n`), and reads the answer until the daemon closes the connection:
/// a first line `OK [text]` or `ERR text`, then the body lines, if any. One request per connection.
public enum ControlProtocol {
    public static let maxRequest = 4096

    /// An answer as the client reads it.
    public struct Response: Sendable, Equatable {
        public var ok: Bool
        /// The first line without `OK `/`ERR `.
        public var head: String
        public var body: [String]

        public init(ok: Bool, head: String, body: [String] = []) {
            self.ok = ok
            self.head = head
            self.body = body
        }

        /// The answer as the daemon writes it.
        public var rendered: String {
            var s = ok ? "OK" : "ERR"
            if !head.isEmpty { s += " " + ControlProtocol.oneLine(head) }
            s += "\n"
            for l in body { s += ControlProtocol.oneLine(l) + "\n" }
            return s
        }

        public static func parse(_ text: String) -> Response? {
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
    public enum ClientError: Error, CustomStringConvertible, Sendable {
        /// Nothing listens on the socket: the daemon is not running (or runs with another `control`).
        case notRunning(String)
        case failed(String)

        public var description: String {
            switch self {
            case .notRunning(let s), .failed(let s): return s
            }
        }
    }

    /// Why a request line is refused.
    public struct RequestError: Error, CustomStringConvertible, Sendable, Equatable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// The request line in what a client sent so far (the server reads into `bytes` until this is not
    /// nil): nil while no LF has come and there are fewer than `maxRequest` bytes; else the line
    /// without its LF or CR LF, or why it is not one (too long, a NUL, not UTF-8). Pure, for the fuzzer.
    public static func requestLine(_ bytes: [UInt8]) -> Result<String, RequestError>? {
        if let nl = bytes.firstIndex(of: 10) {
            var line = Array(bytes[..<nl])
            if line.last == 13 { line.removeLast() }
            guard !line.contains(0), let s = String(validating: line, as: UTF8.self) else {
                return .failure(RequestError("the request is not a line of UTF-8 text"))
            }
            return .success(s)
        }
        if bytes.count >= maxRequest {
            return .failure(RequestError("request too long (at most \(maxRequest) bytes)"))
        }
        return nil
    }

    /// A request line's verb (upper-cased) and its argument (trimmed; empty when there is none).
    public static func split(_ line: String) -> (verb: String, argument: String) {
        let parts = line.trimmed.split(separator: " ", maxSplits: 1)
        return (parts.first.map { $0.uppercased() } ?? "", parts.count > 1 ? parts[1].trimmed : "")
    }

    /// Replaces line breaks, which would end the line early.
    public static func oneLine(_ s: String) -> String {
        guard s.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return s }
        return String(s.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }

    /// Fills a `sockaddr_un` for `path`; nil when the path is too long for one.
    public static func address(_ path: String) -> sockaddr_un? {
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
    public static func withAddress<T>(_ path: String, _ body: (inout sockaddr_un) -> T) -> T? {
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
    public static func request(_ line: String, socket path: String, timeout: Double) throws(ClientError) -> Response {
        guard !path.isEmpty else { throw .notRunning("the control socket is turned off (control is empty)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failed("socket: \(FileWalk.errnoString())") }
        defer { close(fd) }
        let result = withAddress(path) { addr -> (Int32, Int32) in
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
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
            case EACCES, EPERM: throw .failed("\(path): permission denied (run as root or as the service's user or group)")
            default: throw .failed("cannot connect to \(path): \(FileWalk.errnoString(e))")
            }
        }
        var request = line + "\n"
        let sent: Bool = request.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = send(fd, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
        // A daemon that refuses (busy) may answer and close before the request is written: read anyway.
        if !sent && errno != EPIPE && errno != ECONNRESET { throw .failed("cannot send to \(path): \(FileWalk.errnoString())") }
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        let deadline = Clock.monotonic() + timeout
        while true {
            let left = deadline - Clock.monotonic()
            if left <= 0 { throw .failed("no answer from \(path) within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1) * 1000) + 1)
            if r < 0 { if errno == EINTR { continue }; throw .failed("poll: \(FileWalk.errnoString())") }
            if r == 0 { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == ECONNRESET && !answer.isEmpty { break }
            if n < 0 { if errno == EINTR { continue }; throw .failed("cannot read from \(path): \(FileWalk.errnoString())") }
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

import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP answer. The endpoint adds Content-Length and `Connection: close`.
package struct HTTPResponse: Sendable {
    package var status: Int
    package var reason: String
    package var contentType: String
    package var body: [UInt8]
    package var headers: [(String, String)]

    package init(
        status: Int, reason: String, contentType: String = "text/plain; charset=utf-8", body: [UInt8],
        headers: [(String, String)] = []
    ) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    package static func text(_ status: Int, _ reason: String, _ body: String, headers: [(String, String)] = [])
        -> HTTPResponse
    {
        HTTPResponse(status: status, reason: reason, body: Array(body.utf8), headers: headers)
    }

    /// The status line, headers and body as sent.
    package var serialized: [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// A deliberately small HTTP/1.x listener for the metrics endpoint: one thread that serves up to
/// `maxConnections` connections at once with poll, each with a bounded request head and one deadline
/// for the whole exchange (head read, answer written), one answer, then close. Requests whose Host
/// does not name the endpoint get 421 (`hostAllowed`). It shares nothing with the scanning path but
/// the handler it calls, so a slow or hostile client never delays another scrape. Before the thread
/// starts, `serveWaiting` serves the same way on the caller's thread, without waiting.
package final class HTTPEndpoint: @unchecked Sendable {
    package let address: ListenAddress
    /// Largest request head (request line and headers) read; a longer one gets 431.
    package let maxRequestBytes: Int
    /// Seconds a connection may last: its request head and the answer within that (408 after, if the
    /// head had started).
    package let timeout: Double
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse

    // Set in openListener(), read by the server thread, torn down in stop() after the thread has ended.
    private var listenFD: Int32 = -1
    private var wakeFDs: (read: Int32, write: Int32) = (-1, -1)
    private var thread: PosixThread?
    /// Connections taken by `serveWaiting` before the thread started; the thread takes them over.
    private var beforeStart: [Connection] = []
    /// The port actually bound (differs from `address.port` when that is 0).
    package private(set) var port: UInt16 = 0

    package init(
        address: ListenAddress, maxRequestBytes: Int = 8192, timeout: Double = 5,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) {
        self.address = address
        self.maxRequestBytes = maxRequestBytes
        self.timeout = timeout
        self.handler = handler
    }

    package struct BindError: Error, CustomStringConvertible {
        package let description: String
    }

    /// Binds, listens and starts the server thread (binds unless `openListener` did).
    package func start() throws(BindError) {
        if listenFD < 0 { try openListener() }
        thread = PosixThread.start(stackSize: 512 << 10) { [self] in serve() }
    }

    /// Binds and listens; nothing is served until `serveWaiting` or `start`.
    package func openListener() throws(BindError) {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(
            family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw BindError(description: "metrics \(address): socket: \(FileWalk.errnoString())") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if address.isIPv6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: address.address) }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.address) }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if rc != 0 || listen(fd, 16) != 0 {
            let err = FileWalk.errnoString()
            close(fd)
            throw BindError(
                description:
                    "metrics: cannot listen on \(address): \(err) (is something else on that port? set metrics to another address, or empty to turn it off)"
            )
        }
        var bound = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = withUnsafePointer(to: &bound) { p in
            address.isIPv6
                ? p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                : p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            close(fd)
            throw BindError(description: "metrics: pipe: \(FileWalk.errnoString())")
        }
        for p in pipeFDs { HTTPEndpoint.setFlags(p) }
        listenFD = fd
        wakeFDs = (pipeFDs[0], pipeFDs[1])
    }

    /// Ends the server thread (a connection in progress is dropped) and closes the socket.
    package func stop() {
        if let t = thread {
            var b: UInt8 = 1
            _ = write(wakeFDs.write, &b, 1)
            t.join()
            thread = nil
        }
        guard listenFD >= 0 else { return }
        for c in beforeStart { close(c.fd) }
        beforeStart = []
        close(listenFD)
        close(wakeFDs.read)
        close(wakeFDs.write)
        listenFD = -1
        wakeFDs = (-1, -1)
    }

    /// Close-on-exec and non-blocking (accept4 and pipe2 are not in Swift's Glibc module).
    private static func setFlags(_ fd: Int32) {
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    // MARK: server thread

    /// One client: reading its head, then writing its answer, then (when it sent more than the head)
    /// draining briefly before the close, all by its own deadline.
    private struct Connection {
        let fd: Int32
        /// Monotonic time by which the whole exchange ends (`timeout` after accept): a slow-loris
        /// client loses its connection then, whatever it still sends.
        let deadline: Double
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var draining = false
        var unreadInput = false
        var writing: Bool { !output.isEmpty && !draining }
    }

    /// Most connections served at once; past it the oldest (the slowest) is dropped for the new one.
    package static let maxConnections = 64

    /// One thread serves every connection with poll: each reads its head and writes its answer
    /// without waiting for the others, so a stalled client delays no scrape.
    private func serve() {
        var conns = beforeStart
        beforeStart = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer { for c in conns { close(c.fd) } }
        while turn(&conns, chunk: &chunk, wait: 60) != nil {}
    }

    /// Before the thread starts (the daemon's first engine loads): serves what is waiting on the
    /// caller's thread without waiting (answers are written as far as the socket takes them; the rest
    /// goes on at the next call, or on the thread), until `deadline` (monotonic) or nothing is ready.
    package func serveWaiting(until deadline: Double) {
        guard listenFD >= 0, thread == nil else { return }
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<HTTPEndpoint.maxConnections {
            guard turn(&beforeStart, chunk: &chunk, wait: 0) == true, Now.monotonic() < deadline else { break }
        }
    }

    /// One turn: waits up to `wait` seconds (less when a connection's deadline comes first) for a new
    /// connection or a ready one, moves the ready ones on, ends those out of time and takes one new
    /// connection. True when anything was ready, false when not, nil when the endpoint stops.
    private func turn(_ conns: inout [Connection], chunk: inout [UInt8], wait: Double) -> Bool? {
        let now = Now.monotonic()
        var waitMS = wait * 1000
        for c in conns { waitMS = min(waitMS, max(0, (c.deadline - now) * 1000) + 1) }
        var fds = [
            pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeFDs.read, events: Int16(POLLIN), revents: 0),
        ]
        fds += conns.map { pollfd(fd: $0.fd, events: Int16($0.writing ? POLLOUT : POLLIN), revents: 0) }
        let n = poll(&fds, nfds_t(fds.count), Int32(waitMS))
        if n < 0 {
            return errno == EINTR ? false : nil
        }
        if fds[1].revents != 0 { return nil }
        let after = Now.monotonic()
        var keep: [Connection] = []
        for (i, var c) in conns.enumerated() {
            if fds[i + 2].revents != 0 && step(&c, chunk: &chunk) == false {
                close(c.fd)
            } else if after >= c.deadline {
                // Out of time: a head that never ended gets 408 if it started; then close.
                if !c.writing && !c.draining && !c.input.isEmpty {
                    let r = HTTPResponse.text(408, "Request Timeout", "request not received in time\n").serialized
                    _ = r.withUnsafeBytes {
                        Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                    // Drop what it sent meanwhile: closing with unread input would reset the
                    // connection and could lose the 408.
                    shutdown(c.fd, Int32(SHUT_WR))
                    _ = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                }
                close(c.fd)
            } else {
                keep.append(c)
            }
        }
        conns = keep
        guard fds[0].revents & Int16(POLLIN) != 0 else { return n > 0 }
        let client = accept(listenFD, nil, nil)
        if client < 0 {
            switch errno {
            case EAGAIN, EINTR, ECONNABORTED, EPROTO: break
            default: if wait > 0 { usleep(100_000) }  // out of descriptors or memory: back off, do not spin
            }
            return true
        }
        HTTPEndpoint.setFlags(client)
        if conns.count >= HTTPEndpoint.maxConnections { close(conns.removeFirst().fd) }
        conns.append(Connection(fd: client, deadline: Now.monotonic() + timeout))
        return true
    }

    /// Moves one connection on after poll said it is ready; false when it is done (close it).
    private func step(_ c: inout Connection, chunk: inout [UInt8]) -> Bool {
        if c.draining {
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))
        }
        if c.writing {
            let n = c.output.withUnsafeBytes {
                Glibc.send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_NOSIGNAL))
            }
            if n < 0 { return errno == EAGAIN || errno == EINTR }
            c.written += n
            guard c.written == c.output.count else { return true }
            shutdown(c.fd, Int32(SHUT_WR))
            // Closing with unread input would reset the connection before the client read the answer:
            // read and drop what it still sends, briefly (the deadline still holds).
            guard c.unreadInput else { return false }
            c.draining = true
            return true
        }
        let want = min(chunk.count, maxRequestBytes + 1 - c.input.count)
        let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, want, 0) }
        if n < 0 { return errno == EAGAIN || errno == EINTR }
        if n == 0 { return false }  // closed before a whole request head: nothing to answer
        c.input.append(contentsOf: chunk[0..<n])
        let response: HTTPResponse
        switch HTTPRequest.parse(c.input, maxHeadBytes: maxRequestBytes) {
        case .incomplete: return true
        case .failure(let r):
            response = r
            c.unreadInput = true
        case .request(let request, let headLength):
            c.unreadInput = headLength < c.input.count
            if HTTPEndpoint.hostAllowed(request.host, version: request.version, listen: address) {
                response = handler(request)
            } else {
                response = .text(
                    421, "Misdirected Request",
                    "the Host header must name this endpoint: \(address), localhost or a loopback address\n")
            }
        }
        c.input = []
        c.output = response.serialized
        return step(&c, chunk: &chunk)
    }

    // MARK: Host

    /// Whether a request's Host header names this endpoint, so that a page a browser on this host
    /// loaded from another site cannot read the metrics through a name that resolves to it (DNS
    /// rebinding). Allowed: `localhost`, a loopback address (127.0.0.0/8, ::1, ::ffff:127.x), the
    /// address the endpoint listens on, and, when it listens on every address (0.0.0.0 or ::), any IP
    /// literal (a rebinding page always uses a name); each with or without `:PORT`, IPv6 in brackets.
    /// A request without Host is allowed for HTTP/1.0 only (browsers always send one; HTTP/1.1
    /// requires it). Pure.
    package static func hostAllowed(_ host: String?, version: String, listen: ListenAddress) -> Bool {
        guard let host else { return version == "HTTP/1.0" }
        var name = Substring(host)
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            let rest = name[name.index(after: close)...]
            guard rest.isEmpty || validPort(rest) else { return false }
            name = name[name.index(after: name.startIndex)..<close]
            guard let bytes = CIDR.parseAddress(String(name)), bytes.count == 16 else { return false }
            return addressAllowed(bytes, listen: listen)
        }
        if let colon = name.lastIndex(of: ":") {
            guard validPort(name[colon...]) else { return false }
            name = name[..<colon]
        }
        if name.lowercased() == "localhost" { return true }
        // Dotted decimal only: inet_pton takes nothing else for IPv4, and an IPv6 literal needs brackets.
        guard name.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 46 }),
            let bytes = CIDR.parseAddress(String(name)), bytes.count == 4
        else { return false }
        return addressAllowed(bytes, listen: listen)
    }

    /// `:` and 1 to 5 digits, at most 65535.
    private static func validPort(_ s: Substring) -> Bool {
        guard s.first == ":" else { return false }
        let digits = s.dropFirst()
        guard (1...5).contains(digits.count), digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let p = Int(digits)
        else { return false }
        return p <= 65535
    }

    private static func addressAllowed(_ a: [UInt8], listen: ListenAddress) -> Bool {
        if a == listen.address || listen.address.allSatisfy({ $0 == 0 }) { return true }
        if a.count == 4 { return a[0] == 127 }
        if a == [UInt8](repeating: 0, count: 15) + [1] { return true }
        return a[0..<10].allSatisfy { $0 == 0 } && a[10] == 0xff && a[11] == 0xff && a[12] == 127
    }
}

package struct HTTPResponseError: Error, Sendable {
    package let response: HTTPResponse
}

import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP answer. The endpoint adds Content-Length and `Connection: close`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var reason: String
    public var contentType: String
    public var body: [UInt8]
    public var headers: [(String, String)]

    public init(status: Int, reason: String, contentType: String = "text/plain; charset=utf-8", body: [UInt8],
                headers: [(String, String)] = []) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    public static func text(_ status: Int, _ reason: String, _ body: String, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, reason: reason, body: Array(body.utf8), headers: headers)
    }

    /// The status line, headers and body as sent.
    public var serialized: [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// A deliberately small HTTP/1.x listener for the metrics endpoint: one thread, one connection at a
/// time, a bounded request head read within a deadline, one answer, then close. It shares nothing with
/// the scanning path but the handler it calls, so a slow or hostile client only ever delays a scrape.
public final class HTTPEndpoint: @unchecked Sendable {
    public let address: ListenAddress
    /// Largest request head (request line and headers) read; a longer one gets 431.
    public let maxRequestBytes: Int
    /// Seconds a client has to send its request head (408 after), and to take the answer.
    public let timeout: Double
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse

    // Set in start(), read by the server thread, torn down in stop() after the thread has ended.
    private var listenFD: Int32 = -1
    private var wakeFDs: (read: Int32, write: Int32) = (-1, -1)
    private var thread: Thread?
    /// The port actually bound (differs from `address.port` when that is 0).
    public private(set) var port: UInt16 = 0

    public init(address: ListenAddress, maxRequestBytes: Int = 8192, timeout: Double = 5,
                handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        self.address = address
        self.maxRequestBytes = maxRequestBytes
        self.timeout = timeout
        self.handler = handler
    }

    public struct BindError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Binds, listens and starts the server thread.
    public func start() throws(BindError) {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
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
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.address) }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        if rc != 0 || listen(fd, 16) != 0 {
            let err = FileWalk.errnoString()
            close(fd)
            throw BindError(description: "metrics: cannot listen on \(address): \(err) (is something else on that port? set metrics to another address, or empty to turn it off)")
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
        thread = Thread.start(stackSize: 512 << 10) { [self] in serve() }
    }

    /// Ends the server thread (a connection in progress is dropped) and closes the socket.
    public func stop() {
        guard let t = thread else { return }
        var b: UInt8 = 1
        _ = write(wakeFDs.write, &b, 1)
        t.join()
        thread = nil
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

    private func serve() {
        while true {
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeFDs.read, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, -1)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) == 0 { continue }
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                switch errno {
                case EAGAIN, EINTR, ECONNABORTED, EPROTO: continue
                default: usleep(100_000)  // out of descriptors or memory: back off, do not spin
                }
                continue
            }
            HTTPEndpoint.setFlags(client)
            if !handle(client) { close(client); return }
            close(client)
        }
    }

    private enum Wait { case ready, timedOut, stopping }

    /// Waits for `events` on `fd` until the monotonic `deadline`, or until stop().
    private func wait(_ fd: Int32, _ events: Int32, until deadline: Double) -> Wait {
        while true {
            let left = deadline - Clock.monotonic()
            if left <= 0 { return .timedOut }
            var fds = [pollfd(fd: fd, events: Int16(events), revents: 0),
                       pollfd(fd: wakeFDs.read, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, Int32(min(left * 1000 + 1, 60_000)))
            if n < 0 {
                if errno == EINTR { continue }
                return .stopping
            }
            if fds[1].revents != 0 { return .stopping }
            if fds[0].revents != 0 { return .ready }
        }
    }

    /// Serves one connection; false when the endpoint is stopping.
    private func handle(_ fd: Int32) -> Bool {
        let deadline = Clock.monotonic() + timeout
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1024)
        var chunk = [UInt8](repeating: 0, count: 2048)
        var response: HTTPResponse?
        var complete = false
        while response == nil && !complete {
            switch wait(fd, POLLIN, until: deadline) {
            case .stopping: return false
            case .timedOut:
                if buffer.isEmpty { return true }  // connected and said nothing: just close
                response = .text(408, "Request Timeout", "request not received in time\n")
                continue
            case .ready: break
            }
            let want = min(chunk.count, maxRequestBytes + 1 - buffer.count)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return true
            }
            if n == 0 { return true }  // closed before a whole request head: nothing to answer
            let scanFrom = max(0, buffer.count - 3)
            buffer.append(contentsOf: chunk[0..<n])
            if HTTPRequest.headEnd(buffer, from: scanFrom) != nil {
                complete = true
            } else if buffer.count > maxRequestBytes {
                response = .text(431, "Request Header Fields Too Large", "request head larger than \(maxRequestBytes) bytes\n")
            }
        }
        let unreadInput: Bool
        if let r = response {
            unreadInput = true
            send(fd, r, deadline: deadline)
        } else {
            let end = HTTPRequest.headEnd(buffer, from: 0)!
            unreadInput = end < buffer.count
            switch HTTPRequest.parse(head: buffer[..<end]) {
            case .failure(let e): send(fd, e.response, deadline: deadline)
            case .success(let request): send(fd, handler(request), deadline: deadline)
            }
        }
        shutdown(fd, Int32(SHUT_WR))
        if unreadInput { drain(fd) }
        return true
    }

    private func send(_ fd: Int32, _ response: HTTPResponse, deadline: Double) {
        let bytes = response.serialized
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if wait(fd, POLLOUT, until: deadline + timeout) != .ready { return }
                continue
            }
            return
        }
    }

    /// Reads and drops what the client still sends (briefly, boundedly), so that closing with unread
    /// input does not reset the connection before the client has read the answer.
    private func drain(_ fd: Int32) {
        let until = Clock.monotonic() + 0.2
        var budget = 64 << 10
        var sink = [UInt8](repeating: 0, count: 4096)
        while budget > 0, wait(fd, POLLIN, until: until) == .ready {
            let n = sink.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }; return }
            budget -= n
        }
    }
}

public struct HTTPResponseError: Error, Sendable {
    public let response: HTTPResponse
}

/// A request of the metrics endpoint that passed the checks of `HTTPRequest.parse`.
package struct HTTPRequest: Sendable, Equatable {
    package let method: String
    /// The path without the query string.
    package let path: String
    /// `HTTP/1.0` or `HTTP/1.1`.
    package let version: String
    /// The value of the Host header without surrounding blanks; nil when the request had none.
    package let host: String?

    package init(method: String, path: String, version: String = "HTTP/1.1", host: String? = nil) {
        self.method = method
        self.path = path
        self.version = version
        self.host = host
    }

    /// The outcome of `parse(_:maxHeadBytes:)`.
    package enum Parsed: Sendable {
        /// No blank line ending the head yet, and not too long: read more.
        case incomplete
        /// A request head of `headLength` bytes (what follows it is not looked at).
        case request(HTTPRequest, headLength: Int)
        /// The answer to send (4xx) before closing.
        case failure(HTTPResponse)
    }

    /// Parses what a client sent so far: pure, any bytes (the fuzz target calls it directly). A head
    /// (request line and headers up to the blank line) longer than `maxHeadBytes` is a 431.
    package static func parse(_ bytes: [UInt8], maxHeadBytes: Int = 8192) -> Parsed {
        guard let end = headEnd(bytes, from: 0), end <= maxHeadBytes else {
            if bytes.count > maxHeadBytes {
                return .failure(
                    .text(431, "Request Header Fields Too Large", "request head larger than \(maxHeadBytes) bytes\n"))
            }
            return .incomplete
        }
        switch parse(head: bytes[..<end]) {
        case .success(let r): return .request(r, headLength: end)
        case .failure(let e): return .failure(e.response)
        }
    }

    /// The index just past the blank line (LF LF or LF CR LF) ending the request head, searching from
    /// `from`.
    package static func headEnd(_ b: [UInt8], from: Int) -> Int? {
        let lf = UInt8(ascii: "\n")
        let cr = UInt8(ascii: "\r")
        var i = max(0, from)
        while i < b.count {
            if b[i] == lf {
                if i + 1 < b.count && b[i + 1] == lf { return i + 2 }
                if i + 2 < b.count && b[i + 1] == cr && b[i + 2] == lf { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// Checks a whole request head (up to and including its blank line) and returns the request, or
    /// the error answer. The request line is printable ASCII, `METHOD /target HTTP/1.x`; each header
    /// line is `name: value` with a token name and a value of printable characters or tabs (no NUL,
    /// no control character, no obsolete line folding); one Host header, which HTTP/1.1 requires.
    package static func parse(head: ArraySlice<UInt8>) -> Result<HTTPRequest, HTTPResponseError> {
        let bad = HTTPResponseError(response: .text(400, "Bad Request", "malformed request\n"))
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        while let nl = head[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var line = head[start..<nl]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            lines.append(line)
            start = nl + 1
        }
        guard start == head.endIndex, lines.count >= 2, lines.last!.isEmpty, !head.contains(0) else {
            return .failure(bad)
        }
        let line = lines[0]
        // Printable ASCII only in the request line.
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return .failure(bad) }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(bad) }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }),
            target.hasPrefix("/"), version == "HTTP/1.1" || version == "HTTP/1.0"
        else {
            return .failure(bad)
        }
        var host: String?
        for header in lines.dropFirst().dropLast() {
            guard let colon = header.firstIndex(of: UInt8(ascii: ":")), colon > header.startIndex,
                header[..<colon].allSatisfy(isTokenByte)
            else { return .failure(bad) }
            let value = header[(colon + 1)...]
            guard value.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7f) }) else { return .failure(bad) }
            if asciiLowercased(header[..<colon]) == "host" {
                guard host == nil else { return .failure(bad) }  // two Host headers: RFC 9112 says 400
                host = String(decoding: value, as: UTF8.self).trimmingBlanks
            }
        }
        // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. (HTTP/1.0 may leave it out.)
        if host == nil && version == "HTTP/1.1" { return .failure(bad) }
        let path =
            target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
            ?? target
        return .success(HTTPRequest(method: method, path: path, version: version, host: host))
    }

    /// tchar of RFC 9110.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }

    static func asciiLowercased(_ b: ArraySlice<UInt8>) -> String {
        String(decoding: b.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }, as: UTF8.self)
    }
}

extension HTTPEndpoint {
    /// The request line of a whole request head, or the error answer (kept for callers of the first
    /// version; `HTTPRequest.parse(head:)` is the parser).
    package static func parseHead(_ head: ArraySlice<UInt8>) -> Result<HTTPRequest, HTTPResponseError> {
        HTTPRequest.parse(head: head)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    var trimmingBlanks: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

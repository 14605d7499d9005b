// libFuzzer target: the metrics endpoint's request reading and parsing (HTTPRequest.parse(_:maxHeadBytes:)
// as HTTPEndpoint's read loop calls it, after each chunk; HTTPRequest.parse(head:); HTTPRequest.headEnd).
// Invariants: reading chunk by chunk gives the answer one parse of what the server reads at most
// (maxHeadBytes + 1 bytes) gives; a parsed request ends at the first blank line, within maxHeadBytes,
// has an upper-case method, a path of printable ASCII that starts with '/' and holds no '?', version
// HTTP/1.0 or HTTP/1.1, and a Host header when 1.1; an error is a 400 (a 431 only past maxHeadBytes)
// that serialises with a Content-Length equal to its body; a head parse(head:) accepts ends at its
// first blank line.
import BreakwaterMetrics

/// What a parse decided, comparable.
func summary(_ p: HTTPRequest.Parsed) -> String {
    switch p {
    case .incomplete: return "incomplete"
    case .request(let r, let n): return "request \(r) \(n)"
    case .failure(let r): return "failure \(r.status) \(r.serialized)"
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    // A small head limit with small chunks, or the server's 8,192 with larger ones (each chunk parses
    // everything read so far, as the server does: small chunks over 8 KiB would be slow).
    let small = data[0] & 0x40 == 0
    let maxHead = small ? 512 : 8192
    let chunk = 1 + Int(data[0] & 0x3f) * (small ? 1 : 128)
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))

    // The read loop of HTTPEndpoint: reads of at most `chunk`, never past maxHead + 1 in all.
    var buffer: [UInt8] = []
    var off = 0
    var result = HTTPRequest.Parsed.incomplete
    while off < input.count {
        let n = min(chunk, maxHead + 1 - buffer.count, input.count - off)
        buffer += input[off..<off + n]
        off += n
        result = HTTPRequest.parse(buffer, maxHeadBytes: maxHead)
        if case .incomplete = result { continue }
        break
    }
    let once = HTTPRequest.parse(Array(input.prefix(maxHead + 1)), maxHeadBytes: maxHead)
    guard summary(result) == summary(once) else { fatalError("chunked: \(summary(result)) vs at once: \(summary(once))") }

    switch result {
    case .incomplete:
        guard buffer.count <= maxHead else { fatalError("incomplete after \(buffer.count) bytes") }
    case .request(let r, let headLength):
        guard headLength <= maxHead, HTTPRequest.headEnd(buffer, from: 0) == headLength else {
            fatalError("head length \(headLength) of \(buffer.count)")
        }
        guard !r.method.isEmpty, r.method.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) else { fatalError("method \(r.method.debugDescription)") }
        guard r.path.hasPrefix("/"), !r.path.contains("?"), r.path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            fatalError("path \(r.path.debugDescription)")
        }
        guard r.version == "HTTP/1.0" || (r.version == "HTTP/1.1" && r.host != nil) else { fatalError("version \(r.version) host \(String(describing: r.host))") }
    case .failure(let resp):
        guard resp.status == 400 || (resp.status == 431 && buffer.count > maxHead) else { fatalError("error status \(resp.status)") }
        checkSerialised(resp)
    }
    if case .success = HTTPRequest.parse(head: input[...]) {
        guard HTTPRequest.headEnd(input, from: 0) == input.count else { fatalError("accepted head does not end at its first blank line") }
    }
    return 0
}

func checkSerialised(_ r: HTTPResponse) {
    let bytes = r.serialized
    guard let sep = HTTPRequest.headEnd(bytes, from: 0) else { fatalError("response without a head end") }
    let head = String(decoding: bytes[..<sep], as: UTF8.self)
    guard head.contains("Content-Length: \(bytes.count - sep)\r\n") else { fatalError("Content-Length mismatch: \(head.debugDescription)") }
}

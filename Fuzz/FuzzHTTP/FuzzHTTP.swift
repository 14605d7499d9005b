// libFuzzer target: the metrics endpoint's request reading (HTTPEndpoint.headEnd as its read loop
// calls it, incrementally over chunks) and parsing (HTTPEndpoint.parseHead). Invariants: finding
// the end of the head incrementally, chunk by chunk from 3 bytes before each new chunk, gives the
// same end as one search over everything; a parsed request has an upper-case method and a path of
// printable ASCII that starts with '/' and holds no '?'; the error answer is a 400 that serialises
// with a Content-Length equal to its body.
@testable import BreakwaterMetrics

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let chunk = 1 + Int(data[0] & 0x7f)
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let maxRequestBytes = 8192
    // The read loop of HTTPEndpoint.handle.
    var buffer: [UInt8] = []
    var off = 0
    var end: Int? = nil
    while off < input.count {
        let want = min(chunk, maxRequestBytes + 1 - buffer.count)
        let n = min(want, input.count - off)
        let scanFrom = max(0, buffer.count - 3)
        buffer += input[off..<off + n]
        off += n
        if let e = HTTPEndpoint.headEnd(buffer, from: scanFrom) { end = e; break }
        if buffer.count > maxRequestBytes { break }
    }
    let full = HTTPEndpoint.headEnd(buffer, from: 0)
    guard end == full else { fatalError("incremental head end \(String(describing: end)) vs \(String(describing: full))") }
    guard let end else { return 0 }
    guard end <= buffer.count, end >= 2 else { fatalError("head end \(end) of \(buffer.count)") }
    switch HTTPEndpoint.parseHead(buffer[..<end]) {
    case .success(let r):
        guard !r.method.isEmpty, r.method.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) else { fatalError("method \(r.method.debugDescription)") }
        guard r.path.hasPrefix("/"), !r.path.contains("?"), r.path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            fatalError("path \(r.path.debugDescription)")
        }
    case .failure(let e):
        guard e.response.status == 400 else { fatalError("error status \(e.response.status)") }
        checkSerialised(e.response)
    }
    return 0
}

func checkSerialised(_ r: HTTPResponse) {
    let bytes = r.serialized
    guard let sep = HTTPEndpoint.headEnd(bytes, from: 0) else { fatalError("response without a head end") }
    let head = String(decoding: bytes[..<sep], as: UTF8.self)
    guard head.contains("Content-Length: \(bytes.count - sep)\r\n") else { fatalError("Content-Length mismatch: \(head.debugDescription)") }
}

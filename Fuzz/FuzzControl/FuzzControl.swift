// libFuzzer target: the control socket's request parsing (ControlProtocol.parseRequest, fed as the
// server's read loop feeds it) and the answer format (Response.rendered and Response.parse, which
// `breakwater status/reload/signatures` read). Invariants: reading in chunks gives what reading at
// once gives; a request's verb is 1 to maxVerb upper-case ASCII letters, its argument is trimmed, at
// most maxArgument bytes and holds no control character; an error and the daemon's answer to an
// unknown verb hold no control character either (they are sent as one answer line); an answer renders
// as its first line plus one line per body line and parses back to itself (line breaks as blanks).
import BreakwaterCore

/// The server's loop (ControlServer): reads of at most `chunk` bytes, never past maxRequest in all;
/// the request is parsed once the bytes hold an LF, reach maxRequest, or the client ended its input.
func serverRead(_ input: UnsafeBufferPointer<UInt8>, chunk: Int) -> Result<ControlRequest, ControlRequestError> {
    var bytes: [UInt8] = []
    var off = 0
    while true {
        let want = min(chunk, ControlProtocol.maxRequest - bytes.count)
        let n = min(want, input.count - off)
        let ended = n == 0
        bytes += input[off..<off + n]
        off += n
        if ended || bytes.contains(10) || bytes.count >= ControlProtocol.maxRequest {
            return ControlProtocol.parseRequest(bytes)
        }
    }
}

func noControl(_ s: String, _ what: String) {
    if s.unicodeScalars.contains(where: ControlProtocol.isControl) { fatalError("\(what) holds a control character: \(s.debugDescription)") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let whole = serverRead(input, chunk: 1024)
    let chunked = serverRead(input, chunk: 1 + Int(mode & 0x3f))
    guard whole == chunked else { fatalError("chunked read differs: \(whole) vs \(chunked)") }
    switch whole {
    case .success(let r):
        guard !r.verb.isEmpty, r.verb.utf8.count <= ControlProtocol.maxVerb,
              r.verb.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            fatalError("bad verb \(r.verb.debugDescription)")
        }
        guard r.argument == r.argument.trimmed, r.argument.utf8.count <= ControlProtocol.maxArgument else {
            fatalError("bad argument \(r.argument.debugDescription)")
        }
        noControl(r.argument, "argument")
        // The daemon's answer to an unknown verb quotes the request (ControlServer.serve).
        let line = r.argument.isEmpty ? r.verb : r.verb + " " + r.argument
        let unknown = ControlProtocol.Response(ok: false, head: "unknown request '\(String(line.prefix(64)))': try HELP")
        noControl(unknown.head, "unknown-request answer")
        checkRoundTrip(unknown)
    case .failure(let e):
        noControl(e.description, "request error")
        checkRoundTrip(ControlProtocol.Response(ok: false, head: e.description))
    }
    // Any answer: head and body lines taken from the input.
    let text = String(decoding: input, as: UTF8.self)
    var parts = text.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
    let head = parts.isEmpty ? "" : parts.removeFirst()
    checkRoundTrip(ControlProtocol.Response(ok: mode & 0x40 != 0, head: head, body: parts))
    _ = ControlProtocol.Response.parse(text)
    return 0
}

func checkRoundTrip(_ r: ControlProtocol.Response) {
    let rendered = r.rendered
    let lines = rendered.utf8.count(where: { $0 == 10 })
    guard lines == 1 + r.body.count, rendered.utf8.last == 10 else {
        fatalError("answer of \(r.body.count) body lines renders as \(lines) lines: \(rendered.debugDescription)")
    }
    let expected = ControlProtocol.Response(ok: r.ok, head: ControlProtocol.oneLine(r.head), body: r.body.map(ControlProtocol.oneLine))
    guard let back = ControlProtocol.Response.parse(rendered), back == expected else {
        fatalError("answer does not parse back: \(rendered.debugDescription) -> \(String(describing: ControlProtocol.Response.parse(rendered)))")
    }
}

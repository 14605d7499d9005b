// libFuzzer target: the control socket's request parsing (ControlProtocol.requestLine, as the
// server's read loop feeds it, and ControlProtocol.split) and the answer format (Response.rendered
// and Response.parse, which `breakwater status/reload/signatures` read). Invariants: the line never
// holds LF or NUL and is at most maxRequest bytes; reading in chunks gives what reading at once
// gives; the verb has no blank and is upper case, the argument is trimmed; an answer renders as
// its first line plus one line per body line and parses back to itself (line breaks as blanks).
import BreakwaterCore

/// The server's loop: reads of at most 1,024 bytes (`chunk`), never past maxRequest, end of input
/// completing a last line without LF.
func serverRead(_ input: UnsafeBufferPointer<UInt8>, chunk: Int) -> Result<String, ControlProtocol.RequestError> {
    var bytes: [UInt8] = []
    var off = 0
    while true {
        if let r = ControlProtocol.requestLine(bytes) { return r }
        let want = min(chunk, ControlProtocol.maxRequest - bytes.count)
        let n = min(want, input.count - off)
        if n == 0 {
            if bytes.isEmpty { return .failure(.init("empty request: try HELP")) }
            bytes.append(10)
            continue
        }
        bytes += input[off..<off + n]
        off += n
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let whole = serverRead(input, chunk: 1024)
    let chunked = serverRead(input, chunk: 1 + Int(mode & 0x3f))
    guard whole == chunked else { fatalError("chunked read differs: \(whole) vs \(chunked)") }
    if case .success(let line) = whole {
        guard !line.utf8.contains(10), !line.utf8.contains(0), line.utf8.count <= ControlProtocol.maxRequest else {
            fatalError("bad request line \(line.debugDescription)")
        }
        let (verb, argument) = ControlProtocol.split(line)
        guard !verb.contains(" "), verb == verb.uppercased(), argument == argument.trimmed else {
            fatalError("bad split of \(line.debugDescription): \(verb.debugDescription) / \(argument.debugDescription)")
        }
        if verb.isEmpty && !line.trimmed.isEmpty { fatalError("no verb in \(line.debugDescription)") }
        // The daemon's answer to an unknown verb quotes the line.
        let unknown = ControlProtocol.Response(ok: false, head: "unknown request '\(ControlProtocol.oneLine(String(line.prefix(64))))': try HELP")
        checkRoundTrip(unknown)
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

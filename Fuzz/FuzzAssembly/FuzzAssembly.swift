// libFuzzer target: message assembly (BreakwaterCore.MessageAssembly over MessageBuffer), fed as the
// milter callbacks feed it: a declared SIZE, headers one by one, the end of the headers, body chunks.
// Input: two setup bytes (spool threshold, memory budget, max-message-size, leading-space mode), then
// operations, each a byte whose value modulo 5 picks it:
//   0 LEN NAME\0VALUE   one header (any bytes, NUL, bare CR and LF included: the type must not care)
//   1 LEN BYTES         one body chunk; bits 3-5 of the op byte scale LEN up to 32 KB
//   2 N N               the next header is repeated N (up to 65,535) times: 10,000 headers and more
//   3 L L L BYTE        one header whose value is L (up to 16 MB) copies of BYTE: 1 MB lines and more
//   4 S S S S S         a declared SIZE (up to 1 TB); it must change nothing but the buffer's capacity
// Invariants, checked against a plain model of the message: `received` is the sum of the parts;
// oversize exactly when that sum passes max-message-size (never because of a declared size), and
// then nothing is held; otherwise the message held, in memory or spooled, is byte for byte the
// header lines (name, ": " or ":", value, CRLF), CRLF and the body, and its size is `received`; the
// Subject kept is the first Subject's (any case) first 998 bytes; the memory budget is never passed
// and is all given back on reset.
import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

let spoolDirectory: String = {
    if let t = getenv("TMPDIR") { return String(cString: t) }
    return "/tmp"
}()

struct Reader {
    let p: UnsafeBufferPointer<UInt8>
    var i = 0
    mutating func byte() -> UInt8? { guard i < p.count else { return nil }; defer { i += 1 }; return p[i] }
    mutating func bytes(_ n: Int) -> UnsafeBufferPointer<UInt8> {
        let k = min(n, p.count - i)
        defer { i += k }
        return UnsafeBufferPointer(rebasing: p[i..<i + k])
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAssembly(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var r = Reader(p: UnsafeBufferPointer(start: data, count: size))
    guard let s1 = r.byte(), let s2 = r.byte() else { return 0 }
    let spoolThreshold = UInt64(1024) << UInt64((s1 & 0x0f) % 12)  // 1 KB ... 2 MB
    let budget = UInt64(4096) << UInt64((s1 >> 4) % 12)            // 4 KB ... 8 MB
    let maxMessageSize = UInt64(16 << 10) << UInt64(s2 & 0x07)     // 16 KB ... 2 MB
    let admission = Admission(slots: 1, maxWaiting: 1, maxWait: 1, memoryBudget: budget)
    let buffer = MessageBuffer(admission: admission, spoolThreshold: spoolThreshold, spoolDirectory: spoolDirectory)
    let a = MessageAssembly(buffer: buffer, maxMessageSize: maxMessageSize)
    a.leadingSpace = s2 & 0x08 != 0
    let separator: [UInt8] = a.leadingSpace ? [58] : [58, 32]

    // The model.
    var expected: [UInt8] = []
    var received: UInt64 = 0
    var headersEnded = false
    var subject: String? = nil
    var keep = true  // expected still tracks the held message (false once past the limit)

    func header(_ name: [UInt8], _ value: [UInt8]) {
        received += UInt64(name.count + separator.count + value.count + 2)
        if subject == nil, name.count == 7, String(decoding: name, as: UTF8.self).lowercased() == "subject" {
            subject = String(decoding: value.prefix(998), as: UTF8.self)
        }
        if keep && received <= maxMessageSize { expected += name; expected += separator; expected += value; expected += [13, 10] } else { keep = false }
        name.withUnsafeBytes { n in value.withUnsafeBytes { v in a.header(name: n, value: v) } }
    }
    func endOfHeaders() {
        if !headersEnded {
            headersEnded = true
            received += 2
            if keep && received <= maxMessageSize { expected += [13, 10] } else { keep = false }
        }
    }

    var repeatNext = 1
    while let op = r.byte() {
        switch op % 5 {
        case 0:
            let len = Int(r.byte() ?? 0)
            let field = Array(r.bytes(len))
            let nul = field.firstIndex(of: 0) ?? field.count
            let name = Array(field[..<nul]), value = nul < field.count ? Array(field[(nul + 1)...]) : []
            for _ in 0..<repeatNext { header(name, value) }
            repeatNext = 1
        case 1:
            let len = Int(r.byte() ?? 0) << Int(op >> 3 & 7)
            let chunk = Array(r.bytes(len))
            endOfHeaders()
            received += UInt64(chunk.count)
            if keep && received <= maxMessageSize { expected += chunk } else { keep = false }
            let wanted = chunk.withUnsafeBytes { a.body($0) }
            guard wanted == (received <= maxMessageSize) else { fatalError("body() said \(wanted) at \(received) of \(maxMessageSize)") }
        case 2:
            let hi = Int(r.byte() ?? 0), lo = Int(r.byte() ?? 0)
            repeatNext = hi << 8 | lo
        case 3:
            let l = Int(r.byte() ?? 0) << 16 | Int(r.byte() ?? 0) << 8 | Int(r.byte() ?? 0)
            let fill = r.byte() ?? 0x41
            header(Array("X-Long".utf8), [UInt8](repeating: fill, count: l))
        default:
            var declared: UInt64 = 0
            for _ in 0..<5 { declared = declared << 8 | UInt64(r.byte() ?? 0) }
            a.declare(size: declared)
        }
        guard admission.snapshot.buffered <= budget else { fatalError("budget passed: \(admission.snapshot.buffered) of \(budget)") }
    }
    a.endOfHeaders()
    endOfHeaders()

    guard a.spoolError == nil else { fatalError("spool error: \(a.spoolError!)") }  // the spool directory is writable
    guard a.received == received else { fatalError("received \(a.received), the parts sum to \(received)") }
    guard a.subject == subject else { fatalError("subject \(String(describing: a.subject)) vs \(String(describing: subject))") }
    guard a.oversize == (received > maxMessageSize) else { fatalError("oversize \(a.oversize) at \(received) of \(maxMessageSize)") }
    if a.oversize {
        guard buffer.size == 0 else { fatalError("an oversize message holds \(buffer.size) bytes") }
    } else {
        guard buffer.size == received, UInt64(expected.count) == received else {
            fatalError("holds \(buffer.size) bytes, model \(expected.count), received \(received)")
        }
        switch buffer.storage {
        case .memory:
            guard buffer.withMemory({ $0.elementsEqual(expected) }) == true else { fatalError("held bytes differ from the parts (memory)") }
            guard buffer.size <= spoolThreshold else { fatalError("\(buffer.size) bytes in memory over the threshold \(spoolThreshold)") }
        case .file(let fd):
            var back = [UInt8](repeating: 0, count: expected.count)
            let n = back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            guard n == expected.count, back == expected else { fatalError("held bytes differ from the parts (spool, read \(n))") }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_size) == buffer.size else { fatalError("spool file of \(st.st_size) bytes, size \(buffer.size)") }
        }
    }
    a.reset()
    guard admission.snapshot.buffered == 0 else { fatalError("budget held after reset: \(admission.snapshot.buffered)") }
    guard a.received == 0, !a.oversize, a.subject == nil, buffer.size == 0 else { fatalError("reset left state") }
    return 0
}

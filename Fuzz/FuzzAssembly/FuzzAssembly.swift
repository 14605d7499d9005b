// libFuzzer target: message assembly, as the milter callbacks do it (Callbacks.swift: milterHeader,
// endHeaders, milterBody) over MessageBuffer, with the Subject capture for wave detection.
// Input: a byte choosing the spool threshold and memory budget, then operations:
//   0 LEN NAME\0VALUE   one header as libmilter hands it over (C strings: cut at a NUL)
//   1 LEN BYTES         one body chunk (any bytes, NUL and bare CR included)
//   2 N N HEADERLEN ... the next header repeated N (up to 65,535) times: 10,000 headers and more
//   3 L L L BYTE        one header whose value is L (up to 16 MB) copies of BYTE: 1 MB lines
// Invariants: the assembled message is byte for byte the header lines (name, ": ", value, CRLF),
// a blank line and the body chunks, in memory or spooled, and its size is the sum of the parts;
// what passes max-message-size is marked oversize, not kept; the memory budget held returns to 0
// on reset; the Subject kept is the first Subject's first 998 bytes.
import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

let maxMessageSize: UInt64 = 4 << 20
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

/// The session state Callbacks.swift keeps for assembly.
final class Assembly {
    let message: MessageBuffer
    var subject: String?
    var oversize = false
    var spoolError: String?
    var headersEnded = false
    var expected: [UInt8] = []
    var firstSubjectValue: [UInt8]?

    init(_ m: MessageBuffer) { message = m }

    func header(name: [UInt8], value: [UInt8]) {
        guard !oversize, spoolError == nil else { return }
        // libmilter's strings end at their first NUL.
        let name = Array(name.prefix { $0 != 0 }), value = Array(value.prefix { $0 != 0 })
        if subject == nil, name.count == 7, String(decoding: name, as: UTF8.self).lowercased() == "subject" {
            subject = String(decoding: value.prefix(998), as: UTF8.self)
            if firstSubjectValue == nil { firstSubjectValue = value }
        }
        let separator = ": "
        let lineLen = UInt64(name.count + value.count + separator.utf8.count + 2)
        if message.size + lineLen > maxMessageSize { oversize = true; return }
        do throws(MessageBuffer.SpoolError) {
            try append(name)
            try message.append(separator)
            try append(value)
            try message.append("\r\n")
            expected += name; expected += Array(separator.utf8); expected += value; expected += [13, 10]
        } catch {
            spoolError = error.description
        }
    }

    func append(_ bytes: [UInt8]) throws(MessageBuffer.SpoolError) {
        let failure = bytes.withUnsafeBytes { p -> MessageBuffer.SpoolError? in
            do throws(MessageBuffer.SpoolError) { try message.append(p) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    func endHeaders() {
        guard !headersEnded else { return }
        headersEnded = true
        if spoolError == nil && !oversize {
            do throws(MessageBuffer.SpoolError) { try message.append("\r\n"); expected += [13, 10] } catch { spoolError = error.description }
        }
    }

    func body(_ chunk: UnsafeBufferPointer<UInt8>) {
        endHeaders()
        if oversize || spoolError != nil { return }
        if message.size + UInt64(chunk.count) > maxMessageSize {
            oversize = true
            message.reset()
            expected = []
            return
        }
        do throws(MessageBuffer.SpoolError) {
            try message.append(UnsafeRawBufferPointer(chunk))
            expected += chunk
        } catch {
            spoolError = error.description
            message.reset()
            expected = []
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAssembly(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var r = Reader(p: UnsafeBufferPointer(start: data, count: size))
    guard let setup = r.byte() else { return 0 }
    let spoolThreshold = UInt64(1024) << UInt64((setup & 0x0f) % 12)  // 1 KB ... 2 MB
    let budget = UInt64(4096) << UInt64((setup >> 4) % 12)          // 4 KB ... 8 MB
    let admission = Admission(slots: 1, maxWaiting: 1, maxWait: 1, memoryBudget: budget)
    let buffer = MessageBuffer(admission: admission, spoolThreshold: spoolThreshold, spoolDirectory: spoolDirectory)
    let a = Assembly(buffer)
    var repeatNext = 1
    while let op = r.byte() {
        switch op & 3 {
        case 0:
            let len = Int(r.byte() ?? 0)
            let field = Array(r.bytes(len))
            let colon = field.firstIndex(of: 0) ?? field.count
            let name = Array(field[..<colon]), value = colon < field.count ? Array(field[(colon + 1)...]) : []
            for _ in 0..<repeatNext { a.header(name: name, value: value) }
            repeatNext = 1
        case 1:
            let len = Int(r.byte() ?? 0) << (op >> 2 & 7)
            let chunk = r.bytes(len)
            a.body(chunk)
        case 2:
            let hi = Int(r.byte() ?? 0), lo = Int(r.byte() ?? 0)
            repeatNext = hi << 8 | lo
        default:
            let l = Int(r.byte() ?? 0) << 16 | Int(r.byte() ?? 0) << 8 | Int(r.byte() ?? 0)
            let fill = r.byte() ?? 0x41
            a.header(name: Array("X-Long".utf8), value: [UInt8](repeating: fill, count: l))
        }
    }
    a.endHeaders()
    if let v = a.firstSubjectValue {
        let want = String(decoding: v.prefix(998), as: UTF8.self)
        guard a.subject == want else { fatalError("subject \(String(describing: a.subject)) vs \(want)") }
    }
    if a.spoolError != nil {
        fatalError("spool error: \(a.spoolError!)")  // /tmp is writable: any error here is ours
    }
    if a.oversize {
        guard buffer.size <= maxMessageSize else { fatalError("oversize message kept \(buffer.size) bytes") }
    } else {
        guard buffer.size == UInt64(a.expected.count) else { fatalError("size \(buffer.size) but parts sum to \(a.expected.count)") }
        switch buffer.storage {
        case .memory:
            let same = buffer.withMemory { p in p.elementsEqual(a.expected) }
            guard same == true else { fatalError("assembled bytes differ from the parts (memory)") }
            guard buffer.size <= spoolThreshold else { fatalError("\(buffer.size) bytes in memory over the threshold \(spoolThreshold)") }
        case .file(let fd):
            var back = [UInt8](repeating: 0, count: a.expected.count)
            let n = back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            guard n == a.expected.count, back == a.expected else { fatalError("assembled bytes differ from the parts (spool, \(n))") }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_size) == buffer.size else { fatalError("spool file size \(st.st_size) vs \(buffer.size)") }
        }
    }
    guard admission.snapshot.buffered <= budget else { fatalError("budget passed: \(admission.snapshot.buffered) of \(budget)") }
    buffer.reset()
    guard admission.snapshot.buffered == 0 else { fatalError("budget held after reset: \(admission.snapshot.buffered)") }
    return 0
}

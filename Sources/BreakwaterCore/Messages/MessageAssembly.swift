/// One message put together from the pieces libmilter hands over: header names and values (one call
/// per header), the end of the headers, body chunks. It counts the bytes received, decides when the
/// message is over `max-message-size` (on those bytes only: a size the client declared never does),
/// and keeps the first Subject for wave detection. No C and no libmilter here: the milter callbacks
/// pass their buffers in.
///
/// Every byte is the sender's: names and values may hold any byte (libmilter's are NUL-terminated, so
/// they hold no NUL, but this type does not rely on it), any number of headers and any line length;
/// each is bounded by `maxMessageSize` alone.
package final class MessageAssembly {
    package let buffer: MessageBuffer
    package let maxMessageSize: UInt64
    /// Header values come with their leading space (libmilter's SMFIP_HDR_LEADSPC): a header line is
    /// then `name:value`, otherwise `name: value`.
    package var leadingSpace = false

    /// Bytes received for this message (header lines as reassembled, the blank line, the body),
    /// including those not kept once it went over `maxMessageSize`. The log's `size=`.
    package private(set) var received: UInt64 = 0
    /// Over `maxMessageSize` on the bytes received; nothing more is kept, the buffer is emptied.
    package private(set) var oversize = false
    package private(set) var headersEnded = false
    /// Why the message could not be held (a spool file could not be written, or the spool budget is
    /// spent); nothing more is kept.
    package private(set) var spoolFailure: MessageBuffer.SpoolError?
    package var spoolError: String? { spoolFailure?.description }
    /// The first Subject header's value as received (at most 998 bytes, the RFC 5322 line limit).
    package private(set) var subject: String?

    package init(buffer: MessageBuffer, maxMessageSize: UInt64) {
        self.buffer = buffer
        self.maxMessageSize = maxMessageSize
    }

    /// True while the message is still kept: not oversize and no spool error. Once false, the caller
    /// may skip the rest of the message (SMFIS_SKIP).
    package var isKept: Bool { !oversize && spoolFailure == nil }

    /// The size the client declared (ESMTP `SIZE=` at MAIL FROM). Only pre-sizes the buffer, within
    /// `MessageBuffer.expect`'s caps; it never marks the message oversize and never shortens a scan:
    /// a client may declare anything and send something else.
    package func declare(size: UInt64) {
        guard isKept, received == 0 else { return }
        buffer.expect(size)
    }

    /// One header as libmilter delivers it: the name, and the value without the CRLF (folded values
    /// keep the LF libmilter leaves between their lines; libclamav's mail parser takes both).
    package func header(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let separator: StaticString = leadingSpace ? ":" : ": "
        let lineLength = UInt64(name.count) + UInt64(separator.utf8CodeUnitCount) + UInt64(value.count) + 2
        received &+= lineLength
        if subject == nil, MessageAssembly.isSubject(name) {
            subject = String(decoding: UnsafeRawBufferPointer(rebasing: value.prefix(998)), as: UTF8.self)
        }
        guard isKept else { return }
        if received > maxMessageSize {
            markOversize()
            return
        }
        do {
            try buffer.append(name)
            try buffer.append(UnsafeRawBufferPointer(start: separator.utf8Start, count: separator.utf8CodeUnitCount))
            try buffer.append(value)
            try buffer.append(UnsafeRawBufferPointer(start: MessageAssembly.crlf.utf8Start, count: 2))
        } catch {
            fail(error)
        }
    }

    /// The blank line after the headers. Called again (libmilter may skip its end-of-headers step, so
    /// the callbacks call it before each body chunk and at the end) it does nothing.
    package func endOfHeaders() {
        guard !headersEnded else { return }
        headersEnded = true
        received &+= 2
        guard isKept else { return }
        if received > maxMessageSize {
            markOversize()
            return
        }
        do { try buffer.append(UnsafeRawBufferPointer(start: MessageAssembly.crlf.utf8Start, count: 2)) } catch {
            fail(error)
        }
    }

    /// One body chunk. Returns false when the rest of the body is not wanted (the message went over
    /// `maxMessageSize` or cannot be held): the caller may then skip it.
    @discardableResult
    package func body(_ chunk: UnsafeRawBufferPointer) -> Bool {
        endOfHeaders()
        received &+= UInt64(chunk.count)
        guard isKept else { return false }
        if received > maxMessageSize {
            // Stop taking body: the rest would only be thrown away.
            markOversize()
            return false
        }
        do { try buffer.append(chunk) } catch {
            fail(error)
            return false
        }
        return true
    }

    /// Ready for the next message: frees the buffer and its budget.
    package func reset() {
        buffer.reset()
        received = 0
        oversize = false
        headersEnded = false
        spoolFailure = nil
        subject = nil
    }

    private func markOversize() {
        oversize = true
        buffer.reset()
    }

    private func fail(_ error: MessageBuffer.SpoolError) {
        spoolFailure = error
        buffer.reset()
    }

    private static let crlf: StaticString = "\r\n"
    private static let subjectName: [UInt8] = Array("subject".utf8)

    /// `Subject`, in any case.
    static func isSubject(_ name: UnsafeRawBufferPointer) -> Bool {
        let want = subjectName
        guard name.count == want.count else { return false }
        for i in 0..<want.count where name[i] | 0x20 != want[i] { return false }
        return true
    }
}

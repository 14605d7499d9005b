import CClamAV

/// SHA-256 of a message as the crash guard recognises it when the sending server retries it: every
/// header field except `Received` (the receiving MTA adds its own, with a new queue id and time, on
/// each attempt), then the body. Fed as the milter receives the message; libclamav's (OpenSSL's)
/// SHA-256.
package final class MessageDigest {
    private var ctx: UnsafeMutableRawPointer?

    package init() {}

    deinit { reset() }

    /// Forgets what was fed (a new message, or an aborted one).
    package func reset() {
        if let c = ctx { cl_hash_destroy(c) }
        ctx = nil
    }

    private func context() -> UnsafeMutableRawPointer? {
        if ctx == nil { ctx = cl_hash_init("sha256") }
        return ctx
    }

    /// One header field as the milter gets it (name and value without the colon).
    package func header(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if MessageDigest.isReceived(name) { return }
        guard let c = context() else { return }
        _ = cl_update_hash(c, name.baseAddress, name.count)
        _ = withUnsafeBytes(of: UInt8(ascii: ":")) { cl_update_hash(c, $0.baseAddress, 1) }
        _ = cl_update_hash(c, value.baseAddress, value.count)
        _ = withUnsafeBytes(of: UInt8(10)) { cl_update_hash(c, $0.baseAddress, 1) }
    }

    package func body(_ chunk: UnsafeRawBufferPointer) {
        guard chunk.count > 0, let c = context() else { return }
        _ = cl_update_hash(c, chunk.baseAddress, chunk.count)
    }

    /// The digest in lowercase hex (64 characters), and a fresh start; nil if libclamav could not
    /// hash (out of memory).
    package func finish() -> String? {
        guard let c = context() else { return nil }
        ctx = nil
        var out = [UInt8](repeating: 0, count: 32)
        guard cl_finish_hash(c, &out) == 0 else { return nil }
        let hex = Array("0123456789abcdef".utf8)
        var s = [UInt8]()
        s.reserveCapacity(64)
        for b in out {
            s.append(hex[Int(b >> 4)])
            s.append(hex[Int(b & 15)])
        }
        return String(decoding: s, as: UTF8.self)
    }

    static func isReceived(_ name: UnsafeRawBufferPointer) -> Bool {
        let r = Array("received".utf8)
        guard name.count == r.count else { return false }
        for i in 0..<r.count where name[i] | 0x20 != r[i] { return false }
        return true
    }
}

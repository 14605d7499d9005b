import BreakwaterCore

/// Per-connection state, attached to libmilter's context with `smfi_setpriv`. A connection's callbacks
/// may run on different libmilter threads, but never two at once, so no lock is needed here.
final class Session {
    // Negotiated with the MTA.
    var canSkip = false
    var noReplyHeaders = false
    var noReplyRecipients = false
    /// Connect needs no reply: a client in skip-networks is then accepted at MAIL FROM instead.
    var noReplyConnect = false

    // The connection.
    var clientAddress = "unknown"
    var clientIP: [UInt8]? = nil
    var clientSkipped = false

    // The current message; reset by `resetMessage()` (abort, end of message).
    var sender = ""
    var recipients: [String] = []
    /// Headers and body as received, the received size, the oversize decision, the Subject.
    let assembly: MessageAssembly
    var started = 0.0

    init(assembly: MessageAssembly) {
        self.assembly = assembly
    }

    func resetMessage() {
        sender = ""
        recipients.removeAll(keepingCapacity: true)
        assembly.reset()
    }
}

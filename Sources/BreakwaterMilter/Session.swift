import BreakwaterCore

/// Per-connection state, attached to libmilter's context with `smfi_setpriv`. A connection's callbacks
/// may run on different libmilter threads, but never two at once, so no lock is needed here.
final class Session {
    // Negotiated with the MTA.
    var leadingSpace = false
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
    var message: MessageBuffer
    var headersEnded = false
    var oversize = false
    /// Bytes received (or announced with SIZE=) when the message went over max-message-size.
    var oversizeBytes: UInt64 = 0
    var spoolError: String?
    var started = 0.0
    /// The first Subject header's raw value (wave detection).
    var subject: String?

    init(message: MessageBuffer) {
        self.message = message
    }

    func resetMessage() {
        sender = ""
        recipients.removeAll(keepingCapacity: true)
        message.reset()
        headersEnded = false
        oversize = false
        oversizeBytes = 0
        spoolError = nil
        subject = nil
    }
}

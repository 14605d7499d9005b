import BreakwaterCore
import BreakwaterEngine

/// Per-connection state, attached to libmilter's context with `smfi_setpriv`. A connection's callbacks
/// may run on different libmilter threads, but never two at once, so no lock is needed here.
final class Session {
    // Negotiated with the MTA.
    var canSkip = false
    /// RCPT needs no reply (max-recipients = 0, over a unix socket).
    var noReplyRecipients = false
    var noReplyHeaders = false
    /// Connect needs no reply: a client in skip-networks is then accepted at MAIL FROM instead.
    var noReplyConnect = false

    // The connection.
    var clientAddress = "unknown"
    var clientIP: [UInt8]? = nil
    var clientSkipped = false
    /// Opened while max-sessions were open already: answered 451 4.3.2 at connect.
    var overSessionCap = false

    // The current message; reset by `resetMessage()` (abort, end of message).
    var sender = ""
    var recipients: [String] = []
    /// RCPTs answered 452 4.5.3 past max-recipients in this message.
    var recipientsRefused = 0
    /// Headers and body as received, the received size, the oversize decision, the Subject.
    let assembly: MessageAssembly
    /// The message's digest as the crash guard knows it (headers without Received, then the body).
    let digest = MessageDigest()

    init(assembly: MessageAssembly) {
        self.assembly = assembly
    }

    func resetMessage() {
        sender = ""
        recipients.removeAll(keepingCapacity: true)
        recipientsRefused = 0
        assembly.reset()
        digest.reset()
    }
}

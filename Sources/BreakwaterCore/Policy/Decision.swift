/// The answer for one message, ready for the milter bridge.
package struct Decision: Sendable, Equatable {
    package enum Verdict: String, Sendable { case clean, infected, limit, oversize, error, skipped, busy, crash }
    package var verdict: Verdict
    package var action: Action
    /// SMTP reply code, enhanced status and text for reject/tempfail.
    package var reply: (code: String, status: String, text: String)?
    /// Headers to add (name, value without the leading space).
    package var headers: [(String, String)] = []
    package var tempfailCause: TempfailCause?
    /// Signatures that matched (names as written).
    package var signatures: [String] = []
    /// The wave the message belongs to (wave detection), for the log.
    package var wave: String? = nil

    package init(
        verdict: Verdict, action: Action, reply: (code: String, status: String, text: String)?,
        headers: [(String, String)] = [], tempfailCause: TempfailCause? = nil, signatures: [String] = [],
        wave: String? = nil
    ) {
        self.verdict = verdict
        self.action = action
        self.reply = reply
        self.headers = headers
        self.tempfailCause = tempfailCause
        self.signatures = signatures
        self.wave = wave
    }

    /// A message let through unscanned by a skip rule (the rule is in the log line where it applied).
    package static let skipped = Decision(verdict: .skipped, action: .accept, reply: nil)

    package static func == (a: Decision, b: Decision) -> Bool {
        a.verdict == b.verdict && a.action == b.action && a.reply?.code == b.reply?.code
            && a.reply?.status == b.reply?.status && a.reply?.text == b.reply?.text
            && a.headers.map { "\($0.0): \($0.1)" } == b.headers.map { "\($0.0): \($0.1)" }
            && a.tempfailCause == b.tempfailCause && a.signatures == b.signatures && a.wave == b.wave
    }
}

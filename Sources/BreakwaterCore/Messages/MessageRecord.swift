/// What happened to one message, handed to observers (metrics, wave counting) after the MTA has its answer.
package struct MessageRecord: Sendable {
    package let queueID: String
    package let client: String
    package let sender: String
    package let recipients: Int
    package let bytes: UInt64
    package let decision: Decision
    package let waitSeconds: Double
    package let scanSeconds: Double
    /// False when the message was answered without a scan (busy, oversize, skipped).
    package let scanned: Bool

    package init(
        queueID: String, client: String, sender: String, recipients: Int, bytes: UInt64, decision: Decision,
        waitSeconds: Double, scanSeconds: Double, scanned: Bool
    ) {
        self.queueID = queueID
        self.client = client
        self.sender = sender
        self.recipients = recipients
        self.bytes = bytes
        self.decision = decision
        self.waitSeconds = waitSeconds
        self.scanSeconds = scanSeconds
        self.scanned = scanned
    }
}

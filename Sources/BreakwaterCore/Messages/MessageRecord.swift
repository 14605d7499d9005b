/// What happened to one message, handed to observers (metrics, wave counting) after the MTA has its answer.
public struct MessageRecord: Sendable {
    public let queueID: String
    public let client: String
    public let sender: String
    public let recipients: Int
    public let bytes: UInt64
    public let decision: Decision
    public let waitSeconds: Double
    public let scanSeconds: Double
    /// False when the message was answered without a scan (busy, oversize, skipped).
    public let scanned: Bool

    public init(
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

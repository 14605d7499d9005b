/// One signature that matched a message.
public struct Detection: Sendable, Hashable, Codable {
    /// The name as libclamav returned it (with `.UNOFFICIAL` for unsigned databases).
    public let rawName: String
    /// The name as written in the signature file.
    public let name: String

    public init(rawName: String) {
        self.rawName = rawName
        let suffix = ".UNOFFICIAL"
        self.name = rawName.hasSuffix(suffix) ? String(rawName.dropLast(suffix.count)) : rawName
    }

    /// libclamav's "the scan hit a limit" heuristic (`Heuristics.Limits.Exceeded.*`): the message was not
    /// fully scanned.
    public var isLimit: Bool { name.hasPrefix("Heuristics.Limits.Exceeded") }
}

/// What one scan found.
public struct ScanResult: Sendable {
    public enum Outcome: Sendable {
        case clean
        case found([Detection])
        case error(String)
    }
    public let outcome: Outcome
    public let seconds: Double
    public let bytes: Int

    public init(outcome: Outcome, seconds: Double, bytes: Int) {
        self.outcome = outcome
        self.seconds = seconds
        self.bytes = bytes
    }

    /// Every detection, limits included.
    public var detections: [Detection] {
        if case .found(let d) = outcome { return d }
        return []
    }
    /// Detections that are real signatures (not "exceeded a limit").
    public var signatures: [Detection] { detections.filter { !$0.isLimit } }
    /// The limit hit, if the scan hit one.
    public var limit: Detection? { detections.first { $0.isLimit } }
    public var errorMessage: String? {
        if case .error(let m) = outcome { return m }
        return nil
    }
    public var isClean: Bool {
        if case .clean = outcome { return true }
        return false
    }
}

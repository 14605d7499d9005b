/// One signature that matched a message.
package struct Detection: Sendable, Hashable, Codable {
    /// The name as libclamav returned it (with `.UNOFFICIAL` for unsigned databases).
    package let rawName: String
    /// The name as written in the signature file.
    package let name: String

    package init(rawName: String) {
        self.rawName = rawName
        let suffix = ".UNOFFICIAL"
        self.name = rawName.hasSuffix(suffix) ? String(rawName.dropLast(suffix.count)) : rawName
    }

    /// libclamav's "the scan hit a limit" heuristic (`Heuristics.Limits.Exceeded.*`): the message was not
    /// fully scanned.
    package var isLimit: Bool { name.hasPrefix("Heuristics.Limits.Exceeded") }

    /// Which kind of limit this is, for a limit (nil for a signature).
    package var limitKind: LimitKind? { isLimit ? LimitKind(limitName: name) : nil }
}

/// The two kinds of scan limit, which the policy answers apart (`on-nesting-limit`, `on-limit`).
package enum LimitKind: String, Sendable, CaseIterable {
    /// The message's structure is past what is scanned: nested too deep (`max-recursion`), too many
    /// layers (`max-files`), or a MIME structure past libclamav's fixed bounds (its `Email*` limit
    /// names: parts, headers, header bytes, folds, arguments). Legitimate mail does not come near these; attackers
    /// build such messages to put a payload where the scanner stops looking.
    case nesting
    /// A part or the whole scan is too large or too slow (`max-file-size`, `max-scan-size`,
    /// `max-scan-time`): large legitimate mail (a zipped export, a big PDF) can hit these.
    case size

    /// libclamav's names (`Heuristics.Limits.Exceeded.NAME`, 1.4) for the size and time limits; every
    /// other limit name, including any a later libclamav adds, counts as nesting: the stricter answer
    /// for a limit nobody has looked at yet.
    static let sizeNames: Set<String> = ["MaxFileSize", "MaxScanSize", "MaxScanTime"]

    /// The kind of a `Heuristics.Limits.Exceeded.*` name.
    package init(limitName: String) {
        let prefix = "Heuristics.Limits.Exceeded."
        let last = limitName.hasPrefix(prefix) ? String(limitName.dropFirst(prefix.count)) : ""
        self = LimitKind.sizeNames.contains(last) ? .size : .nesting
    }
}

/// What one scan found.
package struct ScanResult: Sendable {
    /// What the scan found: nothing, detections (signatures and limits), or an error.
    package enum Finding: Sendable {
        case clean
        case found([Detection])
        case error(String)
    }
    package let finding: Finding
    package let seconds: Double
    package let bytes: Int
    /// What libclamav reported when it could not write or create a temporary file during the scan
    /// (a full file system): it then goes on without the part it could not write, and may call the
    /// message clean. Such a scan did not see the whole message.
    package var temporaryFileFailure: String? = nil

    package init(finding: Finding, seconds: Double, bytes: Int) {
        self.finding = finding
        self.seconds = seconds
        self.bytes = bytes
    }

    /// Every detection, limits included.
    package var detections: [Detection] {
        if case .found(let d) = finding { return d }
        return []
    }
    /// Detections that are real signatures (not "exceeded a limit").
    package var signatures: [Detection] { detections.filter { !$0.isLimit } }
    /// The limit hit, if the scan hit one (the first reported).
    package var limit: Detection? { detections.first { $0.isLimit } }
    /// Every limit the scan hit (a scan can hit several: a part too large and another nested too deep).
    package var limits: [Detection] { detections.filter { $0.isLimit } }
    package var errorMessage: String? {
        if case .error(let m) = finding { return m }
        return nil
    }
    package var isClean: Bool {
        if case .clean = finding { return true }
        return false
    }
}

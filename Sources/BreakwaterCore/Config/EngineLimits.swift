/// Heuristic alerts that can be switched on besides "exceeds max", which is always on.
package struct Heuristics: OptionSet, Sendable, Hashable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }
    package static let encryptedArchives = Heuristics(rawValue: 1 << 0)
    package static let encryptedDocuments = Heuristics(rawValue: 1 << 1)
    package static let macros = Heuristics(rawValue: 1 << 2)
    package static let phishing = Heuristics(rawValue: 1 << 3)
    package static let broken = Heuristics(rawValue: 1 << 4)

    package static let names: [(String, Heuristics)] = [
        ("encrypted-archives", .encryptedArchives), ("encrypted-documents", .encryptedDocuments),
        ("macros", .macros), ("phishing", .phishing), ("broken", .broken),
    ]
    package static let `default`: Heuristics = [.encryptedArchives, .phishing]
}

/// libclamav's scan limits. The defaults are clamd's (clamd.conf(5) of libclamav 1.4): a filter in front
/// of the mailbox must not stop looking sooner than the scanner a site would otherwise run, or a payload
/// placed one level below its limit passes (ClamAV's own clam_cache_emax.tgz, attached to a message,
/// sits 17 levels deep). docs/benchmarks.md has what the deeper limits cost on the mixed corpus.
package struct EngineLimits: Sendable, Hashable {
    /// Most bytes scanned per message, all layers together (`CL_ENGINE_MAX_SCANSIZE`).
    package var maxScanSize: UInt64 = 400 << 20
    /// Largest single layer (attachment, archive member) scanned (`CL_ENGINE_MAX_FILESIZE`).
    package var maxFileSize: UInt64 = 100 << 20
    /// Deepest nesting (zip in zip in message/rfc822 ...) scanned (`CL_ENGINE_MAX_RECURSION`).
    package var maxRecursion: UInt32 = 17
    /// Most layers per message (`CL_ENGINE_MAX_FILES`).
    package var maxFiles: UInt32 = 10_000
    /// Longest scan of one message, milliseconds (`CL_ENGINE_MAX_SCANTIME`).
    package var maxScanTimeMilliseconds: UInt32 = 120_000
    package var pcreMatchLimit: UInt64 = 100_000
    package var pcreRecursionLimit: UInt64 = 2_000
    /// Largest layer PCRE subsignatures run over (`CL_ENGINE_PCRE_MAX_FILESIZE`).
    package var pcreMaxFileSize: UInt64 = 25 << 20
    /// Files libclamav scans through its own page map (each decoded part, each archive member) up to
    /// this size get all their pages when the map is made instead of a copy-on-write fault per page,
    /// which with several scanning threads costs a TLB flush on every CPU (0: never). libclamav's
    /// page aging keeps up to 8 MiB of a file in memory anyway, so a map costs at most this much
    /// more than 8 MiB.
    package var prefaultSize: UInt64 = 16 << 20
    /// Where libclamav writes its temporary files (nil: its default, `$TMPDIR` or /tmp).
    package var temporaryDirectory: String? = nil
    package var heuristics: Heuristics = .default

    package init() {}
}

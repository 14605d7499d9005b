#if canImport(Glibc)
import Glibc
#endif

/// Breakwater's configuration: built-in defaults, then the config file, then command-line flags.
/// Every key of the file is also a flag `--KEY VALUE`.
package struct Config: Sendable {
    package var socket = "inet:8897@127.0.0.1"
    /// Empty means the shipped set.
    package var signatures: [String] = []
    package var localSignatures = SignatureLocations.defaultLocal
    package var control = "/run/breakwater/control.sock"
    package var metrics = "127.0.0.1:9897"
    package var metricsMaxSignatures = 100
    package var workers = Config.cores
    package var maxWaiting = 256
    package var maxWait = 20.0
    package var maxSessions = 1000
    package var maxRecipients = 1000
    package var maxMessageSize: UInt64 = 25 << 20
    package var memoryBudget: UInt64 = 256 << 20
    package var spoolThreshold: UInt64 = 1 << 20
    package var spoolBudget: UInt64 = 1 << 30
    package var spoolDirectory = Config.defaultTemporaryDirectory
    /// Set by the scan-temporary-directory key; otherwise libclamav's files go to the spool directory.
    package var scanTemporaryDirectory: String? = nil
    package var actions: [ActionRule] = []
    package var rejectMessage = "Rejected: %s"
    package var onScanError = Action.tempfail
    package var onOversize = Action.accept
    package var onLimit = Action.accept
    package var onNestingLimit = Action.reject
    /// `on-scan-crash`: the answer to a message convicted of crashing the scanner (CrashSuspects).
    package var onScanCrash = Action.reject
    /// `crash-directory`; nil: the `crash` directory inside the spool directory.
    package var crashDirectoryOverride: String? = nil
    /// `crash-copies`: copies of convicted messages kept in the crash directory (0: none).
    package var crashCopies = 10
    package var scannedHeader = "X-Virus-Scanned"
    package var skipAuthenticated = false
    package var skipNetworks: [CIDR] = []
    package var skipSenders: [String] = []
    package var skipRecipients: [String] = []
    package var limits = EngineLimits()
    package var milterTimeout = 300.0
    package var logLevel = "info"
    /// The `waves` and `wave-*` keys (wave detection).
    package var wave = WaveSettings()
    /// `self-check`, `control-mode`, `local-prefix`, `official-signatures` (signature operations).
    package var ops = OpsSettings()

    package init() {}

    /// Where the in-flight records of scans, the crash suspects and the copies of convicted messages go.
    package var crashDirectory: String { crashDirectoryOverride ?? spoolDirectory + "/crash" }

    /// The signature directories to load: the configured (or shipped) ones plus the ops directory when
    /// it exists.
    package var signatureDirectories: [String] {
        var dirs = signatures.isEmpty ? [SignatureLocations.shipped()] : signatures
        if !localSignatures.isEmpty && SignatureLocations.hasDatabaseFiles(localSignatures)
            && !dirs.contains(localSignatures)
        {
            dirs.append(localSignatures)
        }
        if ops.officialSignatures && SignatureLocations.hasDatabaseFiles(OpsSettings.officialDirectory)
            && !dirs.contains(OpsSettings.officialDirectory)
        {
            dirs.append(OpsSettings.officialDirectory)
        }
        return dirs
    }

    package static let defaultPath = "/etc/breakwater/breakwater.conf"

    package static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    package static var defaultTemporaryDirectory: String {
        if let t = getenv("TMPDIR"), t.pointee != 0 { return String(cString: t) }
        return "/tmp"
    }
}

extension Config {
    /// Every key, in the order the documentation lists them.
    package static let keys: [ConfigKey] =
        [
            key(
                "socket", show: { $0.socket },
                "Where the MTA connects: unix:/path/to/socket or inet:PORT@HOST (libmilter syntax). For a chrooted Postfix smtpd a unix socket must live under /var/spool/postfix."
            ) {
                c, v throws(ConfigKey.ValueError) in
                guard v.hasPrefix("unix:") || v.hasPrefix("local:") || v.hasPrefix("inet:") || v.hasPrefix("inet6:")
                else {
                    throw .init(message: "'\(v)' is not a milter socket: write unix:/path or inet:PORT@HOST")
                }
                c.socket = v
            },
            key(
                "signatures", described: SignatureLocations.installedShipped,
                "A signature directory to load (repeatable). Default: the shipped set.", repeatable: true
            ) {
                c, v throws(ConfigKey.ValueError) in
                for d in try list(v) { c.signatures.append(d) }
            },
            key(
                "local-signatures", show: { $0.localSignatures },
                "The ops directory, loaded in addition to the signatures when it exists; `breakwater signatures` writes here."
            ) {
                c, v throws(ConfigKey.ValueError) in c.localSignatures = v
            },
            key(
                "control", show: { $0.control },
                "The control socket used by `breakwater reload`, `status` and `signatures`; empty turns it off."
            ) {
                c, v throws(ConfigKey.ValueError) in c.control = v
            },
            key(
                "metrics", show: { $0.metrics },
                "Address of the Prometheus /metrics endpoint (IP:PORT or [IPv6]:PORT); empty turns it off."
            ) {
                c, v throws(ConfigKey.ValueError) in
                if !v.isEmpty {
                    do throws(ListenAddress.ParseError) { _ = try ListenAddress.parse(v) } catch {
                        throw .init(message: error.description)
                    }
                }
                c.metrics = v
            },
            key(
                "metrics-max-signatures", show: { "\($0.metricsMaxSignatures)" },
                "Signature names counted under their own name in breakwater_detections_total; the rest count as \"other\"."
            ) {
                c, v throws(ConfigKey.ValueError) in c.metricsMaxSignatures = try int(v, 0...100_000)
            },
            key("workers", described: "number of cores", "Scan slots: messages scanned at the same time.") {
                c, v throws(ConfigKey.ValueError) in c.workers = try int(v, 1...1024)
            },
            key(
                "max-waiting", show: { "\($0.maxWaiting)" },
                "Messages that may wait for a free scan slot; past it the MTA gets 451 4.3.2. A wait costs a blocked thread; a 451 costs the MTA a whole new transaction later."
            ) {
                c, v throws(ConfigKey.ValueError) in c.maxWaiting = try int(v, 0...100_000)
            },
            key(
                "max-wait", show: { ConfigText.seconds($0.maxWait) },
                "Longest wait for a scan slot (the MTA is kept alive meanwhile); then 451 4.3.2."
            ) {
                c, v throws(ConfigKey.ValueError) in c.maxWait = try duration(v)
            },
            key(
                "max-sessions", show: { "\($0.maxSessions)" },
                "Milter sessions (MTA connections) open at once; past it a new session is answered 451 4.3.2 at connect (logged at most once a second). Each open session costs a file descriptor and a few KB; one busy in a callback costs a libmilter thread."
            ) {
                c, v throws(ConfigKey.ValueError) in c.maxSessions = try int(v, 1...1_000_000)
            },
            key(
                "max-recipients", show: { "\($0.maxRecipients)" },
                "Recipients per message; each RCPT past it is answered 452 4.5.3 (the sender sends those in another transaction). Postfix's smtpd_recipient_limit is 1000 too. 0: no limit of its own (the MTA's applies), and RCPT needs no reply over a unix socket, a round trip less per recipient."
            ) {
                c, v throws(ConfigKey.ValueError) in c.maxRecipients = try int(v, 0...1_000_000)
            },
            key(
                "max-message-size", show: { ByteSize.format($0.maxMessageSize) },
                "Largest message taken in full; the rest of a larger body is skipped and on-oversize applies."
            ) {
                c, v throws(ConfigKey.ValueError) in c.maxMessageSize = try size(v)
            },
            key(
                "memory-budget", show: { ByteSize.format($0.memoryBudget) },
                "Bytes of messages held in memory across all sessions; past it messages spill to disk."
            ) {
                c, v throws(ConfigKey.ValueError) in c.memoryBudget = try size(v)
            },
            key(
                "spool-threshold", show: { ByteSize.format($0.spoolThreshold) },
                "A message larger than this is spooled to an unlinked temporary file instead of memory."
            ) {
                c, v throws(ConfigKey.ValueError) in c.spoolThreshold = try size(v)
            },
            key(
                "spool-budget", show: { ByteSize.format($0.spoolBudget) },
                "Bytes of messages held in spool files across all sessions; past it a message that needs the spool gets 451 4.3.2 (the MTA retries it). At least max-message-size."
            ) {
                c, v throws(ConfigKey.ValueError) in c.spoolBudget = try size(v)
            },
            key(
                "spool-directory", described: "$TMPDIR or /tmp",
                "Where spooled messages go, and libclamav's temporary files unless scan-temporary-directory is set."
            ) {
                c, v throws(ConfigKey.ValueError) in
                c.spoolDirectory = v
                c.limits.temporaryDirectory = c.scanTemporaryDirectory ?? v
            },
            key(
                "scan-temporary-directory", described: "in memory, else the spool directory",
                "Where libclamav writes the parts it decodes during a scan (a few small files per message, removed when the scan ends). Unset, breakwater run keeps them in a private directory on a tmpfs ($RUNTIME_DIRECTORY, else /dev/shm) when it has room for workers x (max-scan-size + max-message-size), and otherwise, or for a scan that finds it full, in the spool directory; the log says which at start-up. Set, this directory."
            ) {
                c, v throws(ConfigKey.ValueError) in
                c.scanTemporaryDirectory = v
                c.limits.temporaryDirectory = v
            },
            key(
                "action", described: "(see below)",
                "GLOB ACTION: signatures matching GLOB get ACTION (\(Action.list)). Repeatable; first match wins; the built-in rules follow: \(ActionRule.defaults.map(\.description).joined(separator: ", ")).",
                repeatable: true
            ) {
                c, v throws(ConfigKey.ValueError) in
                let parts = v.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard parts.count == 2, let a = Action.parse(String(parts[1])) else {
                    throw .init(message: "'\(v)' is not a rule: write GLOB ACTION, ACTION one of \(Action.list)")
                }
                c.actions.append(ActionRule(pattern: String(parts[0]), action: a))
            },
            key("reject-message", show: { $0.rejectMessage }, "Reply text of a reject; %s is the signature name.") {
                c, v throws(ConfigKey.ValueError) in c.rejectMessage = v
            },
            key("on-scan-error", show: { $0.onScanError.rawValue }, "Action when libclamav fails on a message.") {
                c, v throws(ConfigKey.ValueError) in c.onScanError = try action(v)
            },
            key(
                "on-oversize", show: { $0.onOversize.rawValue },
                "Action for a message over max-message-size: accept (with an X-Breakwater-Not-Scanned header), tag, reject (552 5.3.4), quarantine, discard."
            ) {
                c, v throws(ConfigKey.ValueError) in
                let a = try action(v)
                if a == .tempfail {
                    throw .init(
                        message: "tempfail would make the MTA retry an oversize message forever: use accept or reject")
                }
                c.onOversize = a
            },
            key(
                "on-limit", show: { $0.onLimit.rawValue },
                "Action for a message that hits a size or time limit (max-scan-size, max-file-size, max-scan-time): accept or tag (with an X-Breakwater-Not-Scanned header), reject (552 5.3.4), quarantine, discard. Large legitimate mail can hit these; so can a message padded past max-message-size, which on-oversize answers: set both to close that door."
            ) {
                c, v throws(ConfigKey.ValueError) in
                let a = try action(v)
                if a == .tempfail {
                    throw .init(message: "tempfail would make the MTA retry this message forever: use accept or reject")
                }
                c.onLimit = a
            },
            key(
                "on-nesting-limit", show: { $0.onNestingLimit.rawValue },
                "Action for a message nested deeper than max-recursion, with more layers than max-files, or with a MIME structure past libclamav's fixed bounds (its Heuristics.Limits.Exceeded.Email* names): reject (550 5.7.1), quarantine, discard, tag, accept. Legitimate mail does not nest that deep; attackers do, to put a payload where the scan stops."
            ) {
                c, v throws(ConfigKey.ValueError) in
                let a = try action(v)
                if a == .tempfail {
                    throw .init(
                        message: "tempfail would make the MTA retry this message forever: use reject or quarantine")
                }
                c.onNestingLimit = a
            },
            key(
                "on-scan-crash", show: { $0.onScanCrash.rawValue },
                "Action for a message that crashed the scanner (the process) while it was scanned alone, or twice: reject (550 5.7.0, could not be scanned safely), tempfail (451 4.7.0; the MTA retries, and each retry gets the same answer without a scan), quarantine or accept (both with an X-Breakwater-Not-Scanned header). A message in flight when the process ended is scanned alone when it comes again; only a crash then convicts it."
            ) {
                c, v throws(ConfigKey.ValueError) in
                let a = try action(v)
                guard a == .reject || a == .tempfail || a == .quarantine || a == .accept else {
                    throw .init(message: "'\(v)' is not one of reject|tempfail|quarantine|accept")
                }
                c.onScanCrash = a
            },
            key(
                "crash-directory", described: "spool-directory/crash",
                "Where a small record of each scan in flight is written (and removed when it ends), where the suspects of a crash are kept across restarts, and where copies of convicted messages go (crash-copies). Created (mode 0700) if missing. It must outlive a restart of the service: not a private /tmp."
            ) {
                c, v throws(ConfigKey.ValueError) in
                guard v.hasPrefix("/") else { throw .init(message: "'\(v)' is not an absolute path") }
                c.crashDirectoryOverride = v
            },
            key(
                "crash-copies", show: { String($0.crashCopies) },
                "Copies of messages convicted of crashing the scanner kept in crash-directory (mode 0600; named crashed-DIGEST.eml) for a report upstream; past this many none is added. 0: keep none."
            ) {
                c, v throws(ConfigKey.ValueError) in
                guard let n = Int(v), n >= 0, n <= 100_000 else {
                    throw .init(message: "'\(v)' is not a count from 0 to 100000")
                }
                c.crashCopies = n
            },
            key("scanned-header", show: { $0.scannedHeader }, "Header added to accepted mail; empty for none.") {
                c, v throws(ConfigKey.ValueError) in
                guard v.allSatisfy({ $0.isASCII && $0 != ":" && $0 != " " && !$0.isNewline }) else {
                    throw .init(message: "'\(v)' is not a header name")
                }
                c.scannedHeader = v
            },
            key(
                "skip-authenticated", show: { ConfigText.yesNo($0.skipAuthenticated) },
                "Do not scan mail from SMTP-authenticated senders ({auth_authen})."
            ) {
                c, v throws(ConfigKey.ValueError) in c.skipAuthenticated = try bool(v)
            },
            key(
                "skip-networks", show: { ConfigText.list($0.skipNetworks.map(\.description)) },
                "Client networks not scanned (CIDR, IPv4 or IPv6, comma-separated; repeatable).", repeatable: true
            ) {
                c, v throws(ConfigKey.ValueError) in
                for item in try list(v) {
                    guard let n = CIDR(item) else {
                        throw .init(message: "'\(item)' is not a network: write 192.0.2.0/24 or 2001:db8::/32")
                    }
                    c.skipNetworks.append(n)
                }
            },
            key(
                "skip-senders", show: { ConfigText.list($0.skipSenders) },
                "Envelope senders not scanned (addresses or @domain; repeatable).", repeatable: true
            ) {
                c, v throws(ConfigKey.ValueError) in c.skipSenders += try list(v).map(AddressList.bare)
            },
            key(
                "skip-recipients", show: { ConfigText.list($0.skipRecipients) },
                "Recipients whose mail is not scanned (all recipients must match; repeatable).", repeatable: true
            ) {
                c, v throws(ConfigKey.ValueError) in c.skipRecipients += try list(v).map(AddressList.bare)
            },
            key(
                "max-scan-size", show: { ByteSize.format($0.limits.maxScanSize) },
                "Most bytes libclamav scans per message, all layers together; past it, on-limit applies."
            ) {
                c, v throws(ConfigKey.ValueError) in c.limits.maxScanSize = try size(v)
            },
            key(
                "max-file-size", show: { ByteSize.format($0.limits.maxFileSize) },
                "Largest single layer (attachment, archive member) scanned; a larger one is skipped and on-limit applies."
            ) {
                c, v throws(ConfigKey.ValueError) in c.limits.maxFileSize = try size(v)
            },
            key(
                "prefault-size", show: { ByteSize.format($0.limits.prefaultSize) },
                "Parts and archive members up to this size get their memory at once when libclamav maps them, instead of a page fault per page; with several workers each such fault interrupts every other CPU. 0 turns it off. Costs at most this minus 8M of memory per mapped part (libclamav keeps up to 8M of a part anyway). Used only with libclamav 1.4.x and after a start-up self-test; the log says prefault: on or off, and why."
            ) {
                c, v throws(ConfigKey.ValueError) in c.limits.prefaultSize = try size(v)
            },
            key(
                "max-recursion", show: { "\($0.limits.maxRecursion)" },
                "Deepest nesting scanned (zip in zip in forwarded message ...); deeper, on-nesting-limit applies."
            ) {
                c, v throws(ConfigKey.ValueError) in c.limits.maxRecursion = UInt32(try int(v, 1...100))
            },
            key(
                "max-files", show: { "\($0.limits.maxFiles)" },
                "Most layers (attachments, archive members) scanned per message; past it, on-nesting-limit applies."
            ) {
                c, v throws(ConfigKey.ValueError) in c.limits.maxFiles = UInt32(try int(v, 1...1_000_000))
            },
            key(
                "max-scan-time", show: { ConfigText.seconds(Double($0.limits.maxScanTimeMilliseconds) / 1000) },
                "Longest scan of one message; past it, on-limit applies."
            ) {
                c, v throws(ConfigKey.ValueError) in
                c.limits.maxScanTimeMilliseconds = UInt32(min(try duration(v) * 1000, 3_600_000))
            },
            key(
                "heuristics", show: { ConfigText.heuristics($0.limits.heuristics) },
                "Heuristic alerts besides exceeded limits: \(Heuristics.names.map(\.0).joined(separator: ", ")), or none."
            ) {
                c, v throws(ConfigKey.ValueError) in
                var h: Heuristics = []
                for item in try list(v) where item != "none" {
                    guard let f = Heuristics.names.first(where: { $0.0 == item }) else {
                        throw .init(
                            message:
                                "unknown heuristic '\(item)': use \(Heuristics.names.map(\.0).joined(separator: ", ")) or none"
                        )
                    }
                    h.insert(f.1)
                }
                c.limits.heuristics = h
            },
            key(
                "milter-timeout", show: { ConfigText.seconds($0.milterTimeout) },
                "How long libmilter waits for the MTA before dropping a session."
            ) {
                c, v throws(ConfigKey.ValueError) in c.milterTimeout = try duration(v)
            },
            key("log-level", show: { $0.logLevel }, "debug, info, notice, warning or error.") {
                c, v throws(ConfigKey.ValueError) in
                guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v) else {
                    throw .init(message: "unknown log level '\(v)': use debug, info, notice, warning or error")
                }
                c.logLevel = v
            },
        ] + waveKeys + opsKeys

    /// A key whose default is the value `Config()` holds, written by `show`.
    static func key(
        _ name: String, show: @escaping @Sendable (Config) -> String, _ help: String, repeatable: Bool = false,
        _ apply: @escaping @Sendable (inout Config, String) throws(ConfigKey.ValueError) -> Void
    ) -> ConfigKey {
        ConfigKey(name: name, defaultText: show(Config()), help: help, repeatable: repeatable, show: show, apply: apply)
    }

    /// A key whose default is not one value: `described` says what it is.
    static func key(
        _ name: String, described: String, _ help: String, repeatable: Bool = false,
        _ apply: @escaping @Sendable (inout Config, String) throws(ConfigKey.ValueError) -> Void
    ) -> ConfigKey {
        ConfigKey(name: name, defaultText: described, help: help, repeatable: repeatable, show: nil, apply: apply)
    }

    // MARK: value parsers

    static func int(_ v: String, _ range: ClosedRange<Int>) throws(ConfigKey.ValueError) -> Int {
        guard let n = Int(v) else { throw .init(message: "'\(v)' is not a whole number") }
        guard range.contains(n) else {
            throw .init(message: "\(n) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    static func size(_ v: String) throws(ConfigKey.ValueError) -> UInt64 {
        do { return try ByteSize.parse(v) } catch { throw .init(message: error.description) }
    }

    /// `90`, `90s`, `500ms`, `5m`, `1h`.
    static func duration(_ v: String) throws(ConfigKey.ValueError) -> Double {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, mult) in units where v.hasSuffix(suffix) {
            if let n = Double(v.dropLast(suffix.count)), n >= 0 { return n * mult }
        }
        if let n = Double(v), n >= 0 { return n }
        throw .init(message: "'\(v)' is not a duration: write 30s, 500ms, 5m or 1h")
    }

    static func bool(_ v: String) throws(ConfigKey.ValueError) -> Bool {
        switch v.lowercased() {
        case "yes", "true", "on", "1": return true
        case "no", "false", "off", "0": return false
        default: throw .init(message: "'\(v)' is not yes or no")
        }
    }

    static func action(_ v: String) throws(ConfigKey.ValueError) -> Action {
        guard let a = Action.parse(v) else { throw .init(message: "unknown action '\(v)': use \(Action.list)") }
        return a
    }

    static func list(_ v: String) throws(ConfigKey.ValueError) -> [String] {
        v.split(separator: ",").map { $0.trimmed }.filter { !$0.isEmpty }
    }

    // MARK: loading

    /// Applies `key = value` to the configuration; `source` and `line` locate errors.
    package mutating func set(_ name: String, _ value: String, source: String, line: Int?) throws(ConfigError) {
        guard let k = Config.keys.first(where: { $0.name == name }) else {
            var msg = "unknown key '\(name)'"
            if let close = Config.keys.map(\.name).min(by: { editDistance($0, name) < editDistance($1, name) }),
                editDistance(close, name) <= 3
            {
                msg += " (did you mean '\(close)'?)"
            }
            throw ConfigError(source: source, line: line, message: msg)
        }
        do {
            try k.apply(&self, value)
        } catch {
            throw ConfigError(source: source, line: line, message: "\(name): \(error.message)")
        }
    }

    /// Parses config file text. Lines are `key = value`; `#` starts a comment line; blank lines are
    /// ignored. A value may be quoted with double quotes to keep leading or trailing spaces.
    package mutating func apply(fileText: String, source: String) throws(ConfigError) {
        var lineNo = 0
        var seen: [String: Int] = [:]
        // "\r\n" is one Character in Swift, not a "\n": a file with CRLF line ends is split on both.
        for raw in fileText.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNo += 1
            let line = raw.trimmed
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError(source: source, line: lineNo, message: "expected 'key = value', found '\(line)'")
            }
            let name = line[..<eq].trimmed
            var value = line[line.index(after: eq)...].trimmed
            if name.isEmpty {
                throw ConfigError(source: source, line: lineNo, message: "missing key before '='")
            }
            if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            if let k = Config.keys.first(where: { $0.name == name }), !k.repeatable, let prev = seen[name] {
                throw ConfigError(source: source, line: lineNo, message: "'\(name)' is already set on line \(prev)")
            }
            seen[name] = lineNo
            try set(name, value, source: source, line: lineNo)
        }
    }

    /// What every command reads: the defaults, then the file (`path`, or the default path, which may be
    /// missing), then the command-line `flags` (key, value) in order, then the cross-key checks.
    /// `signatures` given as flags replace the file's directories rather than add to them.
    package static func resolve(path: String?, flags: [(key: String, value: String)]) throws(ConfigError) -> Config {
        var config = Config()
        try config.load(path: path ?? defaultPath, required: path != nil)
        var flagSignatures: [String] = []
        for (key, value) in flags {
            if key == "signatures" {
                flagSignatures.append(value)
            } else {
                try config.set(key, value, source: "command line (--\(key))", line: nil)
            }
        }
        if !flagSignatures.isEmpty {
            config.signatures = []
            for d in flagSignatures {
                try config.set("signatures", d, source: "command line (--signatures)", line: nil)
            }
        }
        try config.validate()
        return config
    }

    /// Loads the file at `path`. `required` is false for the default path: a missing default file means
    /// built-in defaults.
    /// A file named on the command line (`required`) under sudo is opened with the permissions of the
    /// user who ran sudo (InvokingUser): one that user cannot read is refused, and not a byte of it is
    /// shown.
    package mutating func load(path: String, required: Bool, invoker: InvokingUser? = InvokingUser.fromSudo())
        throws(ConfigError)
    {
        let fd: Int32
        if required, let invoker {
            // Read through the descriptor the user opened: the path is not looked up again as root.
            fd = invoker.open(path)
            guard fd >= 0 else {
                throw ConfigError(
                    source: path, line: nil,
                    message:
                        "cannot read: the user who ran sudo (\(invoker)) cannot read it (\(FileWalk.errnoString())), so breakwater does not read it as root either"
                )
            }
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
        }
        if fd < 0 {
            let e = errno
            if e == ENOENT && !required { return }
            throw ConfigError(source: path, line: nil, message: "cannot read: \(FileWalk.errnoString(e))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError(source: path, line: nil, message: "cannot read: \(FileWalk.errnoString())")
            }
            if n == 0 { break }
            bytes += buf[0..<n]
            if bytes.count > 1 << 20 {
                throw ConfigError(source: path, line: nil, message: "larger than 1 MB: not a config file?")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(source: path, line: nil, message: "not UTF-8 text")
        }
        try apply(fileText: text, source: path)
    }

    /// Checks that hold across keys.
    package func validate() throws(ConfigError) {
        if spoolThreshold > memoryBudget {
            throw ConfigError(
                source: "configuration", line: nil,
                message:
                    "spool-threshold (\(ByteSize.format(spoolThreshold))) is larger than memory-budget (\(ByteSize.format(memoryBudget)))"
            )
        }
        if spoolBudget < maxMessageSize {
            // A message of max-message-size could then never be held: the MTA would retry it forever.
            throw ConfigError(
                source: "configuration", line: nil,
                message:
                    "spool-budget (\(ByteSize.format(spoolBudget))) is smaller than max-message-size (\(ByteSize.format(maxMessageSize)))"
            )
        }
    }

    /// A config file with every key commented out at its default.
    package static func documentedDefaults() -> String {
        var out = "# Breakwater configuration. Every key is shown at its default, commented out.\n"
        out += "# Syntax: key = value; repeatable keys may appear on several lines. See breakwater.conf(5).\n"
        for k in keys {
            out += "\n"
            for l in wrap(k.help, width: 76) { out += "# \(l)\n" }
            if k.name == "action" {
                for r in ActionRule.defaults { out += "#action = \(r)\n" }
            } else {
                out += "#\(k.name) = \(k.defaultText)\n"
            }
        }
        return out
    }
}

import ArgumentParser
import BreakwaterCore
import BreakwaterEngine

#if canImport(Glibc)
import Glibc
#endif

/// `breakwater signatures`: ops signatures in the ops directory (local-signatures), never the shipped set.
struct SignaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signatures",
        abstract: "Add, list, remove and test ops signatures (the local-signatures directory).",
        discussion: """
            Ops signatures live in Breakwater-owned files of the ops directory (/var/lib/breakwater/signatures \
            by default): breakwater-local.ndb (exact bytes), breakwater-local.ldb (text with blanks or in any \
            case, regular expressions) and breakwater-local.hsb (SHA-256 of a file). Every change is compiled \
            with libclamav, together with the rest of the set, before the file is replaced atomically; then \
            the running daemon reloads and the command waits for the new engine.
            """,
        subcommands: [
            SignaturesAddCommand.self, SignaturesListCommand.self, SignaturesRemoveCommand.self,
            SignaturesTestCommand.self,
        ]
    )
}

/// What the ops commands share: the store for a configuration, and the reload after a change.
enum SignatureOps {
    static func store(_ config: Config) -> SignatureStore {
        SignatureStore(
            directory: config.localSignatures, prefix: config.ops.localPrefix,
            otherDirectories: otherDirectories(config), limits: config.limits,
            temporaryDirectory: config.spoolDirectory, invoker: InvokingUser.fromSudo())
    }

    /// The directories loaded besides the ops one, for the compile check (the official databases are left
    /// out: a gigabyte and a minute per change, and a local signature cannot break them).
    static func otherDirectories(_ config: Config) -> [String] {
        config.signatureDirectories.filter { $0 != config.localSignatures && $0 != OpsSettings.officialDirectory }
    }

    /// The login that ran the command (the one behind sudo when there is one).
    static func author() -> String {
        if let s = getenv("SUDO_USER"), s.pointee != 0 { return String(cString: s) }
        if let pw = getpwuid(geteuid()), let n = pw.pointee.pw_name { return String(cString: n) }
        return "uid \(geteuid())"
    }

    /// Asks the daemon to reload and waits. No daemon is fine (the file loads when it starts); a reload
    /// that fails is not (exit status 1).
    static func reload(_ config: Config, timeout: Double, what: String) throws {
        do {
            let r = try ControlProtocol.request("RELOAD", socket: config.control, timeout: timeout + 5)
            if r.ok {
                Output.out(ReloadCommand.describe(r.head) + "\n")
            } else {
                Output.err("breakwater signatures: \(what), but the daemon did not load it: \(r.head)\n")
                throw ExitCode(1)
            }
        } catch let e as ControlProtocol.ClientError {
            switch e {
            case .notRunning(let why):
                Output.out("no daemon is running (\(why)): the change loads when breakwater starts\n")
            case .failed(let why):
                Output.err("breakwater signatures: \(what), but the reload could not be requested: \(why)\n")
                throw ExitCode(1)
            }
        }
    }
}

struct SignaturesAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add an ops signature and reload the daemon.",
        discussion: """
            Give exactly one of --text, --regex, --hex, --sha256-of. The name must start with the local-prefix \
            (Breakwater.Local. by default) and be unused. --text matches the text anywhere in a decoded part \
            (plain text, HTML after normalisation, base64 or quoted-printable bodies, attachments); each run of \
            blanks in it matches any white space, line breaks included. --regex takes a PCRE; libclamav only \
            runs it after a literal it requires matched (found in the regex, or --trigger). --hex takes ClamAV \
            hex-signature notation. --sha256-of FILE matches exactly that file as an attachment.

            Exit status: 0 added (and loaded, or no daemon running); 1 refused or the reload failed; 2 usage.
            """
    )

    @OptionGroup var options: OpsOptions

    @Argument(help: ArgumentHelp("The signature name, e.g. Breakwater.Local.Spam.MiniCooper.", valueName: "NAME"))
    var name: String

    @Option(name: .customLong("text"), help: ArgumentHelp("Text to match (one line).", valueName: "TEXT"))
    var text: String?

    @Option(name: .customLong("regex"), help: ArgumentHelp("A PCRE to match (one line).", valueName: "PCRE"))
    var regex: String?

    @Option(name: .customLong("hex"), help: ArgumentHelp("Bytes to match, in ClamAV hex notation.", valueName: "HEX"))
    var hex: String?

    @Option(
        name: .customLong("sha256-of"),
        help: ArgumentHelp("A file (an attachment) to match exactly by its SHA-256.", valueName: "FILE"))
    var sha256Of: String?

    @Flag(name: .customLong("ignore-case"), help: "--text or --regex match in any letter case (ASCII letters).")
    var ignoreCase = false

    @Option(
        name: .customLong("trigger"),
        help: ArgumentHelp(
            "For --regex: a literal text every match contains (when the regex has none of 3 or more characters outside groups).",
            valueName: "TEXT"))
    var trigger: String?

    @Option(
        name: .customLong("comment"),
        help: ArgumentHelp("Why the signature is there (kept beside it, shown by list).", valueName: "TEXT"))
    var comment: String = ""

    @Option(
        name: .customLong("check"),
        help: ArgumentHelp(
            "A directory (or file) of known-good mail: refuse when the signature fires on any of it (repeatable).",
            valueName: "DIR"))
    var check: [String] = []

    @Flag(name: .customLong("force"), help: "Add it even when it fires on --check mail.")
    var force = false

    @Flag(name: .customLong("no-reload"), help: "Only write the file; do not ask the daemon to reload.")
    var noReload = false

    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp("Seconds to wait for the daemon's reload.", valueName: "SECONDS"))
    var timeout: Double = 600

    func validate() throws {
        let given = [text != nil, regex != nil, hex != nil, sha256Of != nil].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give exactly one of --text, --regex, --hex, --sha256-of") }
        if ignoreCase && text == nil && regex == nil {
            throw ValidationError("--ignore-case goes with --text or --regex")
        }
        if trigger != nil && regex == nil { throw ValidationError("--trigger goes with --regex") }
        if force && check.isEmpty { throw ValidationError("--force only makes sense with --check") }
    }

    func run() throws {
        let config = try options.load()
        let pattern: SignaturePattern
        if let text {
            pattern = .text(text, ignoreCase: ignoreCase)
        } else if let regex {
            pattern = .regex(regex, ignoreCase: ignoreCase, trigger: trigger)
        } else if let hex {
            pattern = .hex(hex)
        } else {
            do {
                let (h, size) = try SignatureStore.sha256(ofFile: sha256Of!, as: InvokingUser.fromSudo())
                pattern = .sha256(h, size: size)
            } catch {
                Output.err("breakwater signatures add: \(error)\n")
                throw ExitCode(1)
            }
        }
        let change: SignatureStore.Change
        do {
            change = try SignatureOps.store(config).add(
                name: name, pattern: pattern, comment: comment,
                author: SignatureOps.author(), check: check, force: force)
        } catch {
            Output.err("breakwater signatures add: \(error)\n")
            for m in error.firedOn { Output.err("  fires on \(Escape.text(m))\n") }
            throw ExitCode(1)
        }
        if !change.firedOn.isEmpty {
            Output.err(
                "warning: \(name) fires on \(change.firedOn.count) known-good message(s), added anyway (--force):\n")
            for m in change.firedOn { Output.err("  fires on \(Escape.text(m))\n") }
        }
        var line = "added \(name) to \(change.file): \(change.line)\n"
        if change.checked > 0 {
            line +=
                "checked against \(change.checked) known-good message(s): \(change.firedOn.isEmpty ? "no match" : "\(change.firedOn.count) match(es)")\n"
        }
        Output.out(line)
        if !noReload { try SignatureOps.reload(config, timeout: timeout, what: "\(name) is in \(change.file)") }
    }
}

struct SignaturesRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove an ops signature and reload the daemon.",
        discussion:
            "Exit status: 0 removed (and reloaded, or no daemon running); 1 no such ops signature, or the reload failed."
    )

    @OptionGroup var options: OpsOptions

    @Argument(help: ArgumentHelp("The signature name, as `list` shows it.", valueName: "NAME"))
    var name: String

    @Flag(name: .customLong("no-reload"), help: "Only write the file; do not ask the daemon to reload.")
    var noReload = false

    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp("Seconds to wait for the daemon's reload.", valueName: "SECONDS"))
    var timeout: Double = 600

    func run() throws {
        let config = try options.load()
        let change: SignatureStore.Change
        do {
            change = try SignatureOps.store(config).remove(name: name)
        } catch {
            Output.err("breakwater signatures remove: \(error)\n")
            throw ExitCode(1)
        }
        Output.out("removed \(name) from \(change.file)\n")
        if !noReload { try SignatureOps.reload(config, timeout: timeout, what: "\(name) is gone from \(change.file)") }
    }
}

struct SignaturesListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract:
            "List the signatures: shipped (or configured) and local, with file and type; author, time and comment for ops ones.",
        discussion:
            "Signed databases (.cvd/.cld, the official ones) are named with their file but their signatures are not listed."
    )

    @OptionGroup var options: OpsOptions

    @Flag(name: .customLong("local"), help: "Only the ops directory.")
    var localOnly = false

    @Flag(name: .customLong("json"), help: "One JSON object per signature.")
    var json = false

    func run() throws {
        let config = try options.load()
        var dirs = localOnly ? [] : config.signatureDirectories.filter { $0 != config.localSignatures }
        dirs.append(config.localSignatures)
        var out = ""
        for dir in dirs {
            let isLocal = dir == config.localSignatures
            for file in SignatureCatalog.databaseFiles(in: dir) {
                let type = SignatureCatalog.fileType(file)
                if !SignatureCatalog.namedTypes.contains(type) {
                    if !json && ["cvd", "cld", "cud"].contains(type) {
                        out += "(signed database: signatures not listed)  \(type)  \(file)\n"
                    }
                    continue
                }
                let entries: [CatalogEntry]
                if isLocal {
                    // The service user's directory: read by descriptor, no link followed (DirectoryHandle).
                    do {
                        let handle = try DirectoryHandle(dir)
                        let name = SignatureCatalog.baseName(file)
                        let bytes = try handle.read(name, limit: 1 << 30) ?? []
                        entries = SignatureCatalog.entries(inText: String(decoding: bytes, as: UTF8.self), file: file)
                    } catch {
                        Output.err("breakwater signatures list: \(error): not listed\n")
                        continue
                    }
                } else {
                    entries = SignatureCatalog.entries(inFile: file)
                }
                for e in entries {
                    if json {
                        var fields: [(String, JSONValue)] = [
                            ("name", .string(e.name)), ("set", .string(isLocal ? "local" : "shipped")),
                            ("type", .string(e.type)), ("file", .string(e.file)), ("line", .int(e.line)),
                        ]
                        if let n = e.note {
                            fields += [
                                ("author", .string(n.author)), ("added", .string(n.added)),
                                ("pattern", .string(n.pattern)), ("comment", .string(n.comment)),
                            ]
                        }
                        out += JSONValue.object(fields).rendered + "\n"
                    } else {
                        out += "\(e.name)  \(isLocal ? "local" : "shipped")  \(e.type)  \(e.file)"
                        if let n = e.note {
                            out += "  added \(n.added) by \(n.author)"
                            if !n.comment.isEmpty { out += ": \(n.comment)" }
                            out += "  [\(n.pattern)]"
                        }
                        out += "\n"
                    }
                }
            }
        }
        Output.out(out)
    }
}

struct SignaturesTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Show which signatures match each message (every match, with the file it comes from).",
        discussion: """
            Scans with the signature files as they are on disk now (the configured set plus the ops directory), \
            which is what the daemon loads at its next reload.

            Exit status: 0 nothing matched; 1 something matched; 2 an error.
            """
    )

    @OptionGroup var options: OpsOptions

    @Argument(help: ArgumentHelp("Message files or directories.", valueName: "FILE"))
    var files: [String]

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one message FILE") }
    }

    func run() throws {
        let config = try options.load()
        let dirs = config.signatureDirectories
        let engine: ClamEngine
        do {
            engine = try ClamEngine(directories: dirs, limits: config.limits)
        } catch {
            Output.err("breakwater signatures test: \(error)\n")
            throw ExitCode(2)
        }
        var sources: [String: [String]] = [:]
        for e in SignatureCatalog.entries(in: dirs) { sources[e.name, default: []].append("\(e.file):\(e.line)") }
        var matched = false
        var failed = false
        // Under sudo, the messages are read with the permissions of the user who ran it.
        let invoker = InvokingUser.fromSudo()
        for target in FileWalk.targets(files, as: invoker) {
            var out = ""
            switch target {
            case .stdin:
                out = "-: ERROR use a file\n"
                failed = true
            case .unreadable(let path, let reason):
                out = "\(Escape.text(path)): ERROR \(reason)\n"
                failed = true
            case .file(let path):
                guard let bytes = FileIO.read(path, as: invoker) else {
                    out = "\(Escape.text(path)): ERROR \(FileWalk.errnoString())\(InvokingUser.note(invoker))\n"
                    failed = true
                    break
                }
                let result = bytes.withUnsafeBytes { engine.scan($0, name: path) }
                if let e = result.errorMessage {
                    out = "\(Escape.text(path)): ERROR \(e)\n"
                    failed = true
                } else if result.detections.isEmpty {
                    out = "\(Escape.text(path)): no match\n"
                } else {
                    matched = true
                    out = "\(Escape.text(path)):\n"
                    for d in result.detections {
                        out +=
                            "  \(Escape.text(d.name))  \(sources[d.name]?.joined(separator: ", ") ?? (d.isLimit ? "(libclamav limit)" : "(built into libclamav)"))\n"
                    }
                }
            }
            Output.out(out)
        }
        if failed { throw ExitCode(2) }
        if matched { throw ExitCode(1) }
    }
}

import ArgumentParser
import BreakwaterCore
import BreakwaterEngine
import BreakwaterWaves

#if canImport(Glibc)
import Glibc
#endif

/// `breakwater waves`: the waves the running daemon sees, and turning one into a signature.
struct WavesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waves",
        abstract: "List active and recent spam waves, or promote one to a signature.",
        discussion: """
            A wave is a fuzzy fingerprint of message text seen wave-threshold times within wave-window from more \
            than wave-min-sources client networks (/24 for IPv4, /48 for IPv6; envelope senders are not counted). `breakwater waves` asks the running daemon over the \
            control socket; each wave comes with a suggested signature (the longest run of words all its samples \
            share) as a ready `breakwater signatures add` command line, which `waves promote ID` runs.
            """,
        subcommands: [
            WavesListCommand.self, WavesPromoteCommand.self, WavesFingerprintCommand.self,
            WavesReplayCommand.self, WavesBenchCommand.self,
        ],
        defaultSubcommand: WavesListCommand.self
    )
}

// MARK: - offline tools (hidden): what the fingerprint sees, replaying a corpus, the benchmark

/// The few headers the offline tools need: the raw Subject, the sender address and the client IP of
/// the first Received header (what the milter would know from the MTA).
struct MessageHeaders {
    var subject: String?
    var sender = ""
    var clientIP: [UInt8]?

    init(_ bytes: [UInt8]) {
        var end = bytes.count
        for i in 0..<max(0, bytes.count - 3)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            end = i
            break
        }
        let text = String(decoding: bytes[0..<min(end, 256 << 10)], as: UTF8.self)
        var headers: [(String, String)] = []
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var l = Substring(line)
            if l.hasSuffix("\r") { l = l.dropLast() }
            if let f = l.first, f == " " || f == "\t", !headers.isEmpty {
                headers[headers.count - 1].1 += "\n" + l
            } else if let colon = l.firstIndex(of: ":") {
                headers.append((l[..<colon].lowercased(), String(l[l.index(after: colon)...])))
            }
        }
        subject = headers.first { $0.0 == "subject" }?.1
        let from = headers.first { $0.0 == "return-path" }?.1 ?? headers.first { $0.0 == "from" }?.1 ?? ""
        if let lt = from.lastIndex(of: "<"), let gt = from.lastIndex(of: ">"), lt < gt {
            sender = String(from[from.index(after: lt)..<gt])
        } else {
            sender = from.trimmed
        }
        if let received = headers.first(where: { $0.0 == "received" })?.1,
            let lb = received.firstIndex(of: "["), let rb = received[lb...].firstIndex(of: "]")
        {
            clientIP = CIDR.parseAddress(String(received[received.index(after: lb)..<rb]))
        }
    }
}

struct WavesFingerprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fingerprint",
        abstract:
            "Show what wave detection reads from messages: the layers libclamav hands over and the normalised text.",
        shouldDisplay: false
    )

    @Option(
        name: .customLong("signatures"), help: ArgumentHelp("A signature directory (repeatable).", valueName: "DIR"))
    var signatures: [String] = []

    @Flag(help: "Print the similarity of each message to the first one.")
    var similarity = false

    @Argument(help: ArgumentHelp("Message files.", valueName: "FILE"))
    var files: [String]

    func run() throws {
        let engine = try ClamEngine(
            directories: signatures.isEmpty ? SignatureLocations.defaults() : signatures,
            inspectLayers: true)
        var first: WaveFingerprint?
        for path in files {
            guard let bytes = FileIO.read(path) else {
                Output.err("\(path): cannot read\n")
                continue
            }
            let inspector = WaveLayerInspector(memo: nil, recordLayers: true)
            _ = bytes.withUnsafeBytes { engine.scan($0, name: path, inspector: inspector) }
            let subject = MessageHeaders(bytes).subject.map(WaveSubject.decode)
            Output.out("\(Escape.text(path))\n")
            for l in inspector.layers { Output.out("  layer depth=\(l.depth) type=\(l.type) size=\(l.size)\n") }
            Output.out("  subject: \(subject.map { Escape.text($0) } ?? "-")\n")
            guard let fp = inspector.finish(subject: subject) else {
                Output.out("  no fingerprint: fewer than \(WaveFingerprintBuilder.minimumWords) words of text\n")
                continue
            }
            Output.out("  words: \(fp.words)\n  sample: \(Escape.text(fp.sample.replacing("\n", with: " | ")))\n")
            if similarity {
                if let f = first {
                    Output.out("  similarity to the first: \(format(f.similarity(fp.signature), 3))\n")
                } else {
                    first = fp
                }
            }
        }
    }
}

struct WavesReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract:
            "Run saved messages through the scan and the wave store in order; print each message's wave (JSON lines).",
        discussion:
            "The sender is taken from Return-Path (or From), the client from the first Received header's [address]. Time advances --interval seconds per message.",
        shouldDisplay: false
    )

    @Option(
        name: .customLong("signatures"), help: ArgumentHelp("A signature directory (repeatable).", valueName: "DIR"))
    var signatures: [String] = []

    @Option(help: "Seconds between two messages.")
    var interval: Double = 0.1

    @Option(name: .customLong("wave-threshold"), help: "Messages in the window that make a wave.")
    var threshold = WaveSettings().threshold

    @Argument(help: ArgumentHelp("Message files or directories.", valueName: "PATH"))
    var paths: [String] = []

    func run() throws {
        let engine = try ClamEngine(
            directories: signatures.isEmpty ? SignatureLocations.defaults() : signatures,
            inspectLayers: true)
        var settings = WaveSettings()
        settings.threshold = threshold
        let detector = WaveDetector(settings: settings, stats: Stats())
        let memo = WaveMemo()
        var now = Now.wall()
        for target in FileWalk.targets(paths) {
            guard case .file(let path) = target, let bytes = FileIO.read(path) else { continue }
            now += interval
            let h = MessageHeaders(bytes)
            let inspector = WaveLayerInspector(memo: memo)
            _ = bytes.withUnsafeBytes { engine.scan($0, name: path, inspector: inspector) }
            let fp = inspector.finish(subject: h.subject.map(WaveSubject.decode))
            let o = detector.observe(fp, sender: h.sender, clientIP: h.clientIP, clientAddress: h.sender, now: now)
            var fields: [(String, JSONValue)] = [
                ("path", .string(path)), ("wave", o.wave.map { .string($0) } ?? .null),
            ]
            if let s = o.started { fields.append(("started", .string(s.id))) }
            if fp == nil { fields.append(("fingerprint", .bool(false))) }
            Output.out(JSONValue.object(fields).rendered + "\n")
        }
        for w in detector.waves(now: now) {
            Output.err(WaveReport.text([w], now: now))
        }
    }
}

struct WavesBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the cost of wave fingerprinting against the scan itself, per message, interleaved.",
        discussion: """
            For each round, two engines load the same signatures, one with the file-inspection callback and one \
            without; every message is scanned once by each (alternating which goes first), the inspecting one \
            also fingerprinting and counting the message in a wave store, as the milter does. Times are this \
            thread's CPU time. Fresh engines each round keep libclamav's clean-file cache out of it.
            """,
        shouldDisplay: false
    )

    @Option(
        name: .customLong("signatures"), help: ArgumentHelp("A signature directory (repeatable).", valueName: "DIR"))
    var signatures: [String] = []

    @Option(help: "Rounds over the messages.")
    var rounds = 3

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @Option(
        help:
            "What the inspecting engine's callback does: full (the milter's work), empty (an inspector that reads nothing: libclamav's own cost of the callback), nomemo (full without the repeat memo)."
    )
    var mode = "full"

    @Argument(help: ArgumentHelp("Message files or directories.", valueName: "PATH"))
    var paths: [String]

    static func cpu() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func run() throws {
        let dirs = signatures.isEmpty ? SignatureLocations.defaults() : signatures
        var messages: [(String, [UInt8], MessageHeaders)] = []
        for target in FileWalk.targets(paths) {
            if case .file(let p) = target, let b = FileIO.read(p) { messages.append((p, b, MessageHeaders(b))) }
        }
        guard !messages.isEmpty else { throw ValidationError("no readable message") }
        var plain = [Double](repeating: 0, count: messages.count)  // scan without inspection, summed over rounds
        var inspected = [Double](repeating: 0, count: messages.count)  // scan with inspection + fingerprint + store
        var own = [Double](repeating: 0, count: messages.count)  // finish + store alone
        var fingerprinted = 0
        var waveMessages = 0
        for round in 0..<max(1, rounds) {
            let a = try ClamEngine(directories: dirs, inspectLayers: false)
            let b = try ClamEngine(directories: dirs, inspectLayers: true)
            let detector = WaveDetector(settings: WaveSettings(), stats: Stats())
            let memo = WaveMemo()
            var now = 1_000_000.0
            for (i, m) in messages.enumerated() {
                now += 0.05
                func runPlain() {
                    let t = WavesBenchCommand.cpu()
                    _ = m.1.withUnsafeBytes { a.scan($0) }
                    plain[i] += WavesBenchCommand.cpu() - t
                }
                func runInspected() {
                    let t = WavesBenchCommand.cpu()
                    let inspector = WaveLayerInspector(memo: mode == "nomemo" ? nil : memo)
                    if mode == "empty" {
                        _ = m.1.withUnsafeBytes { b.scan($0, inspector: EmptyInspector()) }
                    } else {
                        _ = m.1.withUnsafeBytes { b.scan($0, inspector: inspector) }
                    }
                    let t2 = WavesBenchCommand.cpu()
                    let fp = inspector.finish(subject: m.2.subject.map(WaveSubject.decode))
                    let o = detector.observe(
                        fp, sender: m.2.sender, clientIP: m.2.clientIP, clientAddress: "", now: now)
                    let t3 = WavesBenchCommand.cpu()
                    inspected[i] += t3 - t
                    own[i] += t3 - t2
                    if round == 0 {
                        if fp != nil { fingerprinted += 1 }
                        if o.wave != nil { waveMessages += 1 }
                    }
                }
                if (i + round) % 2 == 0 {
                    runPlain()
                    runInspected()
                } else {
                    runInspected()
                    runPlain()
                }
            }
        }
        let n = Double(max(1, rounds))
        let totalPlain = plain.reduce(0, +) / n
        let totalInspected = inspected.reduce(0, +) / n
        let ratios = (0..<messages.count).map { plain[$0] > 0 ? (inspected[$0] - plain[$0]) / plain[$0] : 0 }.sorted()
        let median = ratios[ratios.count / 2]
        let overhead = totalPlain > 0 ? (totalInspected - totalPlain) / totalPlain : 0
        let ownShare = totalPlain > 0 ? own.reduce(0, +) / n / totalPlain : 0
        let perMsgPlain = totalPlain / Double(messages.count) * 1000
        let perMsgInspected = totalInspected / Double(messages.count) * 1000
        if json {
            Output.out(
                JSONValue.object([
                    ("messages", .int(messages.count)), ("rounds", .int(Int(n))),
                    ("scan_ms_per_message", .double(perMsgPlain)),
                    ("scan_with_waves_ms_per_message", .double(perMsgInspected)),
                    ("overhead_total", .double(overhead)), ("overhead_median_per_message", .double(median)),
                    ("fingerprint_and_store_share", .double(ownShare)),
                    ("fingerprinted", .int(fingerprinted)), ("wave_messages", .int(waveMessages)),
                ]).rendered + "\n")
        } else {
            Output.out(
                """
                messages: \(messages.count), rounds: \(Int(n))
                scan CPU per message: \(format(perMsgPlain, 3)) ms without inspection, \(format(perMsgInspected, 3)) ms with inspection + fingerprint + store
                overhead: \(format(overhead * 100, 2)) % of scan time in total, median per message \(format(median * 100, 2)) %
                of which fingerprint finish + store: \(format(ownShare * 100, 2)) %
                fingerprinted: \(fingerprinted), in a wave: \(waveMessages)

                """)
        }
    }
}

// MARK: - over the control socket

/// One WAVES request to the daemon; exit status 3 when none is running, 1 on any other failure.
func wavesRequest(_ argument: String, config: Config, command: String) throws -> ControlProtocol.Response {
    let r: ControlProtocol.Response
    do {
        r = try ControlProtocol.request("WAVES \(argument)", socket: config.control, timeout: 30)
    } catch .notRunning(let why) {
        Output.err("breakwater \(command): not running: \(why)\n")
        throw ExitCode(3)
    } catch {
        Output.err("breakwater \(command): \(error)\n")
        throw ExitCode(1)
    }
    guard r.ok else {
        let head = r.head.hasPrefix("unknown request") ? "the daemon does not detect waves (waves = no)" : r.head
        Output.err("breakwater \(command): \(Escape.text(head))\n")
        throw ExitCode(1)
    }
    return r
}

struct WavesListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List active and recent waves with their suggested signatures (the default).",
        discussion: "Exit status: 0 listed; 1 no answer, or wave detection is off; 3 no daemon is running."
    )

    @OptionGroup var options: OpsOptions

    @Flag(name: .customLong("json"), help: "Print the waves as one JSON array.")
    var json = false

    func run() throws {
        let config = try options.load()
        let r = try wavesRequest(json ? "JSON" : "TEXT", config: config, command: "waves")
        Output.out(r.body.map { $0 + "\n" }.joined())
    }
}

struct WavesPromoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract:
            "Add the suggested signature of wave ID (as `breakwater signatures add` does, with its checks) and reload.",
        discussion: """
            Takes the wave's suggested signature from the daemon (a case-insensitive regular expression: the \
            longest run of words its sampled messages share) and runs `breakwater signatures add NAME --regex \
            REGEX --ignore-case --comment 'wave ID: SUBJECT'` with the same options: the name must be free and \
            start with the local-prefix, the whole set must compile, --check (--ham) mail must not match; then \
            the daemon reloads and the command waits for the new engine.

            Before that, the daemon checks the suggestion against the mail it accepted clean most recently \
            (the text of the last 256 such messages, the wave's own first messages left out): compiled by \
            libclamav into an engine of its own, it must match none of them. A suggestion that would have \
            matched recent ham, or one given with --check/--ham, is refused unless --force.

            Exit status: 0 added and loaded; 1 refused (nothing changed), no such wave, or the reload failed; \
            3 no daemon is running.
            """
    )

    @OptionGroup var options: OpsOptions

    @Option(
        name: .customLong("name"),
        help: ArgumentHelp("Signature name (default: the suggested LOCAL-PREFIX + Wave.ID).", valueName: "NAME"))
    var name: String?

    @Option(
        name: [.customLong("check"), .customLong("ham")],
        help: ArgumentHelp(
            "A directory (or file) of known-good mail: refuse when the signature fires on any of it (repeatable).",
            valueName: "DIR"))
    var check: [String] = []

    @Flag(name: .customLong("force"), help: "Add it even when it fires on recently accepted mail or on --check mail.")
    var force = false

    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp("Seconds to wait for the daemon's reload.", valueName: "SECONDS"))
    var timeout: Double = 600

    @Argument(help: ArgumentHelp("The wave, as `breakwater waves` lists it.", valueName: "ID"))
    var id: String

    /// A wave id as the store makes them: `w` and 1 to 16 hex digits (the `w` may be left out).
    static func isWaveID(_ id: String) -> Bool {
        let hex = id.hasPrefix("w") ? id.utf8.dropFirst() : id.utf8[...]
        return !hex.isEmpty && hex.count <= 16
            && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    func validate() throws {
        guard WavesPromoteCommand.isWaveID(id) else {
            throw ValidationError(
                "'\(Escape.text(id.prefix(64)))' is not a wave id (as `breakwater waves` lists it, e.g. w3fa2c81b)")
        }
        if let name {
            do { try SignatureLine.validateName(name, prefix: "") } catch {
                throw ValidationError("--name: \(error)")
            }
        }
    }

    func run() throws {
        let config = try options.load()
        let r = try wavesRequest("SUGGEST \(id)", config: config, command: "waves promote")
        guard r.body.count >= 2 else {
            Output.err("breakwater waves promote: unexpected answer from the daemon: \(Escape.text(r.head))\n")
            throw ExitCode(1)
        }
        let signature = name ?? r.head
        // The daemon's check of the suggestion against recently accepted mail (body line 3).
        let ham = r.body.count > 2 ? r.body[2].split(separator: " ").map(String.init) : []
        if ham.count == 3, ham[0] == "ham", let checked = Int(ham[1]), let matched = Int(ham[2]) {
            if matched > 0 {
                Output.err(
                    "wave \(id): the suggested signature matches \(matched) of the \(checked) messages the daemon accepted clean most recently:\n"
                )
                for e in r.body.dropFirst(3) { Output.err("  \(Escape.text(e))\n") }
                guard force else {
                    Output.err(
                        "breakwater waves promote: not added: it would have matched ham (--force adds it anyway)\n")
                    throw ExitCode(1)
                }
                Output.err("added anyway (--force)\n")
            } else {
                Output.out("wave \(id): checked against \(checked) recently accepted message(s): no match\n")
            }
        } else if r.body.count > 2, r.body[2].hasPrefix("ham-error ") {
            Output.err("wave \(id): \(Escape.text(r.body[2].dropFirst(10)))\n")
            guard force else {
                Output.err(
                    "breakwater waves promote: not added: it could not be checked against recent mail (--force adds it anyway)\n"
                )
                throw ExitCode(1)
            }
        } else {
            Output.err("wave \(id): the daemon did not check the suggestion against recent mail\n")
        }
        // The same command as `breakwater signatures add`, with the same options.
        var args = [
            signature, "--regex", r.body[0], "--ignore-case", "--comment", r.body[1],
            "--timeout", String(timeout),
        ]
        if let f = options.configFile { args += ["--config", f] }
        args += [
            "--control", config.control, "--local-signatures", config.localSignatures,
            "--local-prefix", config.ops.localPrefix,
        ]
        for d in options.signatures { args += ["--signatures", d] }
        if let o = options.officialSignatures { args += ["--official-signatures", o] }
        for d in check { args += ["--check", d] }
        if force && !check.isEmpty { args.append("--force") }
        Output.out(
            "wave \(id): breakwater signatures add \(Escape.shell(signature)) --regex \(WaveSuggestion.shellQuote(r.body[0])) --ignore-case --comment \(WaveSuggestion.shellQuote(r.body[1]))\n"
        )
        let add = try SignaturesAddCommand.parse(args)
        try add.run()
        _ = try? ControlProtocol.request("WAVES PROMOTED \(id) \(signature)", socket: config.control, timeout: 10)
    }
}

/// An inspector that reads nothing (the benchmark's measure of libclamav's own cost of the callback).
final class EmptyInspector: LayerInspector {
    func inspect(fd: Int32, type: String, depth: Int, size: Int) {}
}

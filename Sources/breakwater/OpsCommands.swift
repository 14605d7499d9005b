import ArgumentParser
import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// The configuration the ops commands (`reload`, `status`, `signatures`) need: the file, and the keys
/// they use as flags, with the same names, defaults and checks as `breakwater run`.
struct OpsOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "Configuration file (default \(Config.defaultPath); when that file does not exist, built-in defaults apply).",
            valueName: "FILE"))
    var configFile: String?

    @Option(
        name: .customLong("control"),
        help: ArgumentHelp("The daemon's control socket (the control key).", valueName: "PATH"))
    var control: String?

    @Option(
        name: .customLong("local-signatures"),
        help: ArgumentHelp(
            "The ops signature directory (the local-signatures key).", valueName: "DIR"))
    var localSignatures: String?

    @Option(
        name: .customLong("signatures"),
        help: ArgumentHelp(
            "A signature directory loaded besides the ops one (repeatable; the signatures key; default: the shipped set).",
            valueName: "DIR"))
    var signatures: [String] = []

    @Option(
        name: .customLong("local-prefix"),
        help: ArgumentHelp("Required start of ops signature names (the local-prefix key).", valueName: "PREFIX"))
    var localPrefix: String?

    @Option(
        name: .customLong("official-signatures"),
        help: ArgumentHelp(
            "Also load the official ClamAV databases (the official-signatures key).", valueName: "yes|no"))
    var officialSignatures: String?

    /// Defaults, then the file, then these flags; errors located and printed, exit status 2.
    func load() throws -> Config {
        let given: [(String, String?)] = [
            ("control", control), ("local-signatures", localSignatures),
            ("local-prefix", localPrefix), ("official-signatures", officialSignatures),
        ]
        let flags =
            given.compactMap { key, value in value.map { (key: key, value: $0) } }
            + signatures.map { (key: "signatures", value: $0) }
        do {
            return try Config.resolve(path: configFile, flags: flags)
        } catch {
            Output.err("breakwater: \(error)\n")
            throw ExitCode(2)
        }
    }
}

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload the running daemon's signatures and wait for the new engine.",
        discussion: """
            Asks the daemon over its control socket to compile a new engine from the signature directories. \
            Mail keeps being scanned with the current engine meanwhile; the new one takes over when it is ready. \
            Prints the new engine generation and signature count.

            Exit status: 0 loaded; 1 the new set did not load (the daemon keeps the previous engine; the \
            error names the file and line) or no answer in time; 3 no daemon is running.
            """
    )

    @OptionGroup var options: OpsOptions

    @Option(
        name: .customLong("timeout"), help: ArgumentHelp("Seconds to wait for the new engine.", valueName: "SECONDS"))
    var timeout: Double = 600

    @Flag(name: .customLong("no-wait"), help: "Start the reload and return at once.")
    var noWait = false

    func run() throws {
        let config = try options.load()
        let r: ControlProtocol.Response
        do {
            r = try ControlProtocol.request(
                noWait ? "RELOAD NOWAIT" : "RELOAD", socket: config.control, timeout: timeout + 5)
        } catch .notRunning(let why) {
            Output.err("breakwater reload: \(why)\n")
            throw ExitCode(3)
        } catch {
            Output.err("breakwater reload: \(error)\n")
            throw ExitCode(1)
        }
        guard r.ok else {
            Output.err("breakwater reload: \(r.head)\n")
            throw ExitCode(1)
        }
        Output.out(ReloadCommand.describe(r.head) + "\n")
    }
}

extension ReloadCommand {
    /// `generation 3 signatures 42 ms 9` (the daemon's answer) -> `loaded engine generation 3: 42 signatures, built in 9 ms`.
    static func describe(_ head: String) -> String {
        let w = head.split(separator: " ").map(String.init)
        guard w.count == 6, w[0] == "generation", w[2] == "signatures", w[4] == "ms" else { return head }
        return "loaded engine generation \(w[1]): \(w[3]) signatures, built in \(w[5]) ms"
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running daemon's state: engine, last reload, scan slots, counters.",
        discussion: """
            Version, uptime, engine generation, signatures and their directories, when they were loaded, the \
            last reload and its error, scan slots busy, messages waiting, buffered bytes against the memory \
            budget, spooled bytes against the spool budget, and the message counters since start (tempfails by cause).

            Exit status: 0 running; 1 the last reload failed (the daemon serves the previous engine); 3 no \
            daemon is running.
            """
    )

    @OptionGroup var options: OpsOptions

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    func run() throws {
        let config = try options.load()
        let r: ControlProtocol.Response
        do {
            r = try ControlProtocol.request(json ? "STATUS JSON" : "STATUS TEXT", socket: config.control, timeout: 30)
        } catch .notRunning(let why) {
            Output.err("breakwater status: not running: \(why)\n")
            throw ExitCode(3)
        } catch {
            Output.err("breakwater status: \(error)\n")
            throw ExitCode(1)
        }
        guard r.ok else {
            Output.err("breakwater status: \(r.head)\n")
            throw ExitCode(1)
        }
        Output.out(r.body.map { $0 + "\n" }.joined())
        let failed =
            json ? r.body.contains { $0.contains("\"succeeded\":false") } : r.body.contains { $0.contains(" FAILED, ") }
        if failed { throw ExitCode(1) }
    }
}

import ArgumentParser
import BreakwaterCore
import BreakwaterMilter
import Logging

/// `--config FILE` plus every config key as `--KEY VALUE`, shared by the commands that read the
/// configuration.
struct ConfigOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "Configuration file (default \(Config.defaultPath); when that file does not exist, built-in defaults apply).",
            valueName: "FILE"))
    var configFile: String?

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp(
            "Any configuration key as --KEY VALUE or --KEY=VALUE (see below and breakwater.conf(5)); flags override the file.",
            valueName: "--KEY VALUE"))
    var settings: [String] = []

    /// Defaults, then the file, then the flags; every error located.
    func load() throws(ConfigError) -> Config {
        var flags: [(key: String, value: String)] = []
        var i = 0
        while i < settings.count {
            let arg = settings[i]
            guard arg.hasPrefix("--") else {
                throw ConfigError(source: "command line", line: nil, message: "unexpected argument '\(arg)'")
            }
            var name = String(arg.dropFirst(2))
            var value: String
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            } else {
                guard i + 1 < settings.count else {
                    throw ConfigError(source: "command line", line: nil, message: "--\(name) needs a value")
                }
                i += 1
                value = settings[i]
            }
            flags.append((key: name, value: value))
            i += 1
        }
        return try Config.resolve(path: configFile, flags: flags)
    }

    static var keysHelp: String {
        var s = "CONFIGURATION KEYS (file: key = value; flag: --key value):\n"
        for k in Config.keys {
            s += "  --\(k.name) (default: \(k.defaultText))\(k.repeatable ? " [repeatable]" : "")\n      \(k.help)\n"
        }
        return s
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the milter in the foreground (systemd runs it as is).",
        discussion: """
            Listens on the configured socket for Postfix or Sendmail, scans each message at end of data with \
            the in-process libclamav engine, and answers accept, reject (5xx) or tempfail (4xx). SIGTERM stops \
            taking connections and lets messages in progress finish; SIGUSR2 reloads the signatures.

            """ + ConfigOptions.keysHelp
    )

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let config: Config
        do { config = try options.load() } catch {
            Output.err("breakwater: \(error)\n")
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: config.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "breakwater")
        do {
            let daemon = try MilterDaemon(config: config, logger: logger)
            installServices(on: daemon)
            try daemon.run()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration without starting (the signatures are not loaded).",
        discussion:
            "Exit status 0 when the configuration is valid, 2 otherwise; errors are printed as FILE:LINE: what is wrong.\n\n"
            + ConfigOptions.keysHelp
    )

    @OptionGroup var options: ConfigOptions

    @Flag(
        name: .customLong("print-defaults"),
        help: "Print a configuration file with every key at its default, commented.")
    var printDefaults = false

    @Option(
        name: .customLong("unit"),
        help: ArgumentHelp(
            "The systemd unit whose MemoryMax= the memory plan is checked against (default \(MemoryPlanReport.defaultUnit), with /etc/systemd/system's copy and drop-ins).",
            valueName: "FILE"))
    var unit = MemoryPlanReport.defaultUnit

    func run() throws {
        if printDefaults {
            Output.out(Config.documentedDefaults())
            return
        }
        let config: Config
        do { config = try options.load() } catch {
            Output.err("breakwater: \(error)\n")
            throw ExitCode(2)
        }
        Output.out(
            "configuration OK: socket \(config.socket), \(config.workers) scan slots, signatures from \(config.signatureDirectories.joined(separator: ", "))\n"
        )
        Output.out(MemoryPlanReport.lines(config, unit: unit).lines.joined(separator: "\n") + "\n")
    }
}

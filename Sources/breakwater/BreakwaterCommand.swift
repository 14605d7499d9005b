import ArgumentParser
import BreakwaterCore

struct BreakwaterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breakwater",
        abstract:
            "A spam and malware pre-filter for Postfix and Sendmail: a milter with an in-process libclamav engine.",
        discussion: """
            Breakwater scans every inbound message with one shared, compiled libclamav engine behind a bounded \
            worker pool, and answers the MTA with accept, reject (5xx) or tempfail (4xx).

            See breakwater(8) and breakwater.conf(5).
            """,
        version: Breakwater.version,
        subcommands: [
            RunCommand.self, ScanCommand.self, CheckConfigCommand.self, WavesCommand.self,
            SignaturesCommand.self, ReloadCommand.self, StatusCommand.self,
        ]
    )
}

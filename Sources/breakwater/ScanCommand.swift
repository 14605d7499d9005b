import ArgumentParser
import BreakwaterCore
import BreakwaterEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Scan saved messages with the signature set, as clamscan does.",
        discussion: """
            PATH is a message file, a directory of messages (scanned recursively) or - for standard input; \
            --files-from reads more PATHs from a file, one per line. \
            Prints one line per message (path: OK, path: NAME FOUND, path: ERROR reason) and a summary.

            Exit status: 0 all clean, 1 something found, 2 an error.
            """
    )

    @Option(
        name: .customLong("signatures"),
        help: ArgumentHelp(
            "A signature directory (repeatable). Default: the shipped set plus /var/lib/breakwater/signatures when it exists.",
            valueName: "DIR"))
    var signatures: [String] = []

    @Option(name: .customLong("jobs"), help: "Scan with N threads sharing one engine.")
    var jobs: Int = 1

    @Flag(name: .customLong("json"), help: "Print one JSON object per message (all signature names, scan time).")
    var json = false

    @Flag(name: .customLong("no-summary"), help: "Do not print the summary line.")
    var noSummary = false

    @Option(
        name: .customLong("max-file-size"),
        help: ArgumentHelp("Largest single layer scanned (bytes, or with K/M/G).", valueName: "SIZE"))
    var maxFileSize: String?

    @Option(
        name: .customLong("max-scan-size"),
        help: ArgumentHelp("Most bytes scanned per message (bytes, or with K/M/G).", valueName: "SIZE"))
    var maxScanSize: String?

    @Option(
        name: .customLong("prefault-size"),
        help: ArgumentHelp(
            "Parts up to this size get their memory at once instead of a page fault per page (0: never; default 16M; see breakwater.conf(5)).",
            valueName: "SIZE"))
    var prefaultSize: String?

    @Option(
        name: .customLong("files-from"),
        help: ArgumentHelp(
            "Also scan the PATHs listed in FILE, one per line (- reads the list from standard input). For thousands of files: each PATH on the command line costs more to parse than the one before it.",
            valueName: "FILE"))
    var filesFrom: String?

    @Argument(help: ArgumentHelp("Message files, directories, or - for standard input.", valueName: "PATH"))
    var paths: [String] = []

    func validate() throws {
        guard jobs >= 1 && jobs <= 256 else { throw ValidationError("--jobs must be between 1 and 256") }
        guard !paths.isEmpty || filesFrom != nil else {
            throw ValidationError(
                "name at least one PATH (a message, a directory, or - for stdin), or --files-from FILE")
        }
        if filesFrom == "-" && paths.contains("-") {
            throw ValidationError("standard input cannot hold both a message (PATH -) and the list of --files-from -")
        }
    }

    struct ListError: Error, CustomStringConvertible {
        let description: String
    }

    /// The PATHs listed in `file` (or standard input for -): one per line, empty lines skipped, a
    /// CR before the line end dropped.
    static func listedPaths(_ file: String) throws(ListError) -> [String] {
        let limitGiB = 1
        let read = file == "-" ? FileIO.readAll(fd: 0, limit: limitGiB << 30) : FileIO.read(file, limit: limitGiB << 30)
        guard let bytes = read else {
            // Read once; only a failure is looked at again, to say why.
            let why = errno == EFBIG ? "larger than \(limitGiB) GiB" : FileWalk.errnoString()
            var st = stat()
            if file != "-" && stat(file, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
                throw ListError(description: "--files-from \(file): not a regular file")
            }
            let what = file == "-" ? "standard input" : "it"
            throw ListError(description: "--files-from \(file): cannot read \(what): \(why)")
        }
        return bytes.split(separator: UInt8(ascii: "\n")).compactMap { line in
            let l = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
            return l.isEmpty ? nil : String(decoding: l, as: UTF8.self)
        }
    }

    func run() throws {
        var limits = EngineLimits()
        do {
            if let s = maxFileSize { limits.maxFileSize = try ByteSize.parse(s) }
            if let s = maxScanSize { limits.maxScanSize = try ByteSize.parse(s) }
            if let s = prefaultSize { limits.prefaultSize = try ByteSize.parse(s) }
        } catch {
            throw ValidationError("\(error)")
        }
        var all = paths
        if let filesFrom {
            do {
                all += try ScanCommand.listedPaths(filesFrom)
            } catch {
                Output.err("breakwater: \(error)\n")
                throw ExitCode(2)
            }
        }
        let dirs = signatures.isEmpty ? SignatureLocations.defaults() : signatures
        let engine: ClamEngine
        do {
            engine = try ClamEngine(directories: dirs, limits: limits)
        } catch {
            Output.err("breakwater: \(error)\n")
            throw ExitCode(2)
        }
        let targets = FileWalk.targets(all)
        let scanner = BatchScan(engine: engine, targets: targets, json: json)
        let start = Now.monotonic()
        scanner.run(jobs: jobs)
        let seconds = Now.monotonic() - start
        let t = scanner.totals.withLock { $0 }
        if !noSummary {
            let rate = seconds > 0 ? Double(t.messages) / seconds : 0
            let line =
                "messages: \(t.messages), detected: \(t.detected), errors: \(t.errors), seconds: \(format(seconds, 3)), msgs/s: \(format(rate, 1)), signatures: \(engine.signatureCount)\n"
            // In --json mode stdout holds only the per-message objects.
            if json { Output.err(line) } else { Output.out("----------- SCAN SUMMARY -----------\n" + line) }
        }
        if t.errors > 0 { throw ExitCode(2) }
        if t.detected > 0 { throw ExitCode(1) }
    }
}

/// Scans a list of targets with N threads sharing one engine, printing each result as it comes.
final class BatchScan: Sendable {
    struct Totals { var messages = 0, detected = 0, errors = 0 }
    let engine: ClamEngine
    let targets: [ScanTarget]
    let json: Bool
    let next = Locked(0)
    let totals = Locked(Totals())

    init(engine: ClamEngine, targets: [ScanTarget], json: Bool) {
        self.engine = engine
        self.targets = targets
        self.json = json
    }

    func run(jobs: Int) {
        if jobs == 1 {
            work()
            return
        }
        let threads = (0..<min(jobs, max(1, targets.count))).map { _ in
            PosixThread.start { [self] in work() }
        }
        threads.forEach { $0.join() }
    }

    private func work() {
        while true {
            let i = next.withLock { n -> Int in
                defer { n += 1 }
                return n
            }
            if i >= targets.count { return }
            report(scanOne(targets[i]))
        }
    }

    private func scanOne(_ target: ScanTarget) -> (String, ScanResult) {
        switch target {
        case .unreadable(let path, let reason):
            return (path, ScanResult(finding: .error(reason), seconds: 0, bytes: 0))
        case .stdin:
            // No limit of its own: the engine's limits apply to what it scans, as for a file.
            guard let data = FileIO.readAll(fd: 0, limit: Int.max) else {
                return ("stdin", ScanResult(finding: .error(FileWalk.errnoString()), seconds: 0, bytes: 0))
            }
            if data.isEmpty {
                return ("stdin", ScanResult(finding: .error("empty message (0 bytes)"), seconds: 0, bytes: 0))
            }
            return ("stdin", data.withUnsafeBytes { engine.scan($0, name: "stdin") })
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { return (path, ScanResult(finding: .error(FileWalk.errnoString()), seconds: 0, bytes: 0)) }
            defer { close(fd) }
            var st = stat()
            if fstat(fd, &st) == 0 && st.st_size == 0 {
                return (path, ScanResult(finding: .error("empty message (0 bytes)"), seconds: 0, bytes: 0))
            }
            return (path, engine.scan(fd: fd, name: path))
        }
    }

    private func report(_ r: (String, ScanResult)) {
        let (path, result) = r
        let line: String
        if json {
            var fields: [(String, JSONValue)] = [("path", .string(path))]
            switch result.finding {
            case .clean: fields.append(("status", .string("clean")))
            case .found: fields.append(("status", .string("found")))
            case .error(let m):
                fields.append(("status", .string("error")))
                fields.append(("error", .string(m)))
            }
            fields.append(("signatures", .array(result.detections.map { .string($0.name) })))
            fields.append(("raw_signatures", .array(result.detections.map { .string($0.rawName) })))
            fields.append(("limit_exceeded", .bool(result.limit != nil)))
            fields.append(("bytes", .int(result.bytes)))
            fields.append(("scan_seconds", .double((result.seconds * 1e6).rounded() / 1e6)))
            line = JSONValue.object(fields).rendered + "\n"
        } else {
            // File names (mail saved under the sender's names) and signature names: escaped for the terminal.
            let shown = Escape.text(path)
            switch result.finding {
            case .clean: line = "\(shown): OK\n"
            case .found(let d): line = d.map { "\(shown): \(Escape.text($0.name)) FOUND\n" }.joined()
            case .error(let m): line = "\(shown): ERROR \(Escape.text(m))\n"
            }
        }
        totals.withLock { t in
            t.messages += 1
            switch result.finding {
            case .clean: break
            case .found: t.detected += 1
            case .error: t.errors += 1
            }
            Output.out(line)  // under the lock: lines from several threads never interleave
        }
    }
}

func format(_ v: Double, _ decimals: Int) -> String {
    var m = 1.0
    for _ in 0..<decimals { m *= 10 }
    let r = (v * m).rounded() / m
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        if have < decimals { s += String(repeating: "0", count: decimals - have) }
    }
    return s
}

import BreakwaterCore
import CClamAV
import CClamAVPrefault
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `CL_DB_STDOPT` is a parenthesised OR in clamav.h and does not import into Swift; it is restated here
/// from the flags it is made of.
let clDBStandardOptions: UInt32 = UInt32(CL_DB_PHISHING) | UInt32(CL_DB_PHISHING_URLS) | UInt32(CL_DB_BYTECODE)

/// The error an engine build or a scan can end with.
package struct EngineError: Error, CustomStringConvertible, Sendable {
    package let message: String
    /// The signature file libclamav named in its complaint, when it named one.
    package let file: String?
    package var description: String { message }
    package init(message: String, file: String?) {
        self.message = message
        self.file = file
    }
}

/// One process-wide `cl_init`, done on first use.
enum ClamAVLibrary {
    private static let initialised: Result<Void, EngineError> = {
        cl_set_clcb_msg(clamavMessageCallback)
        let rc = cl_init(UInt32(CL_INIT_DEFAULT))
        if rc != CL_SUCCESS {
            return .failure(EngineError(message: "cl_init failed: \(String(cString: cl_strerror(rc)))", file: nil))
        }
        return .success(())
    }()

    static func ensureInitialised() throws {
        try initialised.get()
    }

    static var version: String { String(cString: cl_retver()) }
}

/// libclamav reports load problems through one process-wide message callback. While an engine is being
/// built, its messages are collected here so the build error can say which file and line is wrong.
/// Builds are serialised by `buildLock`, so one capture buffer is enough.
final class LoadMessages: Sendable {
    static let shared = LoadMessages()
    private let state = Locked<(capturing: Bool, lines: [String])>((false, []))
    func begin() { state.withLock { $0 = (true, []) } }
    func end() -> [String] {
        state.withLock { s in
            let l = s.lines
            s = (false, [])
            return l
        }
    }
    func add(_ line: String) {
        state.withLock { s in if s.capturing && s.lines.count < 200 { s.lines.append(line) } }
    }
}

private func clamavMessageCallback(
    _ severity: cl_msg, _ fullmsg: UnsafePointer<CChar>?, _ msg: UnsafePointer<CChar>?,
    _ context: UnsafeMutableRawPointer?
) {
    guard let msg else { return }
    // A message of a scan: libclamav passes our scan context, except for messages it logs before
    // setting the scan up, which the thread's current scan catches.
    if let context = context ?? bw_scan_context_get() {
        // A message during a scan (it carries our scan context): only a temporary file that could
        // not be written counts (libclamav goes on without that part).
        guard severity == CL_MSG_ERROR else { return }
        let ctx = Unmanaged<ScanContext>.fromOpaque(context).takeUnretainedValue()
        if ctx.temporaryFileFailure == nil {
            let line = String(cString: msg)
            if ScanContext.isTemporaryFileFailure(line) { ctx.temporaryFileFailure = line.trimmed }
        }
        return
    }
    if severity == CL_MSG_ERROR || severity == CL_MSG_WARN {
        var line = String(cString: msg)
        while line.last == "\n" { line.removeLast() }
        LoadMessages.shared.add(line)
    }
}

/// Where an engine build reports its progress (the context of libclamav's progress callbacks).
final class LoadProgress {
    let report: @Sendable (String, Double) -> Void
    let directories: Int
    var directory = 0
    /// The last (stage, per mille) passed on: libclamav calls back for every signature, the report
    /// is made only when the figure changes.
    private var last = (stage: "", permille: -1)
    init(_ report: @escaping @Sendable (String, Double) -> Void, directories: Int) {
        self.report = report
        self.directories = max(1, directories)
    }

    func post(_ stage: String, _ fraction: Double) {
        let permille = Int(fraction * 1000)
        if permille == last.permille && stage == last.stage { return }
        last = (stage, permille)
        report(stage, fraction)
    }
}

private func loadProgressCallback(_ total: Int, _ done: Int, _ context: UnsafeMutableRawPointer?) -> cl_error_t {
    guard let context, total > 0 else { return CL_SUCCESS }
    let p = Unmanaged<LoadProgress>.fromOpaque(context).takeUnretainedValue()
    let fraction = (Double(p.directory) + min(1, Double(done) / Double(total))) / Double(p.directories)
    p.post("loading signatures", fraction)
    return CL_SUCCESS
}

private func compileProgressCallback(_ total: Int, _ done: Int, _ context: UnsafeMutableRawPointer?) -> cl_error_t {
    guard let context, total > 0 else { return CL_SUCCESS }
    Unmanaged<LoadProgress>.fromOpaque(context).takeUnretainedValue().post(
        "compiling", min(1, Double(done) / Double(total)))
    return CL_SUCCESS
}

/// Collects every signature that matched during one scan (all-matches mode), and anything the scan's
/// inspection hook wants to see. Passed to libclamav as the scan's opaque context.
final class ScanContext {
    var names: [String] = []
    let inspector: LayerInspector?
    /// The first libclamav error of this scan about a temporary file it could not create or write.
    var temporaryFileFailure: String?
    init(inspector: LayerInspector?) { self.inspector = inspector }

    /// libclamav 1.4's error messages when a temporary file cannot be created or written: "Can't
    /// write", "can't create temporary file", "cli_writen: write error", "failed write to output file",
    /// "error writing bytes to file (out of disk space?)", "unable to create file", "Can't generate
    /// temporary file", "Can't create temporary directory for scan".
    static func isTemporaryFileFailure(_ message: String) -> Bool {
        let m = message.lowercased()
        return m.contains("write") || m.contains("writing") || m.contains("create") || m.contains("temporary")
            || m.contains("disk space")
    }
}

private func virusFoundCallback(_ fd: Int32, _ virname: UnsafePointer<CChar>?, _ context: UnsafeMutableRawPointer?) {
    guard let context, let virname else { return }
    let ctx = Unmanaged<ScanContext>.fromOpaque(context).takeUnretainedValue()
    ctx.names.append(String(cString: virname))  // copied: the name points into the engine
}

private func fileInspectionCallback(
    _ fd: Int32, _ type: UnsafePointer<CChar>?, _ ancestors: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
    _ parentSize: Int, _ fileName: UnsafePointer<CChar>?, _ fileSize: Int, _ fileBuffer: UnsafePointer<CChar>?,
    _ recursionLevel: UInt32, _ layerAttributes: UInt32, _ context: UnsafeMutableRawPointer?
) -> cl_error_t {
    guard let context, let type else { return CL_CLEAN }
    let ctx = Unmanaged<ScanContext>.fromOpaque(context).takeUnretainedValue()
    let buffer = fileBuffer.map { UnsafeRawBufferPointer(start: $0, count: fileSize) }
    ctx.inspector?.inspect(
        fd: fd, type: String(cString: type), depth: Int(recursionLevel), size: fileSize, buffer: buffer)
    return CL_CLEAN
}

/// A compiled libclamav engine. Immutable once built and shared by every scanning thread; freed
/// (`cl_engine_free`) when the last holder lets go, so a reload can swap in a new one while scans on the
/// old one finish.
package final class ClamEngine: @unchecked Sendable {
    private let raw: OpaquePointer
    /// Number of signatures libclamav reported loading.
    package let signatureCount: Int
    /// The directories the signatures came from, in load order.
    package let directories: [String]
    package let limits: EngineLimits
    /// Seconds since the epoch when the build finished.
    package let loadedAt: Double
    /// Seconds the load and compile took.
    package let buildSeconds: Double
    private let scanOptions: ScanOptionsBox
    private let wantsInspection: Bool

    /// libclamav's version string.
    package static var libraryVersion: String { ClamAVLibrary.version }

    private static let buildLock = Locked(())

    /// Loads every database file in `directories` (all formats libclamav reads from a directory) and
    /// compiles the engine. Throws with libclamav's message, naming the file when it can.
    /// `progress(stage, fraction)` is called as the load ("loading signatures") and the compile
    /// ("compiling") advance, from the building thread.
    package convenience init(
        directories: [String], limits: EngineLimits = EngineLimits(), inspectLayers: Bool = false,
        progress: (@Sendable (String, Double) -> Void)? = nil
    ) throws {
        try self.init(
            directories: directories, limits: limits, inspectLayers: inspectLayers, gated: true, progress: progress)
    }

    /// `gated`: decide first whether this process uses the mmap wrapper (`Prefault`); false only for the
    /// gate's own self-test engine.
    init(
        directories: [String], limits: EngineLimits = EngineLimits(), inspectLayers: Bool = false, gated: Bool,
        progress: (@Sendable (String, Double) -> Void)? = nil
    ) throws {
        try ClamAVLibrary.ensureInitialised()
        if gated { Prefault.ensureDecided(limits: limits) }
        let start = Now.monotonic()
        guard let engine = cl_engine_new() else {
            throw EngineError(message: "cl_engine_new failed (out of memory?)", file: nil)
        }
        var ok = false
        defer { if !ok { cl_engine_free(engine) } }

        try Self.apply(limits, to: engine)
        cl_engine_set_clcb_virus_found(engine, virusFoundCallback)
        if inspectLayers {
            cl_engine_set_clcb_file_inspection(engine, fileInspectionCallback)
        }

        let report = progress.map { LoadProgress($0, directories: directories.count) }
        if let report {
            let context = Unmanaged.passUnretained(report).toOpaque()
            cl_engine_set_clcb_sigload_progress(engine, loadProgressCallback, context)
            cl_engine_set_clcb_engine_compile_progress(engine, compileProgressCallback, context)
        }
        var sigs: UInt32 = 0
        try withExtendedLifetime(report) {
            try Self.buildLock.withLock { _ in try Self.loadAndCompile(engine, directories, &sigs, report) }
        }
        if report != nil {
            cl_engine_set_clcb_sigload_progress(engine, nil, nil)
            cl_engine_set_clcb_engine_compile_progress(engine, nil, nil)
        }
        ok = true
        self.raw = engine
        self.signatureCount = Int(sigs)
        self.directories = directories
        self.limits = limits
        self.loadedAt = Now.wall()
        self.buildSeconds = Now.monotonic() - start
        self.scanOptions = ScanOptionsBox(heuristics: limits.heuristics)
        self.wantsInspection = inspectLayers
    }

    private static func loadAndCompile(
        _ engine: OpaquePointer, _ directories: [String], _ sigs: inout UInt32, _ report: LoadProgress?
    ) throws {
        for (i, dir) in directories.enumerated() {
            report?.directory = i
            try Self.checkReadableDirectory(dir)
            LoadMessages.shared.begin()
            let rc = cl_load(dir, engine, &sigs, clDBStandardOptions)
            let messages = LoadMessages.shared.end()
            if rc != CL_SUCCESS {
                throw Self.loadError(rc: rc, directory: dir, messages: messages)
            }
            // libclamav skips a YARA file it cannot parse with only a warning (cl_load succeeds):
            // a broken rule file must not silently load as nothing.
            if messages.contains(where: { $0.contains("failed to parse or load") }) {
                throw Self.loadError(rc: CL_EMALFDB, directory: dir, messages: messages)
            }
        }
        LoadMessages.shared.begin()
        let rc = cl_engine_compile(engine)
        let messages = LoadMessages.shared.end()
        if rc != CL_SUCCESS {
            throw Self.loadError(rc: rc, directory: directories.joined(separator: ", "), messages: messages)
        }
    }

    deinit {
        cl_engine_free(raw)
    }

    private static func checkReadableDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) != 0 {
            throw EngineError(message: "signature directory \(dir): \(String(cString: strerror(errno)))", file: dir)
        }
        if (st.st_mode & S_IFMT) != S_IFDIR {
            throw EngineError(message: "signature directory \(dir): not a directory", file: dir)
        }
        if access(dir, R_OK | X_OK) != 0 {
            throw EngineError(message: "signature directory \(dir): \(String(cString: strerror(errno)))", file: dir)
        }
    }

    private static func loadError(rc: cl_error_t, directory: String, messages: [String]) -> EngineError {
        let reason = String(cString: cl_strerror(rc))
        // libclamav names the failing file in one of its messages, e.g.
        // "cli_loaddbdir(): error loading database /x/local.ndb".
        // libclamav 1.4 writes "cli_loaddbdir: error loading database /x/local.ndb"; a YARA file it
        // skipped is named in "cli_loadyara: failed to parse or load 1 yara rules from file /x/r.yar, ...".
        var file: String?
        for m in messages {
            if let r = m.firstRange(of: "error loading database ") {
                file = String(m[r.upperBound...]).trimmed
            } else if file == nil, m.contains("failed to parse or load"), let r = m.firstRange(of: " from file ") {
                file = String(m[r.upperBound...].prefix { $0 != "," }).trimmed
            }
        }
        var text = "cannot load signatures from \(directory): \(reason)"
        if let file { text += " in \(file)" }
        let detail = messages.filter { !$0.contains("error loading database ") }
        if !detail.isEmpty { text += " (" + detail.joined(separator: "; ") + ")" }
        return EngineError(message: text, file: file)
    }

    private static func apply(_ l: EngineLimits, to engine: OpaquePointer) throws {
        func set(_ field: cl_engine_field, _ value: Int64) throws {
            let rc = cl_engine_set_num(engine, field, value)
            if rc != CL_SUCCESS {
                throw EngineError(
                    message: "cannot set engine option \(field): \(String(cString: cl_strerror(rc)))", file: nil)
            }
        }
        try set(CL_ENGINE_MAX_SCANSIZE, Int64(l.maxScanSize))
        try set(CL_ENGINE_MAX_FILESIZE, Int64(l.maxFileSize))
        try set(CL_ENGINE_MAX_RECURSION, Int64(l.maxRecursion))
        try set(CL_ENGINE_MAX_FILES, Int64(l.maxFiles))
        try set(CL_ENGINE_MAX_SCANTIME, Int64(l.maxScanTimeMilliseconds))
        try set(CL_ENGINE_PCRE_MATCH_LIMIT, Int64(l.pcreMatchLimit))
        try set(CL_ENGINE_PCRE_RECMATCH_LIMIT, Int64(l.pcreRecursionLimit))
        try set(CL_ENGINE_PCRE_MAX_FILESIZE, Int64(l.pcreMaxFileSize))
        if let tmp = l.temporaryDirectory {
            let rc = cl_engine_set_str(engine, CL_ENGINE_TMPDIR, tmp)
            if rc != CL_SUCCESS {
                throw EngineError(
                    message: "cannot use temporary directory \(tmp): \(String(cString: cl_strerror(rc)))", file: nil)
            }
        }
    }

    /// Whether the mmap wrapper is compiled in: false only in a sanitizer build, where the sanitizer's
    /// own mmap interceptor stays in charge.
    package static var prefaultAvailable: Bool { bw_prefault_available() != 0 }

    /// Whether this process creates libclamav's page maps populated (`prefault-size`), and why: decided
    /// when the first engine is built (`Prefault`); nil before.
    package static var prefaultStatus: PrefaultStatus? { Prefault.status }

    /// How many of libclamav's page maps were handed out with their pages present so far in this
    /// process (created populated, or reused from the pool).
    package static var prefaultedMaps: UInt { UInt(bw_prefault_count()) + UInt(bw_prefault_reused()) }

    /// Scans a whole message held in memory. The buffer is not copied. `allMatches`: report every
    /// signature that matches (false: stop at the first one, reporting a heuristic such as a limit only
    /// when no signature matched).
    package func scan(
        _ message: UnsafeRawBufferPointer, name: String = "message", inspector: LayerInspector? = nil,
        allMatches: Bool = true
    ) -> ScanResult {
        let start = Now.monotonic()
        guard let base = message.baseAddress ?? (message.count == 0 ? UnsafeRawPointer(bitPattern: 1) : nil) else {
            return ScanResult(finding: .error("empty buffer"), seconds: 0, bytes: 0)
        }
        guard let map = cl_fmap_open_memory(base, message.count) else {
            return ScanResult(finding: .error("cannot map message (out of memory?)"), seconds: 0, bytes: message.count)
        }
        defer { cl_fmap_close(map) }
        return runScan(start: start, bytes: message.count, inspector: inspector, allMatches: allMatches) {
            virname, scanned, options, ctx in
            cl_scanmap_callback(map, name, virname, scanned, self.raw, options, ctx)
        }
    }

    /// Scans a message from a file descriptor (a message spooled to disk).
    package func scan(fd: Int32, name: String = "message", inspector: LayerInspector? = nil, allMatches: Bool = true)
        -> ScanResult
    {
        let start = Now.monotonic()
        var st = stat()
        let size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
        return runScan(start: start, bytes: size, inspector: inspector, allMatches: allMatches) {
            virname, scanned, options, ctx in
            cl_scandesc_callback(fd, name, virname, scanned, self.raw, options, ctx)
        }
    }

    /// Scans a message spooled to a file that nothing else writes to or truncates (the milter's own
    /// unlinked spool file). The file is mapped and scanned as memory: libclamav reads its pages where
    /// they are, instead of copying them into a private map as large as the file (`scan(fd:)`: a
    /// populated anonymous map, then a `pread` of the whole file). Falls back to `scan(fd:)` when the
    /// file cannot be mapped. Not for files others may change: a mapped page cut off by a truncation
    /// is a SIGBUS.
    package func scan(
        privateFile fd: Int32, name: String = "message", inspector: LayerInspector? = nil, allMatches: Bool = true
    ) -> ScanResult {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0, let size = Int(exactly: st.st_size) else {
            return scan(fd: fd, name: name, inspector: inspector, allMatches: allMatches)
        }
        let map = mmap(nil, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
        guard let map, map != UnsafeMutableRawPointer(bitPattern: -1) else {
            return scan(fd: fd, name: name, inspector: inspector, allMatches: allMatches)
        }
        defer { munmap(map, size) }
        return scan(
            UnsafeRawBufferPointer(start: map, count: size), name: name, inspector: inspector, allMatches: allMatches)
    }

    private func runScan(
        start: Double, bytes: Int, inspector: LayerInspector?, allMatches: Bool,
        _ body: (
            UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<UInt>,
            UnsafeMutablePointer<cl_scan_options>, UnsafeMutableRawPointer
        ) -> cl_error_t
    ) -> ScanResult {
        let ctx = ScanContext(inspector: wantsInspection ? inspector : nil)
        var virname: UnsafePointer<CChar>? = nil
        var scanned: UInt = 0
        var options = allMatches ? scanOptions.options : scanOptions.firstMatch
        bw_prefault_set_limit(Int(clamping: limits.prefaultSize))
        let rc = withExtendedLifetime(ctx) {
            let opaque = Unmanaged.passUnretained(ctx).toOpaque()
            bw_scan_context_set(opaque)
            defer { bw_scan_context_set(nil) }
            return body(&virname, &scanned, &options, opaque)
        }
        bw_prefault_set_limit(0)
        let seconds = Now.monotonic() - start
        var result = finish(rc: rc, virname: virname, ctx: ctx, seconds: seconds, bytes: bytes)
        result.temporaryFileFailure = ctx.temporaryFileFailure
        // The scan's own temporary directory or a file in it could not be made or written: a full or
        // broken file system, not the message.
        if [CL_EACCES, CL_ETMPDIR, CL_ETMPFILE, CL_EWRITE, CL_ECREAT].contains(rc), result.temporaryFileFailure == nil {
            result.temporaryFileFailure = String(cString: cl_strerror(rc))
        }
        return result
    }

    private func finish(
        rc: cl_error_t, virname: UnsafePointer<CChar>?, ctx: ScanContext, seconds: Double, bytes: Int
    ) -> ScanResult {
        switch rc {
        case CL_CLEAN:
            return ScanResult(finding: .clean, seconds: seconds, bytes: bytes)
        case CL_VIRUS:
            var names = ctx.names
            if names.isEmpty, let virname { names.append(String(cString: virname)) }
            var seen = Set<String>()
            let detections = names.filter { seen.insert($0).inserted }.map(Detection.init(rawName:))
            return ScanResult(finding: .found(detections), seconds: seconds, bytes: bytes)
        default:
            return ScanResult(finding: .error(String(cString: cl_strerror(rc))), seconds: seconds, bytes: bytes)
        }
    }
}

/// `cl_scan_options` built once per engine from the configured heuristics: all matches, and the same
/// stopping at the first signature.
struct ScanOptionsBox: Sendable {
    let options: cl_scan_options
    let firstMatch: cl_scan_options
    init(heuristics: Heuristics) {
        var o = cl_scan_options()
        o.general = UInt32(CL_SCAN_GENERAL_ALLMATCHES) | UInt32(CL_SCAN_GENERAL_HEURISTICS)
        o.parse = ~UInt32(0)  // mail, archives, PE, ELF, OLE2, PDF, HTML, ... every parser
        var h = UInt32(CL_SCAN_HEURISTIC_EXCEEDS_MAX)  // a limit is reported, never silently clean
        if heuristics.contains(.encryptedArchives) { h |= UInt32(CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE) }
        if heuristics.contains(.encryptedDocuments) { h |= UInt32(CL_SCAN_HEURISTIC_ENCRYPTED_DOC) }
        if heuristics.contains(.macros) { h |= UInt32(CL_SCAN_HEURISTIC_MACROS) }
        if heuristics.contains(.phishing) {
            h |= UInt32(CL_SCAN_HEURISTIC_PHISHING_SSL_MISMATCH) | UInt32(CL_SCAN_HEURISTIC_PHISHING_CLOAK)
        }
        if heuristics.contains(.broken) { h |= UInt32(CL_SCAN_HEURISTIC_BROKEN) }
        o.heuristic = h
        o.mail = 0
        o.dev = 0
        self.options = o
        o.general &= ~UInt32(CL_SCAN_GENERAL_ALLMATCHES)
        self.firstMatch = o
    }
}

import BreakwaterCore
import BreakwaterEngine
import BreakwaterWaves
import CMilter
import CProcessTuning
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Why the daemon could not start.
package struct StartupError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Something that runs beside the milter (control socket, metrics endpoint, signature-directory watch):
/// started after the engine is loaded and before the milter socket opens (one that is
/// `ServedWhileLoading` answers during the load too, from the loading thread); stopped after the drain.
package protocol DaemonService: AnyObject, Sendable {
    func start(_ daemon: MilterDaemon) throws
    func stop()
}

/// `breakwater run`: the libmilter bridge, bounded admission and policy around one shared engine.
package final class MilterDaemon: @unchecked Sendable {
    package let config: Config
    /// The engine in service: a set of scan workers forked from an engine built in the engine host.
    package let engines: EngineHolderOf<WorkerSet>
    /// The engine host process (EngineHost), forked first.
    let host: EngineHostClient
    package let admission: Admission
    package let policy: Policy
    package let stats = Stats()
    /// Log lines for sessions over max-sessions: one a second.
    let sessionsOverCap = OncePerSecond()
    package let logger: Logger
    /// Services started with the daemon; set before `run()`.
    package var services: [DaemonService] = []
    /// Called after each message is answered (from the session's libmilter thread: keep it cheap and
    /// never block); set before `run()`.
    package var observers: [@Sendable (MessageRecord) -> Void] = []
    /// Wave detection (`waves = yes`); nil when off. Set in `init`.
    package private(set) var waves: WaveFeature?
    /// Where libclamav's temporary files go: in memory or on disk (issue 23).
    let scanDirectory: ScanDirectory
    /// Log lines for scans whose temporary files did not fit in memory: one a second.
    let scanMemoryFull = OncePerSecond()
    /// Crash containment: the suspects of earlier crashes and the in-flight record of each scan.
    let crashGuard: CrashGuard
    /// Which process the scans depend on ended while the daemon ran (the engine host, or the engine
    /// process of the set in service), and how.
    let hostEnded = Locked<String?>(nil)

    /// libmilter's callbacks are C functions with no context argument: they reach the daemon here. Set
    /// once before `smfi_main`, read-only afterwards.
    nonisolated(unsafe) static var shared: MilterDaemon!

    package init(config: Config, logger: Logger) throws {
        self.config = config
        self.logger = logger
        if let arenas = MallocArenas.limit(workers: config.workers),
            bw_malloc_set_arena_max(Int32(clamping: arenas)) == 1
        {
            logger.info(
                "malloc: at most \(arenas) arenas, one per scan slot (MALLOC_ARENA_MAX in the environment overrides)")
        }
        if ThreadCacheLimit.isApplied {
            logger.info(
                "malloc: per-thread caches keep blocks of at most 64 bytes (\(MallocThreadCache.tunable); a glibc.malloc.tcache tunable in GLIBC_TUNABLES overrides)"
            )
        }
        // A missing or read-only spool or scan directory would otherwise surface as a tempfail per message.
        for (key, dir) in [
            ("spool-directory", config.spoolDirectory),
            ("scan-temporary-directory", config.limits.temporaryDirectory ?? config.spoolDirectory),
        ] {
            var st = stat()
            if stat(dir, &st) != 0 {
                throw StartupError(
                    "\(key) \(dir): \(FileWalk.errnoString()) (create it, or set \(key) to another directory)")
            }
            if (st.st_mode & S_IFMT) != S_IFDIR {
                throw StartupError("\(key) \(dir): not a directory")
            }
            if access(dir, W_OK | X_OK) != 0 {
                throw StartupError(
                    "\(key) \(dir): not writable by this user (uid \(getuid())): \(FileWalk.errnoString())")
            }
        }
        // Decided before any engine is built, with the configured directory for its self-test file: the
        // daemon's engines may get the relative temporary directory of ScanDirectory.
        _ = Prefault.ensureDecided(limits: config.limits)
        scanDirectory = ScanDirectory.choose(config: config)
        let limits = scanDirectory.engineLimits(config.limits)
        // Before any thread exists: the host and the workers it forks are single-threaded.
        let host = try EngineHost.start(
            limits: limits, inspectLayers: config.wave.enabled, scanDirectory: scanDirectory, logger: logger)
        self.host = host
        admission = Admission(
            slots: config.workers, maxWaiting: config.maxWaiting, maxWait: config.maxWait,
            memoryBudget: config.memoryBudget, spoolBudget: config.spoolBudget)
        var snapshots: SignatureSnapshots?
        do { snapshots = try SignatureSnapshots(parent: config.spoolDirectory) } catch {
            logger.warning(
                "no private copy of the signature set can be kept in \(config.spoolDirectory) (\(error)): reloads run concurrently"
            )
        }
        let log = logger
        let admission = admission
        engines = EngineHolderOf<WorkerSet>(
            directories: { config.signatureDirectories },
            build: { dirs, progress in try host.build(dirs, workers: config.workers, progress: progress) },
            snapshots: snapshots, mode: config.ops.reloadMode,
            onEvent: { message, isError in
                if isError { log.error("\(message)") } else { log.notice("\(message)") }
            })
        engines.attach(
            EngineHolder.Daemon(
                pauseScans: { admission.pauseScans() }, resumeScans: { admission.resumeScans() },
                headroom: {
                    let a = admission.snapshot
                    return MemoryPlan.headroom(config, buffered: a.buffered, busySlots: a.busy)
                }, releaseFreedMemory: { _ = bw_malloc_trim() },
                memory: ServiceMemory(
                    rss: { host.memory().map { $0 + (ProcessMemory.rss ?? 0) } },
                    peak: { host.peak + (ProcessMemory.rss ?? 0) }, resetPeak: {})))
        policy = Policy(config: config)
        crashGuard = try CrashGuard(config: config, stats: stats, logger: logger)
        if config.wave.enabled { waves = WaveFeature(config: config, stats: stats, logger: logger) }
        let stats = self.stats
        host.onEngineLost = { [unowned self] pid in
            lost("the engine process (pid \(pid)) of the signatures in service ended (its scan workers with it)")
        }
        host.onRestart = { old, new, engine in
            stats.workerRestarts.add(1, ordering: .relaxed)
            logger.warning(
                "scan worker \(old) ended: \(new.map { "replaced by worker \($0) (engine process \(engine))" } ?? "no replacement (its engine process \(engine) is gone?)")"
            )
        }
    }

    /// Builds the first engine (progress in the log and in `status`), calling `whileLoading` as it goes.
    func loadEngine(whileLoading: @escaping @Sendable () -> Void) throws {
        let dirs = config.signatureDirectories
        logger.notice("loading signatures from \(dirs.joined(separator: ", "))")
        do { try engines.loadInitial(whileLoading: whileLoading) } catch { throw StartupError("\(error)") }
        let s = engines.status
        logger.notice(
            "engine generation 1 loaded: \(s.signatures) signatures from \(dirs.joined(separator: ", ")) in \(Int(s.buildSeconds * 1000)) ms, engine \(s.engineBytes.map(ByteSize.format) ?? "?") (libclamav \(ClamEngine.libraryVersion))"
        )
        logger.notice("\(scanDirectory.summary)")
        // Decided before the first engine was built (Prefault): whether libclamav's page maps come populated.
        logger.notice("\((ClamEngine.prefaultStatus ?? Prefault.ensureDecided(limits: config.limits)).summary)")
    }

    /// Registers with libmilter, opens the socket and serves until SIGTERM/SIGINT/SIGHUP, then drains.
    package func run() throws {
        MilterDaemon.shared = self
        // The control and metrics sockets first, served from the thread that waits for the engine host's
        // load (InlineServicePump), so that `status` and /health show the load's progress; the milter
        // socket (and systemd's READY=1) only once the engine serves. (The host, which reads the
        // database, is single-threaded whatever this process does: EngineHost.)
        let early = services.compactMap { $0 as? ServedWhileLoading }
        let pump = InlineServicePump(early, daemon: self)
        do {
            try pump.openListeners()
            try loadEngine(whileLoading: pump.tick)
            try pump.start()
        } catch {
            for service in early.reversed() { service.stop() }
            host.stop()
            engines.removeCopies()
            scanDirectory.remove()
            throw (error as? StartupError) ?? StartupError("\(error)")
        }
        var desc = smfiDesc()
        let name = strdup("breakwater")
        desc.xxfi_name = name
        desc.xxfi_version = SMFI_VERSION
        desc.xxfi_flags = UInt(SMFIF_ADDHDRS) | UInt(SMFIF_QUARANTINE)
        desc.xxfi_connect = milterConnect
        desc.xxfi_helo = nil
        desc.xxfi_envfrom = milterEnvFrom
        desc.xxfi_envrcpt = milterEnvRcpt
        desc.xxfi_header = milterHeader
        desc.xxfi_eoh = nil
        desc.xxfi_body = milterBody
        desc.xxfi_eom = milterEOM
        desc.xxfi_abort = milterAbort
        desc.xxfi_close = milterClose
        desc.xxfi_unknown = nil
        desc.xxfi_data = nil
        desc.xxfi_negotiate = milterNegotiate
        guard smfi_register(desc) == MI_SUCCESS else { throw StartupError("smfi_register failed") }

        let socketSpec = config.socket
        guard socketSpec.withCString({ smfi_setconn(UnsafeMutablePointer(mutating: $0)) }) == MI_SUCCESS else {
            throw StartupError(
                "socket \(socketSpec): libmilter does not accept it (write unix:/path or inet:PORT@HOST)")
        }
        _ = smfi_settimeout(Int32(config.milterTimeout.rounded()))
        _ = smfi_setbacklog(256)
        // A unix socket for a chrooted Postfix must be usable by group postfix: umask 007 while creating it.
        let oldMask = umask(0o007)
        let opened = smfi_opensocket(1)  // true: remove a stale unix socket first
        umask(oldMask)
        guard opened == MI_SUCCESS else {
            throw StartupError(
                "cannot listen on \(socketSpec): \(FileWalk.errnoString()) (is another milter on it, or the directory missing?)"
            )
        }
        if !socketIsUnix { MilterDaemon.disableNagleOnListeners() }
        // Before the services open their own sockets: the crash handler closes libmilter's only.
        try crashGuard.arm()
        try startSignalThread()
        for service in services where !(service is ServedWhileLoading) {
            do { try service.start(self) } catch { throw StartupError("\(error)") }
        }
        // libmilter creates its threads (one per busy session) with no attributes of their own, so they
        // get the process default: set it before smfi_main starts any.
        let stackRC = bw_set_default_thread_stack_size(MilterDaemon.sessionThreadStack)
        if stackRC == 0 {
            logger.info("libmilter session threads: \(ByteSize.format(UInt64(MilterDaemon.sessionThreadStack))) stacks")
        } else {
            logger.warning(
                "libmilter threads keep the default stack size: pthread_setattr_default_np: \(String(cString: strerror(stackRC)))"
            )
        }
        logger.notice(
            "listening on \(socketSpec): \(admission.slots) scan slots, \(admission.maxWaiting) may wait up to \(config.maxWait)s, memory budget \(ByteSize.format(config.memoryBudget)), spool over \(ByteSize.format(config.spoolThreshold)) to \(config.spoolDirectory) (spool budget \(ByteSize.format(config.spoolBudget)))"
        )

        let rc = smfi_main()
        logger.notice("stopping: waiting for \(stats.inFlight.load(ordering: .relaxed)) message(s) in progress")
        // Long enough for a message that waited for a slot and then took the longest scan allowed.
        let deadline =
            Now.monotonic() + max(60, config.maxWait + Double(config.limits.maxScanTimeMilliseconds) / 1000 + 5)
        while stats.inFlight.load(ordering: .relaxed) > 0 && Now.monotonic() < deadline {
            usleep(20_000)
        }
        if stats.inFlight.load(ordering: .relaxed) == 0 {
            crashGuard.suspects.removeOwnRecords()
        } else {
            logger.warning(
                "stopped with \(stats.inFlight.load(ordering: .relaxed)) message(s) unfinished (the MTA will retry them)"
            )
        }
        if socketSpec.hasPrefix("unix:") || socketSpec.hasPrefix("local:") {
            let path = String(socketSpec.drop(while: { $0 != ":" }).dropFirst())
            unlink(path)
        }
        for service in services.reversed() { service.stop() }
        host.stop()
        scanDirectory.remove()
        engines.removeCopies()
        if let how = hostEnded.withLock({ $0 }) {
            throw StartupError("\(how): stopped so that the service is restarted")
        }
        if rc != MI_SUCCESS { throw StartupError("libmilter stopped with an error") }
        logger.notice("stopped")
    }

    /// Stack size of libmilter's session threads. They run libmilter, the callbacks, the exchange with a
    /// scan worker, the policy and the wave store's update (a few KB on top of the 12 KB or so the
    /// rest touches; libclamav's deep recursion is in the workers). With glibc's default of
    /// 8 MB, its cache of freed thread stacks (40 MB) holds 5: libmilter ends a worker thread whenever
    /// more than one is idle and starts one per session that finds none, which under load is several
    /// threads per message, and each then maps a fresh 8 MB stack and unmaps it at exit (the unmap
    /// flushes the TLB of every CPU running the daemon). At 256 KB the cache holds 160.
    static let sessionThreadStack = 256 << 10

    /// True for `unix:`/`local:` sockets.
    package var socketIsUnix: Bool { config.socket.hasPrefix("unix:") || config.socket.hasPrefix("local:") }

    /// libmilter does not hand out its listening socket: find it (the only listening TCP socket at this
    /// point) and set TCP_NODELAY, which Linux passes on to every accepted connection. Without it, the
    /// header libmilter writes before its end-of-message reply waits for Postfix's delayed ACK (~40 ms).
    static func disableNagleOnListeners() {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = entry.pointee.name
            guard let fd = Int32(name) else { continue }
            var value: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) == 0, value == 1 else { continue }
            var domain: Int32 = 0
            len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0, domain == AF_INET || domain == AF_INET6
            else { continue }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// SIGUSR2: reload signatures (SIGHUP would stop libmilter). The signals are blocked in every thread
    /// (main blocks them first); this thread takes USR1/USR2 with sigwait, libmilter's takes HUP/TERM/INT.
    private func startSignalThread() throws {
        let started = PosixThread.tryStart(stackSize: 256 << 10) { [self] in
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            sigaddset(&set, SIGUSR2)
            sigaddset(&set, SIGCHLD)
            while true {
                var sig: Int32 = 0
                if sigwait(&set, &sig) != 0 { continue }
                if sig == SIGCHLD && host.reapIfEnded() {
                    // Its workers ended with it: no scan can run. libmilter stops; the messages in flight
                    // get 451 4.3.2; `run` exits non-zero and systemd starts the service again.
                    lost("the engine host process (pid \(host.pid)) \(host.ended ?? "ended")")
                }
                if sig == SIGUSR2 {
                    logger.notice("SIGUSR2: reloading signatures")
                    engines.triggerReload()
                }
            }
        }
        if case .failure(let e) = started { throw StartupError("cannot start the signal thread: \(e)") }
    }

    /// A process every scan depends on ended: no scan can run. libmilter stops; the messages in flight
    /// get 451 4.3.2; `run` exits non-zero and systemd starts the service again.
    private func lost(_ what: String) {
        let first = hostEnded.withLock { h -> Bool in
            defer { if h == nil { h = what } }
            return h == nil
        }
        guard first else { return }
        logger.critical("\(what): stopping (mail is answered 451 4.3.2)")
        _ = smfi_stop()
    }

    // MARK: per-message work

    func newSession() -> Session {
        Session(
            assembly: MessageAssembly(
                buffer: MessageBuffer(
                    admission: admission, spoolThreshold: config.spoolThreshold,
                    spoolDirectory: config.spoolDirectory, memoryFile: { bw_memfd("breakwater-message") }),
                maxMessageSize: config.maxMessageSize))
    }

    /// Scans the message in a slot and decides. Runs on the libmilter thread of the session.
    func decide(_ s: Session, queueID: String, keepAlive: () -> Void) -> (
        Decision, wait: Double, scan: Double, scanned: Bool
    ) {
        let message = s.assembly.buffer
        if let failure = s.assembly.spoolFailure {
            // A spent spool budget is a temporary condition under load, named by the message's own
            // log line (cause=spool_budget); any other failure is an error of its own.
            if !failure.overBudget {
                logger.error("queue=\(Escape.field(queueID)) cannot hold the message: \(failure)")
            }
            return (policy.cannotHold(failure), 0, 0, false)
        }
        if s.assembly.oversize {
            return (policy.oversize(bytes: s.assembly.received, limit: config.maxMessageSize), 0, 0, false)
        }
        if policy.skip.skipsRecipients(s.recipients) {
            return (Decision.skipped, 0, 0, false)
        }
        // A message that crashed the scanner before: answered without a scan once convicted, scanned
        // alone while a suspect (CrashSuspects).
        let digest = s.digest.finish()
        var alone = false
        if let digest, let record = crashGuard.suspects.record(digest) {
            switch record.state {
            case .convicted: return (convicted(s, digest: digest, record: record, queueID: queueID), 0, 0, false)
            case .suspect:
                alone = true
                logger.notice(
                    "queue=\(Escape.field(queueID)) from=<\(Escape.field(s.sender.trimmingAngles))> digest=\(digest): in flight when the process ended before (crashes \(record.crashes)): scanned alone"
                )
            case .cleared: break
            }
        }
        let waitStart = Now.monotonic()
        var collected: WaveCollected?
        var scanned: (result: ScanResult, decision: Decision)?
        /// The scan worker died during the scan: its wait status (nil: unknown) and pid.
        var died: (status: Int32?, pid: Int32)?
        let slot = admission.hold(
            alone: alone,
            { slot in
                // Taken here, once the slot is held: a message waiting in line holds no engine, so a
                // blocking reload can free the old one.
                guard let workers = engines.current else { return }
                // The message goes to a scan worker as a descriptor (its spool file, or the memfd it is held
                // in), from this session's own thread, which waits for the result (keeping the MTA's
                // connection alive meanwhile): no handoff to a scanner thread and back. The wave store is
                // fed here too: its update needs a few KB of this thread's 256 KB stack
                // (sessionThreadStack), a page or so more of it resident per libmilter thread.
                guard let (fd, size) = message.descriptor() else {
                    let failed = ScanResult(
                        finding: .error("cannot hold the message in a memory file: \(FileWalk.errnoString())"),
                        seconds: 0, bytes: 0)
                    logger.error("queue=\(Escape.field(queueID)) scan error: \(Escape.text(failed.errorMessage!))")
                    scanned = (failed, policy.busy(.scanError))
                    return
                }
                // Each scan under the crash guard: its in-flight record names this message while it runs
                // (a crash of this process then still convicts it, as before the workers).
                func scan(allMatches: Bool) -> ScanResult? {
                    let outcome = crashGuard.guarding(
                        slot: slot, digest: digest, queue: queueID, sender: String(s.sender.trimmingAngles),
                        alone: alone
                    ) {
                        workers.scan(
                            fd: fd, size: size, allMatches: allMatches, inspect: waves != nil, keepAlive: keepAlive)
                    }
                    switch outcome {
                    case .scanned(let reply):
                        if case .diskAfterFailure(let why) = reply.place, let n = scanMemoryFull.tick() {
                            logger.warning(
                                "queue=\(Escape.field(queueID)) scan temporary files did not fit in memory (libclamav: \(Escape.text(why))): scanned again in \(scanDirectory.disk) (\(n) message(s) since the last line)"
                            )
                        }
                        collected = reply.wave
                        return reply.result
                    case .died(let status, let pid):
                        died = (status, pid)
                        return nil
                    case .failed(let why):
                        return ScanResult(finding: .error(why), seconds: 0, bytes: size)
                    }
                }
                // No scanning past the decision: stop at the first signature, and scan for every match
                // only when another name could still make the answer stricter (Policy.settles).
                guard var result = scan(allMatches: false) else { return }
                if !policy.settles(firstMatch: result) {
                    stats.rescans.add(1, ordering: .relaxed)
                    logger.debug(
                        "queue=\(Escape.field(queueID)) scanning again for every match: first match \(Escape.text(result.detections.map(\.name).joined(separator: ",")))"
                    )
                    let first = result.seconds
                    guard let again = scan(allMatches: true) else { return }
                    result = ScanResult(finding: again.finding, seconds: first + again.seconds, bytes: again.bytes)
                    result.temporaryFileFailure = again.temporaryFileFailure
                }
                // A part libclamav could not write was not scanned: never an answer on what it saw.
                if let failure = result.temporaryFileFailure {
                    logger.error(
                        "queue=\(Escape.field(queueID)) scan error: cannot write a temporary file in \(scanDirectory.disk) (libclamav: \(Escape.text(failure)))"
                    )
                    scanned = (result, policy.busy(.scanError))
                    return
                }
                let inspector = collected.flatMap { waves?.inspector(collected: $0) }
                var wave: String?
                if let waves, result.errorMessage == nil {
                    wave = waves.observe(
                        result, inspector: inspector, sender: s.sender, clientIP: s.clientIP,
                        clientAddress: s.clientAddress, subject: s.assembly.subject)
                }
                scanned = (result, policy.decide(result, wave: wave))
            }, keepAlive: keepAlive)
        switch slot {
        case .busy:
            return (policy.busy(.busy), 0, 0, false)
        case .timedOut:
            return (policy.busy(.timeout), Now.monotonic() - waitStart, 0, false)
        case .scanned(let waited):
            if let died { return (workerDied(s, died, digest: digest, queueID: queueID), waited, 0, false) }
            guard let (result, decision) = scanned else {
                logger.error("queue=\(Escape.field(queueID)) no engine serves (the last reload failed): 451 4.3.2")
                return (policy.busy(.scanError), waited, 0, false)
            }
            stats.scanned.add(1, ordering: .relaxed)
            if alone, let digest {
                crashGuard.suspects.passedAlone(digest)
                logger.notice(
                    "queue=\(Escape.field(queueID)) digest=\(digest): scanned alone without a crash: cleared (scanned as any other from now on)"
                )
            }
            if let err = result.errorMessage {
                logger.error("queue=\(Escape.field(queueID)) scan error: \(Escape.text(err))")
            }
            return (decision, waited, result.seconds, true)
        }
    }

    /// The scan worker died while it scanned this message, and nothing else: of a crash signal, the
    /// message is convicted at once (`on-scan-crash`, counted, logged, a copy kept); killed otherwise
    /// (SIGKILL: likely the OOM killer), the message is answered 451 4.3.2 and is not a suspect.
    private func workerDied(_ s: Session, _ died: (status: Int32?, pid: Int32), digest: String?, queueID: String)
        -> Decision
    {
        let how = WorkerDeath.describe(died.status)
        let sender = s.sender.trimmingAngles
        guard let status = died.status, let sig = WorkerDeath.signal(status), WorkerDeath.crashSignals.contains(sig)
        else {
            logger.error(
                "queue=\(Escape.field(queueID)) from=<\(Escape.field(sender))> digest=\(digest ?? "-"): the scan worker (pid \(died.pid)) \(how) while it scanned this message (not a crash of the scan): 451 4.3.2"
            )
            return policy.busy(.scanError)
        }
        stats.scanCrashes.add(1, ordering: .relaxed)
        var copy: String?
        var crashes = 1
        if let digest {
            crashes = crashGuard.suspects.convict(digest: digest, queue: queueID, sender: String(sender)).crashes
            copy = crashGuard.suspects.keepCopy(digest: digest) { s.assembly.buffer.copy(to: $0) }
        }
        logger.error(
            "scan crash: queue=\(Escape.field(queueID)) from=<\(Escape.field(sender))> digest=\(digest ?? "-"): the scan worker (pid \(died.pid)) was \(how) scanning this message (crash \(crashes) of this message): convicted, answered on-scan-crash (\(config.onScanCrash.rawValue))\(copy.map { ", copy in \($0)" } ?? "")"
        )
        return policy.scanCrash()
    }

    /// A message convicted of crashing the scanner: `on-scan-crash`, logged with its digest, and a copy
    /// kept for ops (crash-copies).
    private func convicted(_ s: Session, digest: String, record: CrashSuspects.Record, queueID: String) -> Decision {
        crashGuard.suspects.seen(digest)
        let copy = crashGuard.suspects.keepCopy(digest: digest) { s.assembly.buffer.copy(to: $0) }
        logger.warning(
            "queue=\(Escape.field(queueID)) from=<\(Escape.field(s.sender.trimmingAngles))> digest=\(digest): crashed the scanner \(record.crashes) time(s) before: answered on-scan-crash (\(config.onScanCrash.rawValue)) without a scan\(copy.map { ", copy in \($0)" } ?? "")"
        )
        return policy.scanCrash()
    }
}

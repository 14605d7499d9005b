#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to stdout/stderr (the C `stderr` global is off limits in Swift 6 mode).
public enum Output {
    public static func out(_ s: String) { write(fd: 1, s) }
    public static func err(_ s: String) { write(fd: 2, s) }
    public static func write(fd: Int32, _ s: String) {
        var s = s
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }
}

public enum Clock {
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    public static func wall() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A plain joinable POSIX thread (scanner threads, background reloads): no Foundation, no executor.
public final class Thread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: @Sendable () -> Void

    private init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    /// Starts a thread; stops the process if it cannot (only for threads a command cannot do
    /// without at its start: the daemon's run-time threads use `tryStart`).
    @discardableResult
    public static func start(stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> Thread {
        switch tryStart(stackSize: stackSize, body) {
        case .success(let t): return t
        case .failure(let e): fatalError("cannot start a thread: \(e)")
        }
    }

    public struct StartError: Error, CustomStringConvertible, Sendable {
        public let code: Int32
        public var description: String { "pthread_create: \(String(cString: strerror(code)))" }
    }

    /// Starts a thread, or says why not (EAGAIN: the process or its cgroup is at its task limit).
    public static func tryStart(stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> Result<Thread, StartError> {
        let t = Thread(body)
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, stackSize)
        let box = Unmanaged.passRetained(t).toOpaque()
        let rc = pthread_create(&t.handle, &attr, { arg in
            let t = Unmanaged<Thread>.fromOpaque(arg!).takeRetainedValue()
            t.body()
            return nil
        }, box)
        pthread_attr_destroy(&attr)
        if rc != 0 {
            Unmanaged<Thread>.fromOpaque(box).release()
            return .failure(StartError(code: rc))
        }
        return .success(t)
    }

    public func join() { pthread_join(handle, nil) }
    public func detach() { pthread_detach(handle) }
}

/// Sizes written as a number of bytes with an optional K, M or G suffix (powers of 1024).
public enum ByteSize {
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }
    public static func parse(_ text: String) throws(ParseError) -> UInt64 {
        let s = text.trimmed
        guard !s.isEmpty else { throw ParseError(description: "empty size") }
        var digits = Substring(s)
        var mult: UInt64 = 1
        switch s.last!.uppercased() {
        case "K": mult = 1 << 10; digits = digits.dropLast()
        case "M": mult = 1 << 20; digits = digits.dropLast()
        case "G": mult = 1 << 30; digits = digits.dropLast()
        default: break
        }
        guard let n = UInt64(digits), n <= UInt64.max / mult else {
            if s.count > 1, let d = s.firstIndex(where: { !$0.isNumber }), let num = UInt64(s[..<d]), let unit = s[d...].first,
               "KkMmGg".contains(unit) {
                throw ParseError(description: "'\(s)' is not a size: write \(num)\(unit.uppercased()), not \(s)")
            }
            throw ParseError(description: "'\(s)' is not a size (a number of bytes, optionally followed by K, M or G)")
        }
        return n * mult
    }
    public static func format(_ n: UInt64) -> String {
        if n >= 1 << 30 && n % (1 << 30) == 0 { return "\(n >> 30)G" }
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20)M" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10)K" }
        return "\(n)"
    }
}

/// glibc's per-thread cache of freed blocks (tcache) in `breakwater run`.
///
/// glibc keeps, for each thread, up to 7 freed blocks of every size up to about 1 KiB, usable by that
/// thread alone. libmilter runs one thread per busy session, so under 200 sessions those caches held
/// about 3 MB that no other thread could reuse (peak private memory 19.6 MB against 16.4 MB with the
/// wave corpus over 200 direct sessions, at the same CPU per message; docs/benchmarks.md). `run`
/// therefore lets the caches keep only blocks of at most 64 bytes, where most of Swift's small objects
/// fall. glibc reads this setting only from the GLIBC_TUNABLES environment variable when a process
/// starts, so `run` re-executes itself once with it added, before any thread exists. An
/// administrator's own `glibc.malloc.tcache_*` tunable wins.
public enum MallocThreadCache {
    /// What `run` adds to GLIBC_TUNABLES.
    public static let tunable = "glibc.malloc.tcache_max=64"

    /// The GLIBC_TUNABLES value to start with: `current` plus `tunable`, or nil when `current` already
    /// sets a thread-cache tunable (an administrator's, or `run`'s own after the re-execution).
    public static func tunables(adding current: String?) -> String? {
        guard let current, !current.isEmpty else { return tunable }
        if current.contains("glibc.malloc.tcache") { return nil }
        return current + ":" + tunable
    }
}

/// How many glibc malloc arenas the daemon allows.
///
/// glibc gives a thread its own arena when the others are busy, up to 8 per core, and an arena keeps
/// what was freed in it for reuse. In the daemon every libmilter session thread allocates a little and
/// the scanning threads allocate a lot (libclamav's decoders), so under load the freed memory of
/// large messages ends up spread over a dozen arenas. `breakwater run` therefore caps arenas at the
/// number of scan slots (at least 2; MilterDaemon sets it through CProcessTuning): measured on mixed mail,
/// a third less peak RSS at the same CPU per message (docs/benchmarks.md). An administrator's own
/// MALLOC_ARENA_MAX or glibc.malloc.arena_max tunable wins.
public enum MallocArenas {
    /// The cap for `workers` scan slots, or nil when the environment already sets one.
    public static func limit(workers: Int, environment: [String: String] = MallocArenas.environment()) -> Int? {
        if environment["MALLOC_ARENA_MAX"] != nil { return nil }
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.arena_max") { return nil }
        return max(2, workers)
    }

    /// This process's values of the variables through which glibc's arena cap can be set.
    public static func environment() -> [String: String] {
        var env: [String: String] = [:]
        for key in ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"] {
            if let v = getenv(key) { env[key] = String(cString: v) }
        }
        return env
    }
}

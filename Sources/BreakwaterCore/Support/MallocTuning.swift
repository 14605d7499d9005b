#if canImport(Glibc)
import Glibc
#endif

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
package enum MallocThreadCache {
    /// What `run` adds to GLIBC_TUNABLES.
    package static let tunable = "glibc.malloc.tcache_max=64"

    /// The GLIBC_TUNABLES value to start with: `current` plus `tunable`, or nil when `current` already
    /// sets a thread-cache tunable (an administrator's, or `run`'s own after the re-execution).
    package static func tunables(adding current: String?) -> String? {
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
package enum MallocArenas {
    /// The cap for `workers` scan slots, or nil when the environment already sets one.
    package static func limit(workers: Int, environment: [String: String] = MallocArenas.environment()) -> Int? {
        if environment["MALLOC_ARENA_MAX"] != nil { return nil }
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.arena_max") { return nil }
        return max(2, workers)
    }

    /// This process's values of the variables through which glibc's arena cap can be set.
    package static func environment() -> [String: String] {
        var env: [String: String] = [:]
        for key in ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"] {
            if let v = getenv(key) { env[key] = String(cString: v) }
        }
        return env
    }
}

import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// Applies `MallocThreadCache` to this process: called first thing in `main` for `run`, before any
/// thread exists (the re-executed process keeps its PID, so systemd's MAINPID stays right).
public enum ThreadCacheLimit {
    public static func apply() {
        // Set across the re-execution only: a second one never happens, whatever glibc does to the variable.
        let marker = "BREAKWATER_REEXECUTED"
        if getenv(marker) != nil {
            unsetenv(marker)
            return
        }
        let previous = getenv("GLIBC_TUNABLES").map { String(cString: $0) }
        guard let value = MallocThreadCache.tunables(adding: previous) else { return }
        setenv("GLIBC_TUNABLES", value, 1)
        setenv(marker, "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when the re-execution failed (no /proc, say): run on with glibc's default caches,
        // which costs memory under many sessions, not correctness.
        let reason = FileWalk.errnoString()
        unsetenv(marker)
        if let previous { setenv("GLIBC_TUNABLES", previous, 1) } else { unsetenv("GLIBC_TUNABLES") }
        let message = "breakwater: warning: cannot re-execute /proc/self/exe with GLIBC_TUNABLES=\(value) (\(reason)); "
            + "glibc's per-thread malloc caches stay at their default size\n"
        var m = message
        m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// Whether this process runs with `MallocThreadCache.tunable` in effect.
    public static var isApplied: Bool {
        guard let v = getenv("GLIBC_TUNABLES") else { return false }
        return String(cString: v).split(separator: ":").contains { $0 == MallocThreadCache.tunable }
    }
}

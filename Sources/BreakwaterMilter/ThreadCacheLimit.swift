import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// Applies `MallocThreadCache` to this process: called first thing in `main` for `run`, before any
/// thread exists (the re-executed process keeps its PID, so systemd's MAINPID stays right).
package enum ThreadCacheLimit {
    package static func apply() {
        // Set across the re-execution only: a second one never happens, whatever glibc does to the variable.
        // It carries the process name (the kernel names a process after the file it executes, which would
        // be "exe" for /proc/self/exe), so that ps, top, pgrep and pidof still find "breakwater".
        let marker = "BREAKWATER_REEXECUTED"
        if let name = getenv(marker).map({ String(cString: $0) }) {
            unsetenv(marker)
            if !name.isEmpty { setProcessName(name) }
            return
        }
        let previous = getenv("GLIBC_TUNABLES").map { String(cString: $0) }
        guard let value = MallocThreadCache.tunables(adding: previous) else { return }
        setenv("GLIBC_TUNABLES", value, 1)
        setenv(marker, processName() ?? "", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when the re-execution failed (no /proc, say): run on with glibc's default caches,
        // which costs memory under many sessions, not correctness.
        let reason = FileWalk.errnoString()
        unsetenv(marker)
        if let previous { setenv("GLIBC_TUNABLES", previous, 1) } else { unsetenv("GLIBC_TUNABLES") }
        Output.err(
            "breakwater: warning: cannot re-execute /proc/self/exe with GLIBC_TUNABLES=\(value) (\(reason)); "
                + "glibc's per-thread malloc caches stay at their default size\n")
    }

    /// The process name the kernel shows (`/proc/self/comm`), nil if it cannot be read.
    static func processName() -> String? {
        guard let bytes = FileIO.read("/proc/self/comm", limit: 64) else { return nil }
        let name = String(decoding: bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    /// Renames the process (`/proc/self/comm`: the thread group's leader, the only thread at this point).
    static func setProcessName(_ name: String) {
        let fd = open("/proc/self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        Output.write(fd: fd, name)
    }

    /// Whether this process runs with `MallocThreadCache.tunable` in effect.
    package static var isApplied: Bool {
        guard let v = getenv("GLIBC_TUNABLES") else { return false }
        return String(cString: v).split(separator: ":").contains { $0 == MallocThreadCache.tunable }
    }
}

/// libclamav's temporary files in memory (`scan-temporary-directory` unset): what the daemon must
/// be able to keep in a tmpfs, for the memory plan and for the choice of the directory at start-up.
package enum ScanMemory {
    /// What one scan can write under the engine limits: every layer it extracts, at most
    /// `max-scan-size` together, plus the message's own decoded parts, at most `max-message-size`.
    package static func perScan(limits: EngineLimits, maxMessageSize: UInt64) -> UInt64 {
        limits.maxScanSize.addingReportingOverflow(maxMessageSize).overflow
            ? .max : limits.maxScanSize + maxMessageSize
    }

    /// What `workers` concurrent scans can write: the tmpfs pages the memory plan counts when the
    /// scan's temporary files are in memory (they count against the unit's MemoryMax= like the heap).
    package static func planned(config: Config) -> UInt64 {
        let one = perScan(limits: config.limits, maxMessageSize: config.maxMessageSize)
        let (total, overflow) = one.multipliedReportingOverflow(by: UInt64(max(1, config.workers)))
        return overflow ? .max : total
    }

    /// Where the daemon looks for a tmpfs, in order: systemd's RuntimeDirectory= ($RUNTIME_DIRECTORY,
    /// /run/breakwater under the shipped unit), then /dev/shm.
    package static func candidates(environment runtimeDirectory: String?) -> [String] {
        var dirs: [String] = []
        if let r = runtimeDirectory, !r.isEmpty {
            // systemd lists several directories separated by ':' when RuntimeDirectory= names several.
            dirs += r.split(separator: ":").map(String.init).filter { $0.hasPrefix("/") }
        }
        dirs.append("/dev/shm")
        return dirs
    }
}

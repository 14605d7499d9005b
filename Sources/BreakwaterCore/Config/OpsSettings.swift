/// The signature-operations keys: hot reload on a directory change, the control socket's mode, the
/// prefix of ops signature names, and the official ClamAV databases.
package struct OpsSettings: Sendable {
    /// `self-check`: seconds between two looks at the signature directories; 0 turns the watch off.
    package var selfCheck = 5.0
    /// `control-mode`: permission bits of the control socket.
    package var controlMode: UInt32 = 0o660
    /// `local-prefix`: every name `breakwater signatures add` writes starts with it.
    package var localPrefix = "Breakwater.Local."
    /// `official-signatures`: also load the official ClamAV databases (freshclam's directory).
    package var officialSignatures = false
    /// `reload-mode`: how a reload makes room for the new engine.
    package var reloadMode = ReloadMode.auto

    package init() {}

    /// Where Debian's freshclam keeps the official databases.
    package static let officialDirectory = "/var/lib/clamav"

    /// Characters allowed in a signature name (and so in the prefix): they survive every ClamAV
    /// database format and a shell unquoted.
    package static func isNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "-" || c == "_")
    }
}

extension Config {
    /// The signature-operations keys, listed after the others.
    static let opsKeys: [ConfigKey] = [
        key(
            "self-check", show: { ConfigText.seconds($0.ops.selfCheck) },
            "How often the signature directories are checked for a change (file added, removed, replaced or touched); a change reloads the signatures. 0 turns the check off (reload with SIGUSR2 or `breakwater reload`)."
        ) {
            c, v throws(ConfigKey.ValueError) in
            let d = try duration(v)
            guard d == 0 || (d >= 0.1 && d <= 86400) else {
                throw .init(message: "'\(v)' is out of range: 0 (off) or 100ms...24h")
            }
            c.ops.selfCheck = d
        },
        key(
            "control-mode", show: { ConfigText.octal($0.ops.controlMode) },
            "Permissions of the control socket (octal); whoever can write to it can reload and read the status."
        ) {
            c, v throws(ConfigKey.ValueError) in
            guard let m = UInt32(v, radix: 8), m <= 0o777, v.count >= 3, v.count <= 4 else {
                throw .init(message: "'\(v)' is not an octal mode such as 0660")
            }
            c.ops.controlMode = m
        },
        key(
            "local-prefix", show: { $0.ops.localPrefix },
            "Names of the signatures `breakwater signatures add` writes must start with this prefix."
        ) {
            c, v throws(ConfigKey.ValueError) in
            guard !v.isEmpty, v.count <= 64, v.allSatisfy(OpsSettings.isNameCharacter) else {
                throw .init(message: "'\(v)' is not a name prefix: letters, digits, '.', '-' and '_' only")
            }
            c.ops.localPrefix = v
        },
        key(
            "official-signatures", show: { ConfigText.yesNo($0.ops.officialSignatures) },
            "Also load the official ClamAV databases from \(OpsSettings.officialDirectory) (kept up to date by freshclam) when it holds any. They need about 1.2G of memory, twice that during a reload."
        ) {
            c, v throws(ConfigKey.ValueError) in c.ops.officialSignatures = try bool(v)
        },
        key(
            "reload-mode", show: { $0.ops.reloadMode.rawValue },
            "How a reload makes room for the new engine. concurrent: build it beside the one in service while mail keeps being scanned, memory peaking at two engines; then pause scans briefly (the old scan workers end, the old engine is freed, new workers start) and resume. blocking: hold new scans in line (kept alive; 451 4.3.2 past max-wait), free the old engine, build the new one, resume: the peak stays at one engine. auto: concurrent when the memory limit (the cgroup's, else MemAvailable) has room for a second engine of the measured size on top of the process and its budgets, else blocking; the choice and its figures are logged."
        ) {
            c, v throws(ConfigKey.ValueError) in
            guard let m = ReloadMode(rawValue: v) else {
                throw .init(message: "'\(v)' is not a reload mode: auto, concurrent or blocking")
            }
            c.ops.reloadMode = m
        },
    ]
}

/// `reload-mode`.
package enum ReloadMode: String, Sendable, CaseIterable {
    case auto, concurrent, blocking
}

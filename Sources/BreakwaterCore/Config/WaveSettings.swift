/// What happens to a message of a wave.
package enum WaveAction: String, Sendable, CaseIterable {
    /// Accepted with `X-Breakwater-Wave: ID`.
    case tag
    /// 451 4.7.1: the MTA keeps it and retries (the wave may meanwhile get a signature).
    case tempfail
    /// 550 5.7.1.
    case reject

    package static var list: String { allCases.map(\.rawValue).joined(separator: "|") }
}

/// The `wave-*` configuration keys.
package struct WaveSettings: Sendable {
    /// `waves`: detect waves (the engine then hands every decoded text layer to the fingerprint).
    package var enabled = true
    /// `wave-threshold`: messages in the window that make a wave.
    package var threshold = 50
    /// `wave-min-sources`: a wave needs more than this many distinct client networks (/24 for IPv4,
    /// /48 for IPv6). Envelope senders are not counted: one host forges any number for free.
    package var minSources = 5
    /// `wave-window`: seconds of the sliding window; a wave ends after a whole window without a message.
    package var window = 600.0
    /// `wave-action`: tempfail by default, so that a wave keeps off the host without ops (tag let it
    /// start a handler per message in the outage replay; docs/incident.md).
    package var action = WaveAction.tempfail
    /// `wave-store-size`: bytes of the fingerprint store (entries, index, wave records).
    package var storeSize: UInt64 = 4 << 20
    /// `wave-allow-senders`: envelope senders (address or @domain, lower case) never counted.
    package var allowSenders: [String] = []
    /// `wave-allow-networks`: client networks never counted.
    package var allowNetworks: [CIDR] = []

    /// Estimated Jaccard similarity at which a message joins a wave's fingerprint.
    package var similarity = 0.25

    package init() {}

    package static let minimumStoreSize: UInt64 = 512 << 10

    /// True when the envelope sender (as the MTA gives it, with or without angle brackets) is on
    /// the allow list.
    package func allowsSender(_ sender: String) -> Bool {
        AddressList.contains(allowSenders, sender)
    }

    package func allowsNetwork(_ ip: [UInt8]?) -> Bool {
        guard let ip, !allowNetworks.isEmpty else { return false }
        return allowNetworks.contains { $0.contains(ip) }
    }

}

extension Config {
    /// The wave detection keys, listed after the others.
    static let waveKeys: [ConfigKey] = [
        key(
            "waves", show: { ConfigText.yesNo($0.wave.enabled) },
            "Detect spam waves: near-identical messages from many senders (see wave-threshold). The engine then hands each decoded text part to the fingerprint."
        ) {
            c, v throws(ConfigKey.ValueError) in c.wave.enabled = try bool(v)
        },
        key(
            "wave-threshold", show: { "\($0.wave.threshold)" },
            "Messages of one fingerprint within wave-window that make a wave."
        ) {
            c, v throws(ConfigKey.ValueError) in c.wave.threshold = try int(v, 2...10_000_000)
        },
        key(
            "wave-min-sources", show: { "\($0.wave.minSources)" },
            "A wave needs more than this many distinct client networks (/24 for IPv4, /48 for IPv6). Envelope senders are not counted: a single host can forge any number of them."
        ) {
            c, v throws(ConfigKey.ValueError) in c.wave.minSources = try int(v, 0...100)
        },
        key(
            "wave-window", show: { ConfigText.minutes($0.wave.window) },
            "Sliding window over which wave messages are counted; a wave ends after a whole window without a message."
        ) {
            c, v throws(ConfigKey.ValueError) in
            let d = try duration(v)
            guard d >= 10 && d <= 7 * 86400 else { throw .init(message: "'\(v)' is out of range 10s...7d") }
            c.wave.window = d
        },
        key(
            "wave-action", show: { $0.wave.action.rawValue },
            "What a wave message gets: tag (accepted with X-Breakwater-Wave: ID), tempfail (451 4.7.1) or reject (550 5.7.1)."
        ) {
            c, v throws(ConfigKey.ValueError) in
            guard let a = WaveAction(rawValue: v.lowercased()) else {
                throw .init(message: "unknown wave action '\(v)': use \(WaveAction.list)")
            }
            c.wave.action = a
        },
        key(
            "wave-store-size", show: { ByteSize.format($0.wave.storeSize) },
            "Memory of the fingerprint store, allocated at start and never exceeded: about 540 bytes per fingerprint held (4M holds about 7,200). At least 512K."
        ) {
            c, v throws(ConfigKey.ValueError) in
            let n = try size(v)
            guard n >= WaveSettings.minimumStoreSize else { throw .init(message: "\(v) is too small: at least 512K") }
            guard n <= 4 << 30 else { throw .init(message: "\(v) is too large: at most 4G") }
            c.wave.storeSize = n
        },
        key(
            "wave-allow-senders", show: { ConfigText.list($0.wave.allowSenders) },
            "Envelope senders never counted in a wave: addresses or @domain (mailing lists, newsletters; repeatable).",
            repeatable: true
        ) {
            c, v throws(ConfigKey.ValueError) in
            for item in try list(v) {
                guard item.contains("@"), !item.contains(" ") else {
                    throw .init(message: "'\(item)' is not an address or @domain")
                }
                c.wave.allowSenders.append(AddressList.bare(item))
            }
        },
        key(
            "wave-allow-networks", show: { ConfigText.list($0.wave.allowNetworks.map(\.description)) },
            "Client networks never counted in a wave (CIDR, IPv4 or IPv6, comma-separated; repeatable).",
            repeatable: true
        ) {
            c, v throws(ConfigKey.ValueError) in
            for item in try list(v) {
                guard let n = CIDR(item) else {
                    throw .init(message: "'\(item)' is not a network: write 192.0.2.0/24 or 2001:db8::/32")
                }
                c.wave.allowNetworks.append(n)
            }
        },
    ]
}

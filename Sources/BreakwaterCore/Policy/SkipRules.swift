/// Mail Breakwater lets through without scanning: `skip-networks` (at connect),
/// `skip-authenticated` and `skip-senders` (at MAIL FROM), `skip-recipients` (at end of data, when
/// every recipient is listed). Pure: the milter asks, logs and answers.
package struct SkipRules: Sendable {
    /// Why a message was not scanned: the config key of the rule, as the log names it.
    package enum Reason: String, Sendable {
        case networks = "skip-networks"
        case authenticated = "skip-authenticated"
        case senders = "skip-senders"
        case recipients = "skip-recipients"
    }

    package var networks: [CIDR]
    package var authenticated: Bool
    /// Bare addresses and `@domain` entries (`AddressList`).
    package var senders: [String]
    package var recipients: [String]

    package init(config: Config) {
        networks = config.skipNetworks
        authenticated = config.skipAuthenticated
        senders = config.skipSenders
        recipients = config.skipRecipients
    }

    /// `skip-networks`: the client's address (4 or 16 bytes) is in one of the networks.
    package func skipsClient(_ ip: [UInt8]?) -> Bool {
        guard let ip, !networks.isEmpty else { return false }
        return networks.contains { $0.contains(ip) }
    }

    /// `skip-authenticated`: the SMTP-authenticated user when the rule is on and the client
    /// authenticated, else nil. `user` (the `{auth_authen}` macro) is asked only when the rule is on.
    package func authenticatedUser(_ user: () -> String?) -> String? {
        authenticated ? user() : nil
    }

    /// `skip-senders`: the envelope sender is listed (or in a listed domain).
    package func skipsSender(_ sender: String) -> Bool {
        AddressList.contains(senders, sender)
    }

    /// `skip-recipients`: the message has recipients and every one of them is listed.
    package func skipsRecipients(_ rcpts: [String]) -> Bool {
        !recipients.isEmpty && !rcpts.isEmpty && rcpts.allSatisfy { AddressList.contains(recipients, $0) }
    }
}

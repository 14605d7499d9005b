/// The address lists of the configuration (skip-senders, skip-recipients, wave-allow-senders): each
/// entry is a whole address (`user@example.com`) or a domain (`@example.com`), kept in `bare` form.
/// The MTA hands addresses over in angle brackets (`<User@Example.com>`); they are compared bare.
package enum AddressList {
    /// `<A@Example.COM>` -> `a@example.com`.
    package static func bare(_ s: String) -> String {
        var t = Substring(s.trimmed)
        if t.hasPrefix("<") { t = t.dropFirst() }
        if t.hasSuffix(">") { t = t.dropLast() }
        return t.lowercased()
    }

    /// True when `address` (as the MTA gives it) is one of `entries` or in one of their domains.
    package static func contains(_ entries: [String], _ address: String) -> Bool {
        guard !entries.isEmpty else { return false }
        let a = bare(address)
        return entries.contains { $0.hasPrefix("@") ? a.hasSuffix($0) : a == $0 }
    }
}

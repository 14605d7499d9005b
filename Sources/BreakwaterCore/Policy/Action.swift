/// What Breakwater does with a message.
package enum Action: String, Sendable, CaseIterable {
    /// 550 5.7.1 with the reject template (552 5.3.4 for an oversize message).
    case reject
    /// 451 4.7.1: the MTA keeps the message and retries.
    case tempfail
    /// Accept and silently drop the message.
    case discard
    /// Accept and ask the MTA to hold it (`smfi_quarantine`; Postfix puts it on hold).
    case quarantine
    /// Accept with a header naming what matched.
    case tag
    /// Accept unchanged (apart from the scanned header).
    case accept

    package static func parse(_ s: String) -> Action? { Action(rawValue: s.lowercased()) }
    package static var list: String { allCases.map(\.rawValue).joined(separator: "|") }
}

/// `GLOB ACTION`: signatures whose name matches GLOB get ACTION. First match wins.
package struct ActionRule: Sendable, Equatable, CustomStringConvertible {
    package let pattern: String
    package let action: Action
    package init(pattern: String, action: Action) {
        self.pattern = pattern
        self.action = action
    }
    package var description: String { "\(pattern) \(action.rawValue)" }

    /// The rules that apply after the configured ones.
    package static let defaults: [ActionRule] = [
        ActionRule(pattern: "Heuristics.*", action: .tag),
        ActionRule(pattern: "*.Malware.*", action: .reject),
        ActionRule(pattern: "*.Phish.*", action: .reject),
        ActionRule(pattern: "*.Spam.*", action: .reject),
        ActionRule(pattern: "*.Test.*", action: .reject),
        ActionRule(pattern: "*", action: .reject),
    ]
}

/// Shell-style glob: `*` any run of characters, `?` one character, everything else literal.
package func globMatch(_ pattern: String, _ text: String) -> Bool {
    let p = Array(pattern.utf8)
    let t = Array(text.utf8)
    var pi = 0
    var ti = 0
    var starP = -1
    var starT = 0
    while ti < t.count {
        if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
            pi += 1
            ti += 1
        } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
            starP = pi
            starT = ti
            pi += 1
        } else if starP >= 0 {
            pi = starP + 1
            starT += 1
            ti = starT
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

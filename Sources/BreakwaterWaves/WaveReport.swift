import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// `breakwater waves` output, rendered by the daemon (text or JSON) and printed as is by the command.
package enum WaveReport {
    package static func suggestion(_ w: WaveInfo, prefix: String = "Breakwater.Local.") -> WaveSuggestion? {
        WaveSuggestion.make(waveID: w.id, samples: w.samples, prefix: prefix)
    }

    package static func comment(_ w: WaveInfo) -> String {
        var c = "wave \(w.id)"
        // The subject is the sender's text: escaped, so the comment is one line of printable text (as
        // `signatures add` requires) and safe on a terminal.
        if !w.subject.isEmpty { c += ": " + Escape.text(truncatedUTF8(w.subject, max: 80)) }
        return c
    }

    package static func json(_ waves: [WaveInfo], now: Double, prefix: String = "Breakwater.Local.") -> JSONValue {
        .array(
            waves.map { w in
                let s = suggestion(w, prefix: prefix)
                return .object([
                    ("id", .string(w.id)),
                    ("active", .bool(w.active)),
                    ("started_at", .string(Timestamp.iso8601(w.startedAt))),
                    ("ended_at", w.endedAt.map { .string(Timestamp.iso8601($0)) } ?? .null),
                    ("first_seen", .string(Timestamp.iso8601(w.firstSeen))),
                    ("last_seen", .string(Timestamp.iso8601(w.lastSeen))),
                    ("window_count", .int(w.windowCount)),
                    ("total_count", .int(w.totalCount)),
                    ("wave_messages", .int(w.waveMessages)),
                    ("senders", .int(w.senders)),
                    ("networks", .int(w.networks)),
                    ("subject", .string(w.subject)),
                    ("excerpt", .string(w.excerpt)),
                    ("samples", .int(w.samples.count)),
                    (
                        "suggestion",
                        s.map { s in
                            .object([
                                ("name", .string(s.name)), ("regex", .string(s.regex)),
                                ("command", .string(s.command(comment: comment(w)))),
                            ])
                        } ?? .null
                    ),
                    ("promoted_as", w.promotedAs.map { .string($0) } ?? .null),
                ])
            })
    }

    package static func text(_ waves: [WaveInfo], now: Double, prefix: String = "Breakwater.Local.") -> String {
        if waves.isEmpty { return "no active or recent waves\n" }
        var out = ""
        for w in waves {
            let state =
                w.active
                ? "active since \(Timestamp.iso8601(w.startedAt)) (\(ago(now - w.startedAt)))"
                : "ended \(Timestamp.iso8601(w.endedAt ?? w.lastSeen)) (\(ago(now - (w.endedAt ?? w.lastSeen))))"
            out += "wave \(w.id): \(state)\n"
            out +=
                "  messages: \(w.windowCount) in the window, \(w.totalCount) since first seen, \(w.waveMessages) while a wave\n"
            out += "  senders: ~\(w.senders), client networks: ~\(w.networks)\n"
            out += "  first seen: \(Timestamp.iso8601(w.firstSeen)), last seen: \(Timestamp.iso8601(w.lastSeen))\n"
            out += "  subject: \(w.subject.isEmpty ? "-" : Escape.text(w.subject))\n"
            out += "  excerpt: \(Escape.text(w.excerpt))\n"
            if let p = w.promotedAs {
                out += "  promoted to: \(Escape.text(p))\n"
            } else if let s = suggestion(w, prefix: prefix) {
                out += "  suggested signature:\n    \(s.command(comment: comment(w)))\n"
            } else if w.samples.count < WaveSuggestion.minSamples {
                out +=
                    "  suggested signature: none yet (\(w.samples.count) sample so far; one comes with each message)\n"
            } else {
                out += "  suggested signature: none (its samples share no run of \(WaveSuggestion.minWords)+ words)\n"
            }
        }
        return out
    }

    static func ago(_ s: Double) -> String {
        let s = max(0, Int(s))
        if s < 120 { return "\(s)s ago" }
        if s < 7200 { return "\(s / 60)m ago" }
        return "\(s / 3600)h ago"
    }
}

/// Text that came from mail (a Subject, an envelope address, a client name, a header value, a file
/// name inside an archive, a signature name libclamav returned, a queue id) made safe for a terminal,
/// a one-line log and a shell. Every place that prints or logs such text goes through here.
///
/// What is escaped, and how:
/// - C0 controls (ESC, CR, LF, NUL, ...), DEL and C1 controls (U+0080-U+009F, which some terminals
///   take as CSI and the like) as `\xNN` (the code point);
/// - the Unicode line and paragraph separators and the bidirectional controls (which reorder what
///   an operator sees) as `\u{NNNN}`;
/// - the backslash itself as `\\`, so an escape in the output is never the attacker's own text.
///
/// Invalid UTF-8 never gets this far: a Swift `String` is always valid Unicode, and the milter makes
/// its strings from C strings and header bytes by decoding, which turns a broken sequence into U+FFFD.
/// `bytes(_:)` keeps such bytes visible as `\xNN` where the raw bytes are at hand.
package enum Escape {
    /// True for a scalar that must not reach a terminal or a log as it is.
    @inline(__always)
    package static func isUnsafe(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        if v < 0x20 || (v >= 0x7f && v <= 0x9f) { return true }
        if v < 0x61c { return false }
        switch v {
        case 0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069, 0xfeff: return true
        default: return false
        }
    }

    /// For a terminal, or inside quotes: the unsafe scalars and the backslash escaped; spaces, quotes
    /// and `=` kept.
    package static func text(_ s: some StringProtocol) -> String {
        escape(s, space: false, quote: false)
    }

    /// A value of the one-line `key=value` log format: as `text`, and also space as `\x20` and `"` as
    /// `\x22`, so the value is one token and cannot start a field of its own (a sender
    /// `<a> verdict=clean` is logged as `from=<a>\x20verdict=clean>`). `=` stays: it cannot start a
    /// field without a space before it, and it is common in real addresses (SRS, BATV).
    package static func field(_ s: some StringProtocol) -> String {
        escape(s, space: true, quote: false)
    }

    /// A double-quoted log value (`subject="..."`): as `text`, with `"` as `\x22`, in quotes.
    package static func quoted(_ s: some StringProtocol) -> String {
        "\"" + escape(s, space: false, quote: true) + "\""
    }

    /// Raw bytes (possibly not UTF-8) as text: valid UTF-8 as in `text`, every byte of an invalid
    /// sequence as `\xNN`.
    package static func bytes(_ b: some Collection<UInt8>) -> String {
        let a = Array(b)
        var out = ""
        var i = 0
        var runStart = 0
        func flush(_ end: Int) {
            if end > runStart { out += text(String(decoding: a[runStart..<end], as: UTF8.self)) }
        }
        while i < a.count {
            let lead = a[i]
            let n =
                lead < 0x80
                ? 1
                : lead >= 0xc2 && lead <= 0xdf
                    ? 2
                    : lead >= 0xe0 && lead <= 0xef
                        ? 3
                        : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0
            if n > 0, i + n <= a.count, String(validating: a[i..<(i + n)], as: UTF8.self) != nil {
                i += n
            } else {
                flush(i)
                out += hex(lead)
                i += 1
                runStart = i
            }
        }
        flush(a.count)
        return out
    }

    /// For a command line an operator may paste into a shell: in single quotes when it has no unsafe
    /// scalar; else as a bash/zsh `$'...'` string with the unsafe scalars escaped, so the printed line
    /// holds no control character and pastes back to the same bytes.
    package static func shell(_ s: String) -> String {
        if !s.unicodeScalars.contains(where: isUnsafe) {
            return "'" + s.replacing("'", with: "'\\''") + "'"
        }
        var out = "$'"
        for u in s.unicodeScalars {
            if u == "\\" {
                out += "\\\\"
            } else if u == "'" {
                out += "\\'"
            } else if isUnsafe(u) {
                // $'\xNN' is one byte: a scalar above 0x7f is written as its UTF-8 bytes.
                for b in String(u).utf8 { out += hex(b) }
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out + "'"
    }

    // MARK: -

    static func escape(_ s: some StringProtocol, space: Bool, quote: Bool) -> String {
        // Fast path: printable ASCII without a backslash (and without space / quote when they count)
        // is returned as it is.
        if s.utf8.allSatisfy({ b in
            b >= 0x20 && b < 0x7f && b != UInt8(ascii: "\\") && !(space && b == 0x20)
                && !((space || quote) && b == UInt8(ascii: "\""))
        }) {
            return String(s)
        }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for u in s.unicodeScalars {
            if u == "\\" {
                out += "\\\\"
            } else if u.value < 0x100 && (isUnsafe(u) || (space && u == " ") || ((space || quote) && u == "\"")) {
                out += hex(UInt8(u.value))
            } else if isUnsafe(u) {
                let h = String(u.value, radix: 16)
                out += "\\u{" + String(repeating: "0", count: max(0, 4 - h.count)) + h + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    static func hex(_ b: UInt8) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
        return "\\x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }
}

import BreakwaterCore

/// Header helpers for wave detection: the Subject as the milter receives it (raw, possibly folded
/// and RFC 2047-encoded) made readable.
package enum WaveSubject {
    /// Unfolds and decodes RFC 2047 encoded words in UTF-8, US-ASCII and ISO-8859-1 (B and Q);
    /// encoded words in other charsets are kept as they are. Bounded to the first 1,000 bytes.
    package static func decode(_ raw: String) -> String {
        let raw = truncatedUTF8(raw, max: 1000)
        var out = ""
        var rest = Substring(raw)
        var lastWasEncoded = false
        while let start = rest.firstRange(of: "=?") {
            let before = rest[..<start.lowerBound]
            // Blanks between two encoded words are not part of the text.
            let blank = before.allSatisfy { c in c == " " || c == "\t" || c == "\r" || c == "\n" || c == "\r\n" }
            if !(lastWasEncoded && blank) {
                out += before
            }
            let afterStart = rest[start.upperBound...]
            guard let decoded = decodeWord(afterStart) else {
                out += "=?"
                rest = afterStart
                lastWasEncoded = false
                continue
            }
            out += decoded.text
            rest = decoded.rest
            lastWasEncoded = true
        }
        out += rest
        return String(out.map { $0 == "\r" || $0 == "\n" || $0 == "\t" || $0 == "\r\n" ? " " : $0 })
    }

    /// `charset?enc?text?=` after the `=?`.
    private static func decodeWord(_ s: Substring) -> (text: String, rest: Substring)? {
        let parts = s.split(separator: "?", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let end = parts[2].firstRange(of: "?=") else { return nil }
        var charset = parts[0].lowercased()
        if let star = charset.firstIndex(of: "*") { charset = String(charset[..<star]) }  // RFC 2231 language
        let encoding = parts[1].uppercased()
        let text = parts[2][..<end.lowerBound]
        let rest = parts[2][end.upperBound...]
        guard !text.contains(" ") else { return nil }
        let bytes: [UInt8]
        switch encoding {
        case "B":
            guard let b = base64(text) else { return nil }
            bytes = b
        case "Q": bytes = quoted(text)
        default: return nil
        }
        switch charset {
        case "utf-8", "utf8", "us-ascii":
            return (String(decoding: bytes, as: UTF8.self), rest)
        case "iso-8859-1", "latin1", "iso-8859-15", "windows-1252":
            return (String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) })), rest)
        default:
            return nil
        }
    }

    private static func quoted(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            let c = u[i]
            if c == UInt8(ascii: "_") {
                out.append(0x20)
            } else if c == UInt8(ascii: "="), i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
                out.append(h << 4 | l)
                i += 2
            } else {
                out.append(c)
            }
            i += 1
        }
        return out
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    private static func base64(_ s: Substring) -> [UInt8]? {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in s.utf8 {
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Why a signature given to `breakwater signatures` was refused.
package struct SignatureInputError: Error, CustomStringConvertible, Sendable, Equatable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// The database file a signature goes into (one Breakwater-owned file per format in the ops directory).
package enum SignatureFileKind: String, Sendable, CaseIterable {
    /// Extended body signatures (`Name:Target:Offset:Hex`): exact bytes.
    case ndb
    /// Logical signatures (`Name;TargetBlock;Expression;Subsig...`): case-insensitive text, regexes.
    case ldb
    /// SHA-256 hash signatures (`Hash:Size:Name`): one exact attachment.
    case hsb

    /// The Breakwater-owned file of this kind in the ops directory.
    package var ownedFileName: String { "breakwater-local.\(rawValue)" }
}

/// What an ops signature matches, as given on the command line.
package enum SignaturePattern: Sendable, Equatable {
    /// A text, matched anywhere in a decoded layer (body, attachment, HTML after normalisation). Each
    /// run of blanks in it matches any run of white space (mail wraps lines).
    case text(String, ignoreCase: Bool)
    /// A PCRE. libclamav only runs a regex after a literal "trigger" matched: the longest literal the
    /// regex requires, or `trigger` when given.
    case regex(String, ignoreCase: Bool, trigger: String?)
    /// Bytes in ClamAV's hex-signature notation (wildcards `??`, `*`, `{n-m}`, `(aa|bb)` allowed).
    case hex(String)
    /// The SHA-256 (lower-case hex) and size of one file, typically an attachment.
    case sha256(String, size: UInt64)

    /// How `list` shows the pattern: `text (ignore case): mini cooper`.
    package var summary: String {
        switch self {
        case .text(let t, let i): return "text\(i ? " (ignore case)" : ""): \(t)"
        case .regex(let r, let i, let trig):
            return "regex\(i ? " (ignore case)" : ""): \(r)" + (trig.map { " trigger: \($0)" } ?? "")
        case .hex(let h): return "hex: \(h)"
        case .sha256(let h, let size): return "sha256: \(h) size \(size)"
        }
    }
}

/// Turns a validated name and pattern into one correct ClamAV signature line.
package enum SignatureLine {
    /// Longest accepted text, regex or hex pattern (ClamAV reads a database line into a fixed buffer).
    package static let maxPatternLength = 2000
    package static let maxNameLength = 128
    /// Shortest literal libclamav may trigger on: shorter ones would wake the pattern on most mail.
    package static let minTriggerBytes = 3
    /// The functionality level of PCRE subsignatures and subsignature modifiers (ClamAV 0.99).
    static let engineBlock = "Engine:81-255,Target:0"

    /// Checks a signature name: the configured prefix, then at least one more character, only
    /// letters, digits, `.`, `-`, `_` (nothing that could end a field of any database format).
    package static func validateName(_ name: String, prefix: String) throws(SignatureInputError) {
        guard !name.isEmpty else { throw SignatureInputError("the signature name is empty") }
        if let bad = name.first(where: { !OpsSettings.isNameCharacter($0) }) {
            throw SignatureInputError(
                "the name '\(printable(name))' contains \(describe(bad)): use letters, digits, '.', '-' and '_' only")
        }
        guard name.hasPrefix(prefix) else {
            throw SignatureInputError(
                "the name '\(name)' does not start with \(prefix) (local-prefix): ops signatures are named \(prefix)SOMETHING"
            )
        }
        guard name.count > prefix.count else {
            throw SignatureInputError(
                "the name '\(name)' is only the prefix: add what the signature is, e.g. \(prefix)Spam.MiniCooper")
        }
        guard name.count <= maxNameLength else {
            throw SignatureInputError("the name is longer than \(maxNameLength) characters")
        }
        guard !name.hasSuffix("."), !name.contains("..") else {
            throw SignatureInputError("the name '\(name)' has an empty part between dots")
        }
    }

    /// A comment or author kept beside the signature: one line of printable text.
    package static func validateNote(_ text: String, what: String, maxLength: Int = 500) throws(SignatureInputError) {
        if let bad = text.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw SignatureInputError(
                "the \(what) contains \(describe(Character(bad))): keep it on one line of printable text")
        }
        guard text.utf8.count <= maxLength else {
            throw SignatureInputError("the \(what) is longer than \(maxLength) bytes")
        }
    }

    /// The database kind and the line for `name` and `pattern`. Throws when the input cannot make a
    /// safe, meaningful signature (libclamav's own compile check comes after this).
    package static func make(name: String, pattern: SignaturePattern, prefix: String) throws(SignatureInputError) -> (
        SignatureFileKind, String
    ) {
        try validateName(name, prefix: prefix)
        switch pattern {
        case .text(let text, let ignoreCase):
            return try textLine(name: name, text: text, ignoreCase: ignoreCase)
        case .regex(let regex, let ignoreCase, let trigger):
            return try regexLine(name: name, regex: regex, ignoreCase: ignoreCase, trigger: trigger)
        case .hex(let hex):
            return (.ndb, "\(name):0:*:\(try normalisedHex(hex))")
        case .sha256(let hash, let size):
            guard hash.utf8.count == 64, hash.utf8.allSatisfy({ isHexDigit($0) }) else {
                throw SignatureInputError("'\(printable(hash))' is not a SHA-256 (64 hex digits)")
            }
            guard size > 0 else {
                throw SignatureInputError("the file is empty: a hash of nothing would match every empty attachment")
            }
            return (.hsb, "\(hash.lowercased()):\(size):\(name)")
        }
    }

    // MARK: text

    static func textLine(name: String, text raw: String, ignoreCase: Bool) throws(SignatureInputError) -> (
        SignatureFileKind, String
    ) {
        try checkPatternCharacters(raw, what: "text")
        let text = raw.trimmed
        guard text.utf8.count >= 4 else {
            throw SignatureInputError("the text '\(text)' is shorter than 4 bytes: it would match far too much mail")
        }
        let pieces = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { Array($0.utf8) }
        let anchor = pieces.max { $0.count < $1.count }!
        guard anchor.count >= minTriggerBytes else {
            throw SignatureInputError(
                "the text '\(text)' has no word of \(minTriggerBytes) or more bytes for libclamav to look for first")
        }
        if pieces.count == 1 {
            // One word: plain bytes, as an extended signature, or a case-insensitive subsignature.
            if !ignoreCase { return (.ndb, "\(name):0:*:\(hex(anchor))") }
            return (.ldb, "\(name);\(engineBlock);0;\(hex(anchor))::i")
        }
        let pcre = pieces.map(pcreLiteral).joined(separator: "\\s+")
        let triggerHex = hex(anchor) + (ignoreCase ? "::i" : "")
        return (.ldb, "\(name);\(engineBlock);0&1;\(triggerHex);0/\(pcre)/\(ignoreCase ? "i" : "")")
    }

    /// Bytes as a PCRE matching exactly them: letters and digits as they are, every other byte as
    /// `\xHH` (so nothing in it is a regex operator or a database field separator).
    static func pcreLiteral(_ bytes: [UInt8]) -> String {
        var out = ""
        for b in bytes {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "\\x" + hexByte(b)
            }
        }
        return out
    }

    // MARK: regex

    static func regexLine(name: String, regex: String, ignoreCase: Bool, trigger: String?) throws(SignatureInputError)
        -> (SignatureFileKind, String)
    {
        try checkPatternCharacters(regex, what: "regular expression")
        let body = try ldbRegex(regex)
        let literal: [UInt8]
        if let trigger {
            try checkPatternCharacters(trigger, what: "trigger")
            literal = Array(trigger.utf8)
            guard literal.count >= minTriggerBytes else {
                throw SignatureInputError("the trigger '\(trigger)' is shorter than \(minTriggerBytes) bytes")
            }
        } else {
            guard let found = requiredLiteral(regex), found.count >= minTriggerBytes else {
                throw SignatureInputError(
                    "the regular expression has no literal text of \(minTriggerBytes) or more characters outside groups, classes and alternatives for libclamav to look for first: give --trigger TEXT, a text every match contains"
                )
            }
            literal = found
        }
        // The trigger ignores case whatever the regex does: it only decides when the regex runs.
        return (.ldb, "\(name);\(engineBlock);0&1;\(hex(literal))::i;0/\(body)/\(ignoreCase ? "i" : "")")
    }

    /// The regex as a PCRE subsignature body: `/` escaped, and the characters that separate fields of
    /// a logical signature (`;`, `:`) and blanks written as `\xHH`, whether they came escaped or not.
    static func ldbRegex(_ regex: String) throws(SignatureInputError) -> String {
        var out = ""
        var it = regex.unicodeScalars.makeIterator()
        func special(_ c: Unicode.Scalar) -> String? {
            switch c {
            case ";": return "\\x3b"
            case ":": return "\\x3a"
            case " ": return "\\x20"
            default: return nil
            }
        }
        while let c = it.next() {
            if c == "\\" {
                guard let n = it.next() else {
                    throw SignatureInputError("the regular expression ends with a lone backslash")
                }
                if n == "Q" {
                    throw SignatureInputError("\\Q...\\E quoting is not supported: escape the characters one by one")
                }
                if let s = special(n) {
                    out += s
                } else {
                    out += "\\"
                    out.unicodeScalars.append(n)
                }
            } else if c == "/" {
                out += "\\/"
            } else if let s = special(c) {
                out += s
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The longest run of literal bytes every match of `regex` must contain: only the top level is
    /// read (a group, a class, `.`, an escape such as `\d` or an optional character ends a run), and
    /// a top-level `|` means nothing is required. nil when there is none.
    package static func requiredLiteral(_ regex: String) -> [UInt8]? {
        let s = Array(regex.unicodeScalars)
        // An inline (?x) makes blanks insignificant: the literal text is then not what it looks like.
        var k = 0
        while k + 1 < s.count {
            if s[k] == "\\" {
                k += 2
                continue
            }
            if s[k] == "(" && s[k + 1] == "?" {
                var j = k + 2
                while j < s.count, s[j].properties.isAlphabetic || s[j] == "-" {
                    if s[j] == "x" { return nil }
                    j += 1
                }
            }
            k += 1
        }
        var runs: [[UInt8]] = []
        var run: [UInt8] = []
        var i = 0
        while i < s.count {
            // One atom: its literal bytes, or nil for anything that is not a fixed text.
            var atom: [UInt8]? = nil
            let c = s[i]
            switch c {
            case "\\":
                guard i + 1 < s.count else { return nil }
                let n = s[i + 1]
                if n == "x", i + 3 < s.count, s[i + 2] != "{",
                    let v = UInt8(String(String.UnicodeScalarView([s[i + 2], s[i + 3]])), radix: 16)
                {
                    atom = [v]
                    i += 4
                } else {
                    if n.isASCII && !n.properties.isAlphabetic && n.properties.numericType == nil {
                        atom = Array(String(Character(n)).utf8)  // an escaped operator stands for itself
                    }
                    i += 2
                }
            case "(":
                i = closing(s, from: i, open: "(", close: ")")
            case "[":
                i = closing(s, from: i, open: "[", close: "]")
            case "|":
                return nil
            case ".", "^", "$", "?", "*", "+", ")", "]":
                i += 1
            default:
                atom = Array(String(Character(c)).utf8)
                i += 1
            }
            // Its quantifier, if any.
            var minimum = 1
            var repeated = false
            if i < s.count {
                switch s[i] {
                case "?", "*":
                    minimum = 0
                    i += 1
                case "+":
                    repeated = true
                    i += 1
                case "{":
                    var k = i + 1
                    var digits = ""
                    while k < s.count, s[k].isASCII, s[k].properties.numericType != nil {
                        digits.unicodeScalars.append(s[k])
                        k += 1
                    }
                    if let n = Int(digits), k < s.count, s[k] == "," || s[k] == "}" {
                        while k < s.count && s[k] != "}" { k += 1 }
                        minimum = n
                        repeated = true
                        i = min(k + 1, s.count)
                    }
                default:
                    break
                }
                if minimum != 1 || repeated, i < s.count, s[i] == "?" || s[i] == "+" { i += 1 }  // lazy, possessive
            }
            if let atom, minimum >= 1 {
                run += atom
                if repeated {
                    runs.append(run)
                    run = []
                }
            } else if !run.isEmpty {
                runs.append(run)
                run = []
            }
        }
        if !run.isEmpty { runs.append(run) }
        return runs.max { $0.count < $1.count }
    }

    /// The index after the bracket that closes the one at `from` (escapes and classes skipped).
    private static func closing(_ s: [Unicode.Scalar], from: Int, open: Unicode.Scalar, close: Unicode.Scalar) -> Int {
        var depth = 0
        var i = from
        while i < s.count {
            let c = s[i]
            if c == "\\" {
                i += 2
                continue
            }
            if open == "(" && c == "[" {
                i = closing(s, from: i, open: "[", close: "]")
                continue
            }
            if c == open && (open == "(" || depth == 0) {
                depth += 1
                i += 1
                if open == "[" {
                    if i < s.count && s[i] == "^" { i += 1 }
                    if i < s.count && s[i] == "]" { i += 1 }  // a leading ']' is a member
                }
                continue
            }
            if c == close {
                depth -= 1
                i += 1
                if depth == 0 { return i }
                continue
            }
            i += 1
        }
        return s.count
    }

    // MARK: hex

    /// ClamAV hex-signature notation, lower-cased; only hex digits and the wildcard characters
    /// `? * { } - ( ) | ! [ ]`, with at least two whole bytes.
    package static func normalisedHex(_ hex: String) throws(SignatureInputError) -> String {
        try checkPatternCharacters(hex, what: "hex pattern")
        let allowed = Set("0123456789abcdef?*{}-()|![]")
        let lower = hex.lowercased()
        if let bad = lower.first(where: { !allowed.contains($0) }) {
            throw SignatureInputError(
                "the hex pattern contains \(describe(bad)): use hex digits and ClamAV wildcards (?? * {n-m} (aa|bb)) only"
            )
        }
        let digits = lower.filter { $0.isHexDigit }.count
        guard digits >= 4 else { throw SignatureInputError("the hex pattern has fewer than 2 bytes") }
        return lower
    }

    // MARK: helpers

    static func checkPatternCharacters(_ s: String, what: String) throws(SignatureInputError) {
        guard !s.isEmpty else { throw SignatureInputError("the \(what) is empty") }
        for u in s.unicodeScalars {
            if u == "\n" || u == "\r" {
                throw SignatureInputError("the \(what) contains a line break: a signature is one line")
            }
            if u == "\0" { throw SignatureInputError("the \(what) contains a NUL byte") }
            if (u.value < 0x20 && u != "\t") || u.value == 0x7f {
                throw SignatureInputError("the \(what) contains \(describe(Character(u)))")
            }
        }
        guard s.utf8.count <= maxPatternLength else {
            throw SignatureInputError("the \(what) is longer than \(maxPatternLength) bytes")
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map(hexByte).joined() }

    static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    static func isHexDigit(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)
    }

    static func describe(_ c: Character) -> String {
        switch c {
        case "\n": return "a line break"
        case "\r": return "a carriage return"
        case "\0": return "a NUL byte"
        case "\t": return "a tab"
        case " ": return "a space"
        default:
            if let u = c.unicodeScalars.first, u.value < 0x20 || u.value == 0x7f {
                return "the control character 0x" + hexByte(UInt8(u.value))
            }
            return "'\(c)'"
        }
    }

    /// The string with control characters shown as `\xHH`, for messages.
    static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f {
                out += "\\x" + hexByte(UInt8(u.value))
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}

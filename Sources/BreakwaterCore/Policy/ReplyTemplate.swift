/// A reply text template (`reject-message`): every `%s` stands for the signature name; without one
/// the name is appended after a space. Split once, so a reply costs one concatenation.
package struct ReplyTemplate: Sendable {
    private let pieces: [String]

    package init(_ template: String) {
        pieces =
            template.contains("%s")
            ? template.split(separator: "%s", omittingEmptySubsequences: false).map(String.init)
            : [template + " ", ""]
    }

    package func render(_ name: String) -> String {
        var out = pieces[0]
        for p in pieces.dropFirst() {
            out += name
            out += p
        }
        return out
    }
}

/// Reply text as libmilter wants it: no CR/LF, `%` doubled.
package func milterSafeReplyText(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "\r", "\n", "\r\n": out.append(" ")
        case "%": out.append("%%")
        default: out.append(c)
        }
    }
    return out
}

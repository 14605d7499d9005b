extension StringProtocol {
    /// The string without leading and trailing spaces, tabs, CR and LF.
    package var trimmed: String {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !ws($0) }) else { return "" }
        let last = lastIndex(where: { !ws($0) })!
        return String(self[first...last])
    }
}

/// `text` broken into lines of at most `width` characters at spaces.
func wrap(_ text: String, width: Int) -> [String] {
    var lines: [String] = []
    var cur = ""
    for word in text.split(separator: " ") {
        if !cur.isEmpty && cur.count + 1 + word.count > width {
            lines.append(cur)
            cur = ""
        }
        cur += cur.isEmpty ? String(word) : " " + word
    }
    if !cur.isEmpty { lines.append(cur) }
    return lines
}

/// The Levenshtein distance between two strings (the "did you mean" of unknown keys).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}

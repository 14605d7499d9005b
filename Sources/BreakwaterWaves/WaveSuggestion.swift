import BreakwaterCore

/// A signature suggested for a wave: the longest run of normalised words that every sample holds
/// verbatim (up to case, blanks and punctuation), as a case-insensitive regular expression.
package struct WaveSuggestion: Sendable, Equatable {
    /// The words of the run.
    package var words: [String]
    /// PCRE: the words with `[^a-z0-9]+` between them (any run of blanks, line breaks or
    /// punctuation), to be used case-insensitively.
    package var regex: String
    /// The suggested signature name.
    package var name: String

    /// Runs longer than this are cut to their most distinctive window: a shorter pattern survives a
    /// reworded sentence elsewhere in the template.
    package static let maxWords = 12
    /// A run shorter than this (in words or bytes) is too common to be a signature.
    package static let minWords = 3
    package static let minBytes = 16

    /// The signature name for a wave id: `PREFIX` + `Wave.` + the id without its leading `w`
    /// (for example Breakwater.Local.Wave.3fa2c81b).
    package static func name(forWave id: String, prefix: String = "Breakwater.Local.") -> String {
        prefix + "Wave." + (id.hasPrefix("w") ? String(id.dropFirst()) : id)
    }

    /// Samples needed for a suggestion: what one message holds says nothing of what varies.
    package static let minSamples = 2

    /// nil when the samples share no run long enough (or there are fewer than `minSamples`).
    package static func make(waveID: String, samples: [String], prefix: String = "Breakwater.Local.") -> WaveSuggestion?
    {
        let docs = samples.map(segments).filter { !$0.isEmpty }
        guard docs.count >= minSamples, let first = docs.first else { return nil }
        let longestSegment = first.map(\.count).max() ?? 0
        // Binary search on the run length: a common run of L words implies one of L-1.
        var lo = 0
        var hi = longestSegment
        var bestRuns: [[Substring]] = []
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            let runs = commonRuns(docs, length: mid)
            if runs.isEmpty {
                hi = mid - 1
            } else {
                lo = mid
                bestRuns = runs
            }
        }
        guard lo >= minWords else { return nil }
        if bestRuns.isEmpty || bestRuns[0].count != lo { bestRuns = commonRuns(docs, length: lo) }
        // Among the longest runs, the one with the most letters in words of 4 or more (fewer
        // little words); then cut it to its best window of maxWords.
        func score(_ r: ArraySlice<Substring>) -> Int { r.reduce(0) { $0 + ($1.utf8.count >= 4 ? $1.utf8.count : 0) } }
        var best: ArraySlice<Substring> = []
        var bestScore = -1
        for run in bestRuns {
            let width = min(run.count, maxWords)
            for start in 0...(run.count - width) {
                let w = run[start..<(start + width)]
                let sc = score(w)
                if sc > bestScore {
                    bestScore = sc
                    best = w
                }
            }
        }
        let words = best.map(String.init)
        guard words.count >= minWords, words.reduce(0, { $0 + $1.utf8.count }) + words.count - 1 >= minBytes else {
            return nil
        }
        return WaveSuggestion(
            words: words, regex: words.map(regexWord).joined(separator: "[^a-z0-9]+"),
            name: name(forWave: waveID, prefix: prefix))
    }

    /// The `breakwater signatures add` command line that adds it (`breakwater waves promote` runs the
    /// same).
    package func command(comment: String? = nil) -> String {
        var c = "breakwater signatures add \(name) --regex \(WaveSuggestion.shellQuote(regex)) --ignore-case"
        if let comment { c += " --comment \(WaveSuggestion.shellQuote(comment))" }
        return c
    }

    /// Quoted for a shell, and free of control characters (see `Escape.shell`).
    package static func shellQuote(_ s: String) -> String {
        Escape.shell(s)
    }

    /// The sample's segments (runs of adjacent words), each as its words.
    static func segments(_ sample: String) -> [[Substring]] {
        sample.split(separator: "\n").map { $0.split(separator: " ") }.filter { !$0.isEmpty }
    }

    /// The runs of `length` words present in every document (those of the first, in order).
    static func commonRuns(_ docs: [[[Substring]]], length: Int) -> [[Substring]] {
        guard length > 0 else { return [] }
        func grams(_ doc: [[Substring]]) -> Set<String> {
            var set = Set<String>()
            for seg in doc where seg.count >= length {
                for i in 0...(seg.count - length) { set.insert(seg[i..<(i + length)].joined(separator: " ")) }
            }
            return set
        }
        var common = grams(docs[0])
        for d in docs.dropFirst() {
            if common.isEmpty { break }
            common.formIntersection(grams(d))
        }
        guard !common.isEmpty else { return [] }
        var out: [[Substring]] = []
        var seen = Set<String>()
        for seg in docs[0] where seg.count >= length {
            for i in 0...(seg.count - length) {
                let key = seg[i..<(i + length)].joined(separator: " ")
                if common.contains(key) && seen.insert(key).inserted { out.append(Array(seg[i..<(i + length)])) }
            }
        }
        return out
    }

    /// A normalised word as a regex: ASCII letters as they are (the signature is case-insensitive),
    /// a non-ASCII character as any bytes of its UTF-8 length (its capital has the same length in
    /// Latin scripts, and the case-insensitive flag does not fold it).
    static func regexWord(_ w: String) -> String {
        var out = ""
        for ch in w.unicodeScalars {
            if ch.isASCII {
                let c = Character(ch)
                if c.isLetter || c.isNumber { out.append(c) } else { out += "\\" + String(c) }
            } else {
                out += "[\\x80-\\xff]{\(String(ch).utf8.count)}"
            }
        }
        return out
    }
}

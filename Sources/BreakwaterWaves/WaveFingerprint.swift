import BreakwaterCore

// Wave detection, part 1: a fuzzy fingerprint of a message's decoded text.
//
// Why MinHash (one-permutation, 64 bins) and not simhash
// -------------------------------------------------------
// A wave's messages share most of their text but differ per recipient: names, tracking tokens,
// unique links, a varied subject, and often a "hash buster" (a paragraph of random common words
// appended to each copy, as in the giveaway wave of the outage). What stays the same is a *set* of
// word sequences, so the right measure is the Jaccard similarity of the sets of word 3-shingles.
//
// - simhash estimates the angle between weighted feature vectors. With a hash buster of 20-80
//   random words on a 100-word message, two copies share only 40-60 % of their shingles; their
//   expected simhash distance is then 15-20 of 64 bits, while unrelated texts sit at 32 +- 4. A
//   Hamming threshold that catches the wave also catches unrelated mail, and one that does not
//   misses the wave.
// - MinHash estimates Jaccard directly, so "at least 25 % of the shingles in common" is a
//   threshold with a known error: with 64 bins the estimate of J = 0.4 has a standard deviation of
//   0.06, so copies with J >= 0.4 pass a 0.25 threshold 99 % of the time, and unrelated mail
//   (J < 0.05) passes practically never. Banding the 64 values (32 bands of 2) gives an LSH index
//   in which a copy finds its wave in a few hash lookups: P(candidate) = 1 - (1 - J^2)^32, which
//   is 0.95 at J = 0.3 and 0.99+ above J = 0.4.
// - One-permutation hashing (each shingle hashed once, its top 6 bits pick one of 64 bins, each
//   bin keeps its minimum; empty bins filled from the next non-empty bin, "densification") costs one
//   hash per shingle instead of 64, so fingerprinting stays a small fraction of the scan.
//
// The text read per message is bounded (`WaveFingerprintBuilder.defaultByteLimit`, 64 KB of
// decoded layers), so the cost per message is bounded whatever arrives.

/// Number of MinHash values in a fingerprint.
package let waveSignatureSize = 64

/// The fuzzy fingerprint of one message, and the bits of its text kept for display and for the
/// suggested signature.
package struct WaveFingerprint: Sendable {
    /// One-permutation MinHash of the message's word 3-shingles (body and subject), densified.
    package var signature: [UInt32]
    /// Words of decoded text that went into it.
    package var words: Int
    /// The subject as received (decoded only of its leading/trailing blanks), at most 200 bytes.
    package var subject: String
    /// The normalised text: words separated by a space, a newline where two words were not
    /// adjacent in the original (something was dropped between them, or an HTML tag or entity
    /// separated them). At most `WaveFingerprintBuilder.sampleLimit` bytes. Used for the suggested
    /// signature, whose word runs must exist verbatim (up to case and blanks) in every message.
    package var sample: String

    package init(signature: [UInt32], words: Int, subject: String, sample: String) {
        self.signature = signature
        self.words = words
        self.subject = subject
        self.sample = sample
    }

    /// Estimated Jaccard similarity of the two messages' shingle sets: the fraction of equal bins.
    package func similarity(_ other: [UInt32]) -> Double {
        Double(WaveFingerprint.equalBins(signature, other)) / Double(waveSignatureSize)
    }

    static func equalBins(_ a: [UInt32], _ b: [UInt32]) -> Int {
        var n = 0
        for i in 0..<min(a.count, b.count) where a[i] == b[i] { n += 1 }
        return n
    }

    /// The first words of the sample, on one line, for display.
    package var excerpt: String { WaveFingerprint.excerpt(sample) }

    /// The first words of a sample, on one line, at most 160 bytes.
    package static func excerpt(_ sample: String) -> String {
        var out = ""
        for w in sample.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if out.utf8.count + w.utf8.count + 1 > 160 { break }
            if !out.isEmpty { out += " " }
            out += w
        }
        return out
    }
}

/// Kinds of decoded layer the fingerprint reads.
package enum WaveLayerKind: Sendable {
    case text, html, utf16LE, utf16BE, html16LE, html16BE

    /// The kind for a libclamav file type name, or nil for layers that are not text (attachments,
    /// archives, the message itself).
    package static func forClamType(_ type: String) -> WaveLayerKind? {
        switch type {
        case "CL_TYPE_TEXT_ASCII", "CL_TYPE_TEXT_UTF8": return .text
        case "CL_TYPE_HTML": return .html
        case "CL_TYPE_TEXT_UTF16LE": return .utf16LE
        case "CL_TYPE_TEXT_UTF16BE": return .utf16BE
        case "CL_TYPE_HTML_UTF16": return .html16LE
        default: return nil
        }
    }
}

/// Builds a `WaveFingerprint` from the decoded layers of one message, in the order libclamav hands
/// them over. Not thread-safe: one builder per message.
///
/// Normalisation: lower case; words holding a digit are dropped (numbers, dates, amounts, most
/// tracking tokens), and so are e-mail addresses and overlong tokens; a URL is replaced by its
/// domain (the last two labels of its host, three when the second-level label is short as in
/// co.uk: per-recipient subdomains and all paths and queries vanish); HTML loses its tags, comments,
/// scripts and styles and has its entities decoded; blanks collapse.
package struct WaveFingerprintBuilder: Sendable {
    /// Bytes of decoded text read per message, all layers together.
    package static let defaultByteLimit = 64 << 10
    /// Bytes of normalised text kept as the sample.
    package static let sampleLimit = 2048
    /// Fewer body words than this and the message is not fingerprinted (an image-only or
    /// attachment-only message would be judged on its subject alone).
    package static let minimumWords = 8

    package private(set) var remaining: Int
    private var mins = [UInt32](repeating: .max, count: waveSignatureSize)
    private var filled = 0
    private var tokenizer = WaveTokenizer()
    private var sink = ShingleSink()

    package init(byteLimit: Int = WaveFingerprintBuilder.defaultByteLimit) {
        remaining = byteLimit
    }

    /// Words read so far.
    package var words: Int { sink.words }

    /// Reads (a prefix of) one decoded layer.
    package mutating func add(_ bytes: UnsafeRawBufferPointer, kind: WaveLayerKind) {
        guard remaining > 0, bytes.count > 0 else { return }
        let take = min(bytes.count, remaining)
        remaining -= take
        let part = UnsafeRawBufferPointer(rebasing: bytes[0..<take])
        sink.startLayer()
        switch kind {
        case .text:
            tokenizer.feedText(part, into: &sink)
        case .html:
            tokenizer.feedHTML(part, into: &sink)
        case .utf16LE, .utf16BE, .html16LE, .html16BE:
            let utf8 = WaveFingerprintBuilder.utf16ToUTF8(part, littleEndian: kind == .utf16LE || kind == .html16LE)
            utf8.withUnsafeBytes { b in
                if kind == .html16LE || kind == .html16BE {
                    tokenizer.feedHTML(b, into: &sink)
                } else {
                    tokenizer.feedText(b, into: &sink)
                }
            }
        }
        tokenizer.finish(into: &sink)
    }

    /// Convenience for tests and tools.
    package mutating func add(_ text: String, kind: WaveLayerKind) {
        var t = text
        t.withUTF8 { add(UnsafeRawBufferPointer($0), kind: kind) }
    }

    /// The fingerprint, or nil when the message has too little text to be judged.
    package func finish(subject: String?) -> WaveFingerprint? {
        body.finish(subject: subject)
    }

    /// What the body contributed (the subject not yet mixed in): compact, to be kept for a repeat.
    package var body: WaveBody {
        var b = sink
        b.flushShort()
        return WaveBody(mins: b.mins, words: b.words, sample: b.sample)
    }

    /// Rotation densification    /// Rotation densification: an empty bin takes the value of the next non-empty bin to its right
    /// (circularly), offset by the distance so that copies stay distinguishable.
    static func densify(_ mins: inout [UInt32]) {
        let n = mins.count
        guard mins.contains(where: { $0 != .max }) else { return }
        var out = mins
        for i in 0..<n where mins[i] == .max {
            var d = 1
            while mins[(i + d) % n] == .max { d += 1 }
            out[i] = mins[(i + d) % n] &+ UInt32(truncatingIfNeeded: d) &* 0x9E37_79B1
        }
        mins = out
    }

    static func utf16ToUTF8(_ b: UnsafeRawBufferPointer, littleEndian: Bool) -> [UInt8] {
        var units: [UInt16] = []
        units.reserveCapacity(b.count / 2)
        var i = 0
        while i + 1 < b.count {
            let lo = UInt16(b[i])
            let hi = UInt16(b[i + 1])
            units.append(littleEndian ? (hi << 8 | lo) : (lo << 8 | hi))
            i += 2
        }
        if units.first == 0xFEFF { units.removeFirst() }
        return Array(String(decoding: units, as: UTF16.self).utf8)
    }
}

/// A message body's part of a fingerprint: the MinHash of its shingles (before densification),
/// its word count and its sample.
package struct WaveBody: Sendable {
    var mins: [UInt32]
    package let words: Int
    var sample: [UInt8]

    /// The fingerprint with the subject mixed in, or nil when the body has too little text.
    package func finish(subject: String?) -> WaveFingerprint? {
        guard words >= WaveFingerprintBuilder.minimumWords else { return nil }
        var mins = self.mins
        // The subject adds its own shingles (salted apart from the body's): a wave with a fixed
        // subject is a little tighter, one with varied subjects loses little.
        var subjectText = ""
        if let subject {
            subjectText = truncatedUTF8(subject.trimmed, max: 200)
            var sub = ShingleSink(salt: 0x5bd1_e995_9e37_79b9)
            var tok = WaveTokenizer()
            var s = subjectText
            s.withUTF8 { tok.feedText(UnsafeRawBufferPointer($0), into: &sub) }
            tok.finish(into: &sub)
            sub.flushShort()
            for i in 0..<waveSignatureSize where sub.mins[i] < mins[i] { mins[i] = sub.mins[i] }
        }
        WaveFingerprintBuilder.densify(&mins)
        return WaveFingerprint(
            signature: mins, words: words, subject: subjectText,
            sample: String(decoding: sample, as: UTF8.self))
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
package func truncatedUTF8(_ s: String, max: Int) -> String {
    guard s.utf8.count > max else { return s }
    var bytes = Array(s.utf8.prefix(max))
    // Drop a last character that the cut left incomplete.
    var lead = bytes.count - 1
    while lead > 0 && bytes.count - lead < 4 && bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
    if lead >= 0 {
        let b = bytes[lead]
        let need = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2
        if bytes.count - lead < need { bytes.removeSubrange(lead...) }
    }
    return String(decoding: bytes, as: UTF8.self)
}

// MARK: - hashing

@inline(__always) func waveMix(_ x: UInt64) -> UInt64 {
    // splitmix64's finaliser
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

@inline(__always) func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

/// Receives normalised words; keeps the running MinHash of 3-shingles and the sample text.
struct ShingleSink {
    var mins = [UInt32](repeating: .max, count: waveSignatureSize)
    var words = 0
    var sample: [UInt8] = []
    let salt: UInt64
    // The last two word hashes of the current layer.
    private var h1: UInt64 = 0, h2: UInt64 = 0
    private var inLayer = 0
    // Word hashes of a layer too short for a 3-shingle, kept to be added as single words.
    private var shortWords: [UInt64] = []

    init(salt: UInt64 = 0) {
        self.salt = salt
        sample.reserveCapacity(256)
    }

    mutating func startLayer() {
        flushShort()
        inLayer = 0
        h1 = 0
        h2 = 0
        if !sample.isEmpty && sample.last != UInt8(ascii: "\n") && sample.count < WaveFingerprintBuilder.sampleLimit {
            sample.append(UInt8(ascii: "\n"))
        }
    }

    /// A layer of one or two words contributes them as features of their own.
    mutating func flushShort() {
        if inLayer > 0 && inLayer < 3 {
            for h in shortWords { add(waveMix(h ^ 0x0123_4567_89ab_cdef ^ salt)) }
        }
        shortWords.removeAll(keepingCapacity: true)
        inLayer = 0
    }

    @inline(__always) mutating func add(_ h: UInt64) {
        let bin = Int(truncatingIfNeeded: h >> 58)
        let v = UInt32(truncatingIfNeeded: h)
        if v < mins[bin] { mins[bin] = v }
    }

    /// A word's hash: its bytes lowered (as `WaveTokenizer.lower` does), packed 8 to a 64-bit block,
    /// each block folded in with a multiply and a rotation, from a seed of the salt and the length.
    /// One multiply per 8 bytes: a multiply per byte (FNV) was most of the fingerprint's time.
    @inline(__always)
    func hashWord(_ p: UnsafePointer<UInt8>, count n: Int) -> UInt64 {
        var h = (0xcbf2_9ce4_8422_2325 ^ salt) &+ UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        var i = 0
        var afterC3 = false
        while i < n {
            let end = min(i + 8, n)
            var block: UInt64 = 0
            var shift: UInt64 = 0
            while i < end {
                let c = p[i]
                block |= UInt64(WaveTokenizer.lower(c, afterC3: afterC3)) << shift
                afterC3 = c == 0xC3
                shift &+= 8
                i += 1
            }
            h = rotl((h ^ block) &* 0xff51_afd7_ed55_8ccd, 31)
        }
        return h
    }

    /// One word, as found in the text (`w`: ASCII letters in any case, and UTF-8 sequences); it is
    /// lowered here while hashed. `adjacent`: the word followed the previous one with only blanks
    /// or punctuation between them in the original text.
    @inline(__always)
    mutating func word(_ w: UnsafeRawBufferPointer, adjacent: Bool) {
        guard let p = w.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let h = waveMix(hashWord(p, count: w.count))
        words += 1
        inLayer += 1
        if inLayer >= 3 {
            add(waveMix(h2 &* 0x9E37_79B9_7F4A_7C15 ^ rotl(h1, 21) ^ rotl(h, 42) ^ salt))
            if inLayer == 3 { shortWords.removeAll(keepingCapacity: true) }
        } else {
            shortWords.append(h)
        }
        h2 = h1
        h1 = h
        if sample.count + w.count + 1 <= WaveFingerprintBuilder.sampleLimit {
            appendSample(w, adjacent: adjacent)
        }
    }

    private mutating func appendSample(_ w: UnsafeRawBufferPointer, adjacent: Bool) {
        if !sample.isEmpty && sample.last != UInt8(ascii: "\n") {
            sample.append(adjacent ? UInt8(ascii: " ") : UInt8(ascii: "\n"))
        }
        var afterC3 = false
        for b in w {
            sample.append(WaveTokenizer.lower(b, afterC3: afterC3))
            afterC3 = b == 0xC3
        }
    }
}

// MARK: - tokenizer

/// Turns decoded text (plain or HTML) into normalised words, one layer at a time. Plain text and
/// HTML text between tags are read in place, a blank-delimited chunk at a time; only a chunk holding
/// an HTML entity is copied (decoded) first. No allocation per word.
struct WaveTokenizer {
    /// The current chunk when it has to be assembled (it holds a decoded entity).
    private var chunk: [UInt8] = []
    private var chunkTooLong = false
    /// The assembled chunk holds a decoded entity: its words are not verbatim in the source.
    private var chunkDirty = false
    /// Something was dropped or a tag intervened since the last word.
    private var broken = true

    static let maxChunk = 512
    static let maxWord = 40

    // Byte classes, as bits: a byte is one of letter (ASCII letters and every non-ASCII byte: UTF-8
    // letters), digit, blank (controls, space, DEL), one of the marks that make a chunk worth a
    // closer look (':' '@' '.'), or other punctuation.
    static let letter: UInt8 = 1, digit: UInt8 = 2, blank: UInt8 = 4, colon: UInt8 = 8, at: UInt8 = 16, dot: UInt8 = 32
    static let other: UInt8 = 64
    static let wordBits: UInt8 = letter | digit

    /// The class bits of a byte. The table is a string constant in the binary (each entry 0x30 + bits:
    /// 4 blank, 1 letter, 2 digit, 8 ':', @ '@', P '.', p other), so a lookup needs no lazy
    /// initialisation and no bounds check; `WaveTests` checks it against the definition above.
    @inline(__always) static func classOf(_ c: UInt8) -> UInt8 {
        let table: StaticString = """
            444444444444444444444444444444444pppppppppppppPp22222222228ppppp\
            @11111111111111111111111111pppppp11111111111111111111111111pppp4\
            1111111111111111111111111111111111111111111111111111111111111111\
            1111111111111111111111111111111111111111111111111111111111111111
            """
        return table.utf8Start[Int(c)] &- 0x30
    }

    /// Lower case for ASCII, and for Latin-1 capitals in UTF-8 (C3 80..9E but not the
    /// multiplication sign): `afterC3` says the previous byte was C3.
    @inline(__always) static func lower(_ c: UInt8, afterC3: Bool) -> UInt8 {
        if c >= 0x41 && c <= 0x5A { return c | 0x20 }
        if afterC3 && c >= 0x80 && c <= 0x9E && c != 0x97 { return c + 0x20 }
        return c
    }

    init() {
        chunk.reserveCapacity(64)
    }

    mutating func finish(into sink: inout ShingleSink) {
        flushChunk(into: &sink)
        broken = true
    }

    /// Plain text: chunks are read where they are.
    mutating func feedText(_ b: UnsafeRawBufferPointer, into sink: inout ShingleSink) {
        let n = b.count
        guard n > 0, let p = b.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            // Nothing more of an assembled chunk: it ends here.
            if !chunk.isEmpty || chunkTooLong { flushChunk(into: &sink) }
            return
        }
        var i = 0
        if !chunk.isEmpty || chunkTooLong {
            // Finish an assembled chunk that continues here.
            while i < n && WaveTokenizer.classOf(p[i]) & WaveTokenizer.blank == 0 {
                append(p[i])
                i += 1
            }
            flushChunk(into: &sink)
        }
        while i < n {
            while i < n && WaveTokenizer.classOf(p[i]) & WaveTokenizer.blank != 0 { i += 1 }
            let start = i
            var seen: UInt8 = 0
            while i < n {
                let k = WaveTokenizer.classOf(p[i])
                if k & WaveTokenizer.blank != 0 { break }
                seen |= k
                i += 1
            }
            if i > start {
                chunkAt(
                    UnsafeRawBufferPointer(start: p + start, count: i - start), seen: seen, dirty: false, into: &sink)
            }
        }
    }

    @inline(__always) private mutating func append(_ c: UInt8) {
        if chunk.count < WaveTokenizer.maxChunk { chunk.append(c) } else { chunkTooLong = true }
    }

    private mutating func flushChunk(into sink: inout ShingleSink) {
        if chunkTooLong {
            broken = true
        } else if !chunk.isEmpty {
            let dirty = chunkDirty
            chunk.withUnsafeBytes { c in
                var seen: UInt8 = 0
                for x in c { seen |= WaveTokenizer.classOf(x) }
                chunkAt(c, seen: seen, dirty: dirty, into: &sink)
            }
        }
        chunk.removeAll(keepingCapacity: true)
        chunkTooLong = false
        chunkDirty = false
    }

    /// An HTML tag or entity boundary: words on either side are not adjacent in the source.
    private mutating func hardBreak(into sink: inout ShingleSink) {
        flushChunk(into: &sink)
        broken = true
    }

    mutating func feedHTML(_ b: UnsafeRawBufferPointer, into sink: inout ShingleSink) {
        let n = b.count
        var i = 0
        while i < n {
            // Text up to the next tag: in place when it holds no entity.
            var j = i
            var amp = false
            while j < n && b[j] != UInt8(ascii: "<") {
                if b[j] == UInt8(ascii: "&") { amp = true }
                j += 1
            }
            if j > i {
                if amp {
                    text(withEntities: UnsafeRawBufferPointer(rebasing: b[i..<j]), into: &sink)
                } else {
                    feedText(UnsafeRawBufferPointer(rebasing: b[i..<j]), into: &sink)
                }
            }
            i = j
            guard i < n else { break }
            // A tag (or comment, script, style): skipped, and a break.
            if WaveTokenizer.hasPrefix(b, at: i + 1, "!--") {
                i = WaveTokenizer.find(b, from: i + 4, "-->").map { $0 + 3 } ?? n
            } else if WaveTokenizer.hasPrefixCI(b, at: i + 1, "script") {
                i = WaveTokenizer.findCI(b, from: i + 7, "</script").map { $0 + 8 } ?? n
                i = WaveTokenizer.skipTag(b, from: i)
            } else if WaveTokenizer.hasPrefixCI(b, at: i + 1, "style") {
                i = WaveTokenizer.findCI(b, from: i + 6, "</style").map { $0 + 7 } ?? n
                i = WaveTokenizer.skipTag(b, from: i)
            } else if i + 1 < n, WaveTokenizer.isTagStart(b[i + 1]) {
                i = WaveTokenizer.skipTag(b, from: i + 1)
            } else {
                // A lone '<': text.
                flushChunk(into: &sink)
                append(UInt8(ascii: "<"))
                i += 1
                continue
            }
            hardBreak(into: &sink)
        }
    }

    /// HTML text holding entities: assembled chunk by chunk, entities decoded.
    private mutating func text(withEntities b: UnsafeRawBufferPointer, into sink: inout ShingleSink) {
        let n = b.count
        var i = 0
        while i < n {
            let c = b[i]
            if WaveTokenizer.classOf(c) & WaveTokenizer.blank != 0 {
                flushChunk(into: &sink)
                i += 1
            } else if c == UInt8(ascii: "&") {
                var j = i + 1
                while j < n && j - i <= 10 && b[j] != UInt8(ascii: ";") && WaveTokenizer.isEntityChar(b[j]) { j += 1 }
                guard j < n && b[j] == UInt8(ascii: ";") && j > i + 1 else {
                    append(c)
                    i += 1
                    continue
                }
                let decoded = WaveTokenizer.entity(b, from: i + 1, to: j)
                i = j + 1
                switch decoded {
                case .blank:
                    hardBreak(into: &sink)
                case .punct:
                    chunkDirty = true
                    append(UInt8(ascii: "&"))
                case .scalar(let u):
                    chunkDirty = true
                    var s = String(Character(u))
                    s.withUTF8 { for x in $0 { append(x) } }
                }
            } else {
                append(c)
                i += 1
            }
        }
    }

    // MARK: chunk classification

    /// One blank-delimited chunk: a URL (its domain is the word), an address (dropped), or words.
    /// `seen`: the class bits of all its bytes together. `dirty`: it was assembled from decoded
    /// entities, so its words are not verbatim in the source.
    private mutating func chunkAt(_ c: UnsafeRawBufferPointer, seen: UInt8, dirty: Bool, into sink: inout ShingleSink) {
        let n = c.count
        if n > WaveTokenizer.maxChunk {
            broken = true
            return
        }
        guard let p = c.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let colon = seen & WaveTokenizer.colon != 0
        let at = seen & WaveTokenizer.at != 0
        let dot = seen & WaveTokenizer.dot != 0
        if colon || (dot && n > 4 && WaveTokenizer.findCI(c, from: 0, "www.") != nil) {
            if let host = WaveTokenizer.urlHost(c) {
                // The domain stands for the link; links are never part of a verbatim word run.
                broken = true
                let domain = WaveTokenizer.registeredDomain(host)
                if !domain.isEmpty && !domain.contains(where: WaveTokenizer.isDigit) && domain.count <= 64 {
                    domain.withUnsafeBytes { sink.word($0, adjacent: false) }
                }
                broken = true
                return
            }
        }
        if at && dot, let a = c.firstIndex(of: UInt8(ascii: "@")), c[(a + 1)...].contains(UInt8(ascii: ".")) {
            broken = true  // an e-mail address: dropped
            return
        }
        if dirty { broken = true }
        if seen == WaveTokenizer.letter {
            // Letters only (most chunks of prose): the chunk is one word.
            letterRun(p, 0, n, into: &sink)
            if dirty { broken = true }
            return
        }
        // Words: runs of letters (ASCII letters, and any non-ASCII byte: UTF-8 letters).
        var i = 0
        while i < n {
            while i < n && WaveTokenizer.classOf(p[i]) & WaveTokenizer.wordBits == 0 { i += 1 }
            let start = i
            var bits: UInt8 = 0
            while i < n {
                let k = WaveTokenizer.classOf(p[i])
                if k & WaveTokenizer.wordBits == 0 { break }
                bits |= k
                i += 1
            }
            guard i > start else { continue }
            if bits & WaveTokenizer.digit != 0 {
                broken = true
            } else {
                letterRun(p, start, i, into: &sink)
            }
        }
        if dirty { broken = true }
    }

    /// A run of letters, p[start..<end]: a word unless it is overlong, or a lone UTF-8 run of 3 bytes
    /// or less (such as a typographic quote).
    @inline(__always)
    private mutating func letterRun(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, into sink: inout ShingleSink) {
        let length = end - start
        if length > WaveTokenizer.maxWord {
            broken = true
        } else if length > 3 || (start..<end).contains(where: { p[$0] < 0x80 }) {
            let adjacent = !broken
            sink.word(UnsafeRawBufferPointer(start: p + start, count: length), adjacent: adjacent)
            broken = false
        }
    }

    /// The host when the chunk is a URL (scheme://host... or www.host...), lower-cased.
    static func urlHost(_ c: UnsafeRawBufferPointer) -> [UInt8]? {
        var start: Int?
        if let r = find(c, from: 0, "://") {
            start = r + 3
        } else if let w = findCI(c, from: 0, "www.") {
            start = w
        } else if hasPrefixCI(c, at: 0, "mailto:") {
            return []
        }
        guard var s = start else { return nil }
        var e = s
        while e < c.count {
            let x = c[e]
            if x == UInt8(ascii: "/") || x == UInt8(ascii: "?") || x == UInt8(ascii: "#") || x == UInt8(ascii: ":")
                || x == UInt8(ascii: "\"") || x == UInt8(ascii: "'") || x == UInt8(ascii: ">") || x == UInt8(ascii: "<")
            {
                break
            }
            if x == UInt8(ascii: "@") { s = e + 1 }  // user@host
            e += 1
        }
        return c[s..<max(s, e)].map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    /// example.com for a.b.example.com; example.co.uk for x.example.co.uk.
    static func registeredDomain(_ host: [UInt8]) -> [UInt8] {
        var labels = host.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: true)
        if labels.first.map({ Array($0) }) == Array("www".utf8) { labels.removeFirst() }
        guard labels.count > 2 else { return labels.joined(separator: [UInt8(ascii: ".")]).map { $0 } }
        let sld = labels[labels.count - 2]
        let keep = sld.count <= 3 ? 3 : 2
        return labels.suffix(keep).joined(separator: [UInt8(ascii: ".")]).map { $0 }
    }

    // MARK: byte helpers

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    @inline(__always) static func isTagStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == UInt8(ascii: "/") || c == UInt8(ascii: "!")
            || c == UInt8(ascii: "?")
    }
    @inline(__always) static func isEntityChar(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || isDigit(c) || c == UInt8(ascii: "#")
    }

    static func skipTag(_ b: UnsafeRawBufferPointer, from: Int) -> Int {
        var i = from
        var quote: UInt8 = 0
        while i < b.count {
            let c = b[i]
            if quote != 0 {
                if c == quote { quote = 0 }
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                quote = c
            } else if c == UInt8(ascii: ">") {
                return i + 1
            }
            i += 1
        }
        return b.count
    }

    static func hasPrefix(_ b: UnsafeRawBufferPointer, at i: Int, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        let pp = p.utf8Start
        for k in 0..<n where b[i + k] != pp[k] { return false }
        return true
    }

    static func hasPrefixCI(_ b: UnsafeRawBufferPointer, at i: Int, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        let pp = p.utf8Start
        for k in 0..<n where b[i + k] | 0x20 != pp[k] | 0x20 { return false }
        return true
    }

    static func find(_ b: UnsafeRawBufferPointer, from: Int, _ p: StaticString) -> Int? {
        var i = from
        while i < b.count {
            if hasPrefix(b, at: i, p) { return i }
            i += 1
        }
        return nil
    }

    static func findCI(_ b: UnsafeRawBufferPointer, from: Int, _ p: StaticString) -> Int? {
        var i = from
        while i < b.count {
            if hasPrefixCI(b, at: i, p) { return i }
            i += 1
        }
        return nil
    }

    enum Entity {
        case blank, punct
        case scalar(Unicode.Scalar)
    }

    static func entity(_ b: UnsafeRawBufferPointer, from: Int, to: Int) -> Entity {
        let name = Array(b[from..<to])
        if name.first == UInt8(ascii: "#") {
            var v: UInt32 = 0
            var hex = false
            var digits = name.dropFirst()
            if let f = digits.first, f | 0x20 == UInt8(ascii: "x") {
                hex = true
                digits = digits.dropFirst()
            }
            for c in digits {
                let d: UInt32
                if isDigit(c) {
                    d = UInt32(c - 0x30)
                } else if hex, c | 0x20 >= 0x61, c | 0x20 <= 0x66 {
                    d = UInt32((c | 0x20) - 0x61 + 10)
                } else {
                    return .blank
                }
                v = v &* (hex ? 16 : 10) &+ d
                if v > 0x10FFFF { return .blank }
            }
            guard let u = Unicode.Scalar(v) else { return .blank }
            if u.properties.isWhitespace || v < 0x20 || v == 0xA0 { return .blank }
            if !u.properties.isAlphabetic && !(v >= 0x30 && v <= 0x39) { return .punct }
            return .scalar(u)
        }
        switch String(decoding: name, as: UTF8.self).lowercased() {
        case "nbsp", "ensp", "emsp", "thinsp", "zwnj", "zwj", "shy": return .blank
        case "eacute": return .scalar("é")
        case "egrave": return .scalar("è")
        case "agrave": return .scalar("à")
        case "aacute": return .scalar("á")
        case "auml": return .scalar("ä")
        case "ouml": return .scalar("ö")
        case "uuml": return .scalar("ü")
        case "szlig": return .scalar("ß")
        case "ccedil": return .scalar("ç")
        case "ntilde": return .scalar("ñ")
        default: return .punct  // amp, lt, gt, quot, apos, euro, copy, ...: punctuation
        }
    }
}

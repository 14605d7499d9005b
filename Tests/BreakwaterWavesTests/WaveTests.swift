import BreakwaterCore
import Foundation
import XCTest

@testable import BreakwaterWaves

/// A seeded generator (SplitMix64): the tests are reproducible.
struct Rand {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
    mutating func hex(_ n: Int) -> String { (0..<n).map { _ in String(int(16), radix: 16) }.joined() }
    mutating func letters(_ n: Int) -> String {
        String((0..<n).map { _ in Character(Unicode.Scalar(UInt8(97 + int(26)))) })
    }
}

/// The tests' own wave and ham generator (not the shared corpus): a prize-draw wave whose copies
/// differ in the recipient's name, tracking tokens, unique links, the subject and the encoding, and
/// ham made of random business sentences.
enum Gen {
    static let names = [
        "Anna", "Ben", "Carla", "David", "Elena", "Frank", "Grace", "Hiro", "Ines", "Jonas", "Karin",
        "Luis", "Maria", "Nils", "Olga", "Peter", "Rosa", "Sven", "Tara", "Vera", "Wei", "Zoë", "Jürgen",
    ]
    static let vocabulary = """
        the of and to in for on with as by at from that this we our your you will be is are was have has can should
        please thanks regards team project meeting agenda update report review budget quarter schedule deadline client
        customer order invoice payment shipment delivery contract proposal draft document attached summary notes minutes
        action items follow next week monday tuesday morning afternoon call discuss confirm approve request support issue
        ticket resolved pending status progress milestone release version feature design system server network database
        backup migration test results analysis data figures sales revenue forecast growth market product service pricing
        """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)

    static func sentence(_ r: inout Rand, _ lo: Int = 6, _ hi: Int = 16) -> String {
        var w = (0..<(lo + r.int(hi - lo))).map { _ in r.pick(vocabulary) }
        w[0] = w[0].capitalized
        return w.joined(separator: " ") + "."
    }

    static func ham(_ r: inout Rand) -> (subject: String, text: String) {
        let subject = "Re: " + (0..<3).map { _ in r.pick(vocabulary) }.joined(separator: " ")
        let text =
            "Hi \(r.pick(names)),\n\n" + (0..<(3 + r.int(6))).map { _ in sentence(&r) }.joined(separator: " ")
            + "\n\nBest regards,\n\(r.pick(names))\n"
        return (subject, text)
    }

    /// One copy of the wave: (subject, plain text, HTML).
    static func wave(_ r: inout Rand, buster: Bool = false) -> (subject: String, text: String, html: String) {
        let name = r.pick(names)
        let token = r.hex(16)
        let url = "https://claim-\(token.prefix(8)).prize-center.test/r/\(token)?e=\(r.letters(20))"
        let subject = r.pick([
            "Congratulations \(name), you have been selected!",
            "\(name), your new car is waiting",
            "Final notice: claim your prize #\(10000 + r.int(89999))",
            "RE: Your entry in the 2024 giveaway",
        ])
        var extra = ""
        if buster { extra = "\n\n" + (0..<(20 + r.int(60))).map { _ in r.pick(vocabulary) }.joined(separator: " ") }
        let text = """
            Dear \(name),

            Congratulations! You have been selected to receive a brand new MINI Cooper in our
            Customer Appreciation Giveaway. Your entry number: \(token.prefix(4).uppercased())-\(r.int(999)).
            To claim your prize, confirm your shipping details within 48 hours:
            \(url)

            Only \(2 + r.int(8)) prizes remain. Shipping and registration fee: \(1 + r.int(9)).99 EUR.
            Write to claims-\(r.hex(6))@prize-center.test with any question.
            Unsubscribe: https://prize-center.test/u/\(token)\(extra)
            """
        let html = """
            <html><head><style>p{color:#333}</style></head><body><table><tr><td>
            <img src="https://img.prize-center.test/banner_\(r.hex(6)).jpg"></td></tr><tr><td>
            <h2>Dear \(name),</h2>
            <p>Congratulations! You have been selected to receive a brand new MINI Cooper in our
            Customer Appreciation Giveaway. Your entry number: \(token.prefix(4).uppercased())-\(r.int(999)).</p>
            <p>To claim your prize, confirm your shipping details within 48 hours:
            <a href="\(url)">CLAIM YOUR CAR</a></p>
            <p>Only \(2 + r.int(8)) prizes remain. Shipping and registration fee: \(1 + r.int(9)).99&nbsp;EUR.</p>
            <!-- \(r.hex(20)) -->
            <p><small><a href="https://prize-center.test/u/\(token)">Unsubscribe</a></small></p>\(extra)
            </td></tr></table></body></html>
            """
        return (subject, text, html)
    }

    static func fingerprint(subject: String, text: String? = nil, html: String? = nil) -> WaveFingerprint? {
        var b = WaveFingerprintBuilder()
        if let text { b.add(text, kind: .text) }
        if let html { b.add(html, kind: .html) }
        return b.finish(subject: subject)
    }

    /// A wave copy in one of its three shapes: text and HTML, HTML only, text only.
    static func waveFingerprint(_ r: inout Rand, buster: Bool = false) -> WaveFingerprint {
        let w = wave(&r, buster: buster)
        switch r.int(3) {
        case 0: return fingerprint(subject: w.subject, text: w.text, html: w.html)!
        case 1: return fingerprint(subject: w.subject, html: w.html)!
        default: return fingerprint(subject: w.subject, text: w.text)!
        }
    }
}

final class WaveFingerprintTests: XCTestCase {
    func sample(_ text: String, _ kind: WaveLayerKind = .text) -> String {
        var b = WaveFingerprintBuilder()
        b.add(text, kind: kind)
        return b.finish(subject: nil)?.sample ?? "(none)"
    }

    func testNormalisation() {
        XCTAssertEqual(
            sample("Hello   WORLD,\r\n\tthis Is\n\nA  test of the normaliser here"),
            "hello world this is a test of the normaliser here")
        // Digits: a word holding one is dropped, and the words around it are not adjacent.
        XCTAssertEqual(
            sample("Your entry AB12-2024 is number 42 of the prize draw for everyone"),
            "your entry\nis number\nof the prize draw for everyone")
        // E-mail addresses dropped; URLs become their domain (per-recipient subdomains, paths and queries go).
        XCTAssertEqual(
            sample(
                "write to anna.smith@example.org or visit https://claim-xyz.prize-center.test/r/abc?e=def today please now"
            ),
            "write to\nor visit\nprize-center.test\ntoday please now")
        XCTAssertEqual(
            sample("see www.Example.CO.UK/path and http://user@a.b.example.com:8080/x?y now then more words"),
            "see\nexample.co.uk\nand\nexample.com\nnow then more words")
        // Latin-1 capitals in UTF-8 are lowered too.
        XCTAssertEqual(
            sample("Grüße an ZOË und JÜRGEN aus der schönen Stadt heute"),
            "grüße an zoë und jürgen aus der schönen stadt heute")
    }

    func testByteClassTableMatchesItsDefinition() {
        for c in 0...255 {
            let b = UInt8(c)
            let want: UInt8
            if b <= 0x20 || b == 0x7F {
                want = WaveTokenizer.blank
            } else if (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || b >= 0x80 {
                want = WaveTokenizer.letter
            } else if b >= 0x30 && b <= 0x39 {
                want = WaveTokenizer.digit
            } else if b == UInt8(ascii: ":") {
                want = WaveTokenizer.colon
            } else if b == UInt8(ascii: "@") {
                want = WaveTokenizer.at
            } else if b == UInt8(ascii: ".") {
                want = WaveTokenizer.dot
            } else {
                want = WaveTokenizer.other
            }
            XCTAssertEqual(WaveTokenizer.classOf(b), want, "byte \(c)")
        }
    }

    func testEmptyTextEndsAnAssembledChunk() {
        var tok = WaveTokenizer()
        var sink = ShingleSink()
        var html = "caf&eacute;"
        html.withUTF8 { tok.feedHTML(UnsafeRawBufferPointer($0), into: &sink) }
        XCTAssertEqual(sink.words, 0)  // the chunk with the entity is still being assembled
        tok.feedText(UnsafeRawBufferPointer(start: nil, count: 0), into: &sink)
        XCTAssertEqual(sink.words, 1)
        XCTAssertEqual(String(decoding: sink.sample, as: UTF8.self), "café")
    }

    func testWordHashFoldsCaseAndTellsWordsApart() {
        let sink = ShingleSink()
        func h(_ s: String) -> UInt64 {
            var t = s
            return t.withUTF8 { sink.hashWord($0.baseAddress!, count: $0.count) }
        }
        XCTAssertEqual(h("Congratulations"), h("congratulations"))
        XCTAssertEqual(h("GRÜSSE"), h("grÜsse"))
        XCTAssertEqual(h("ZOË"), h("zoë"))
        // Words that differ only past the first 8-byte block, or only in length, differ.
        XCTAssertNotEqual(h("congratulation"), h("congratulations"))
        XCTAssertNotEqual(h("abcdefghij"), h("abcdefghik"))
        XCTAssertNotEqual(h("a"), h("aa"))
        // Distinct words, distinct hashes.
        var words = Set<String>()
        var r = Rand(7)
        for _ in 0..<20_000 { words.insert(r.letters(1 + r.int(12))) }
        XCTAssertEqual(Set(words.map(h)).count, words.count)
    }

    func testHTML() {
        let html = """
            <html><head><title>Hi</title><style>body { color: red }</style><script>var x = "<p>no</p>";</script></head>
            <body><!-- hidden comment words --><p>Congratulations!&nbsp;You have been <b>selected</b></p>
            <p>Caf&eacute; &amp; more &#77;INI &lt;here&gt; and the rest of it</p></body></html>
            """
        XCTAssertEqual(
            sample(html, .html),
            "hi\ncongratulations\nyou have been\nselected\ncafé\nmore\nmini\nhere\nand the rest of it")
    }

    func testBoundedRead() {
        var b = WaveFingerprintBuilder(byteLimit: 1000)
        let big = String(repeating: "lorem ipsum dolor sit amet ", count: 10_000)
        b.add(big, kind: .text)
        b.add(big, kind: .html)
        XCTAssertEqual(b.remaining, 0)
        XCTAssertLessThanOrEqual(b.words, 1000 / 2)
        let fp = b.finish(subject: "x")!
        XCTAssertLessThanOrEqual(fp.sample.utf8.count, WaveFingerprintBuilder.sampleLimit)
    }

    func testTooLittleTextIsNotFingerprinted() {
        XCTAssertNil(Gen.fingerprint(subject: "Invoice 42", text: "See attached."))
        XCTAssertNil(Gen.fingerprint(subject: "Photo", html: "<html><body><img src=\"cid:x\"></body></html>"))
    }

    func testWaveCopiesAreSimilarAndHamIsNot() {
        var r = Rand(7)
        let copies = (0..<40).map { _ in Gen.waveFingerprint(&r) }
        let hams = (0..<40).map { _ -> WaveFingerprint in
            let h = Gen.ham(&r)
            return Gen.fingerprint(subject: h.subject, text: h.text)!
        }
        var low = 1.0
        for i in 0..<copies.count {
            for j in (i + 1)..<copies.count { low = min(low, copies[i].similarity(copies[j].signature)) }
        }
        var high = 0.0
        for h in hams {
            for c in copies { high = max(high, h.similarity(c.signature)) }
            for g in hams where g.sample != h.sample { high = max(high, h.similarity(g.signature)) }
        }
        XCTAssertGreaterThan(low, 0.35, "least similar pair of wave copies")
        XCTAssertLessThan(high, 0.15, "most similar ham to anything")
    }

    func testHashBusterCopiesShareLessText() {
        // A paragraph of 20-80 random common words appended to each copy (as the outage's wave did)
        // cuts what two copies share from about 0.7 to about 0.28 (exact Jaccard of their shingle
        // sets, measured for these generators): right at the threshold, so a single comparison is no
        // longer reliable (the store's learned template is, see WaveStoreTests.testHashBusterWaveIsOneWave).
        func pairs(buster: Bool) -> [Double] {
            var r = Rand(11)
            let copies = (0..<30).map { _ in Gen.waveFingerprint(&r, buster: buster) }
            return (0..<copies.count).flatMap { i in
                ((i + 1)..<copies.count).map { copies[i].similarity(copies[$0].signature) }
            }
        }
        let plain = pairs(buster: false)
        let busted = pairs(buster: true)
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(v.count) }
        XCTAssertGreaterThan(mean(plain), 0.6)
        XCTAssertLessThan(mean(busted), 0.4)
        XCTAssertLessThan(busted.min()!, WaveSettings().similarity)
        XCTAssertGreaterThan(busted.max()!, WaveSettings().similarity)
    }
}

final class WaveStoreTests: XCTestCase {
    func origin(_ i: Int) -> WaveOrigin {
        WaveOrigin(sender: "s\(i)@spam\(i % 50).test", clientIP: [203, 0, UInt8(i % 200), 7], clientAddress: "")
    }

    func testWaveDetectedOnceAmongHam() {
        let store = InProcessWaveStore(settings: WaveSettings())
        var r = Rand(3)
        var now = 1_000_000.0
        var started: [WaveInfo] = []
        var firstWaveMessage: Int?
        var hamInWave = 0
        for i in 0..<600 {
            now += 0.5
            if i % 2 == 0 {
                let o = store.observe(Gen.waveFingerprint(&r), origin: origin(i), now: now)
                if let s = o.started {
                    started.append(s)
                    firstWaveMessage = i / 2 + 1
                }
            } else {
                let h = Gen.ham(&r)
                let o = store.observe(Gen.fingerprint(subject: h.subject, text: h.text)!, origin: origin(i), now: now)
                if o.wave != nil { hamInWave += 1 }
            }
        }
        XCTAssertEqual(started.count, 1, "\(started.map(\.id))")
        XCTAssertLessThanOrEqual(firstWaveMessage ?? 999, 60)
        XCTAssertEqual(hamInWave, 0)
        let list = store.waves(now: now)
        XCTAssertEqual(list.count, 1)
        XCTAssertTrue(list[0].active)
        XCTAssertGreaterThanOrEqual(list[0].totalCount, 290)
        XCTAssertGreaterThan(list[0].senders, 5)
        XCTAssertEqual(list[0].samples.count, InProcessWaveStore.samplesPerWave)
        // Ends after a whole window without a message.
        XCTAssertTrue(store.sweep(now: now + 599).isEmpty)
        let ended = store.sweep(now: now + 601)
        XCTAssertEqual(ended.count, 1)
        XCTAssertFalse(store.waves(now: now + 601)[0].active)
    }

    func testHashBusterWaveIsOneWave() {
        let store = InProcessWaveStore(settings: WaveSettings())
        var r = Rand(13)
        var now = 2_000_000.0
        var started = Set<String>()
        var inWave = 0
        var hamInWave = 0
        var startedAt = 0
        for i in 0..<300 {
            now += 0.5
            let o = store.observe(Gen.waveFingerprint(&r, buster: true), origin: origin(i), now: now)
            if let s = o.started {
                started.insert(s.id)
                if startedAt == 0 { startedAt = i + 1 }
            }
            if o.wave != nil { inWave += 1 }
            let h = Gen.ham(&r)
            if store.observe(Gen.fingerprint(subject: h.subject, text: h.text)!, origin: origin(1000 + i), now: now)
                .wave != nil
            {
                hamInWave += 1
            }
        }
        XCTAssertEqual(started.count, 1, "waves: \(started)")
        XCTAssertEqual(hamInWave, 0)
        // Once a wave, most of the rest of the copies are recognised.
        XCTAssertGreaterThan(
            Double(inWave) / Double(300 - startedAt + 1), 0.8, "\(inWave) in the wave after copy \(startedAt)")
        print(
            "hash-buster wave: started at copy \(startedAt), \(inWave) of the \(300 - startedAt + 1) copies from then on in it"
        )
    }

    func testThresholdCountsOnlyTheWindow() {
        var s = WaveSettings()
        s.threshold = 20
        s.window = 60
        let store = InProcessWaveStore(settings: s)
        var r = Rand(5)
        let w = Gen.wave(&r)
        let fp = Gen.fingerprint(subject: w.subject, text: w.text)!
        // 19 messages, a window apart from the next 19: never 20 in one window.
        for i in 0..<19 { XCTAssertNil(store.observe(fp, origin: origin(i), now: 100 + Double(i)).wave) }
        for i in 0..<19 { XCTAssertNil(store.observe(fp, origin: origin(i), now: 200 + Double(i)).wave) }
        // The 20th within a minute makes it.
        XCTAssertNotNil(store.observe(fp, origin: origin(99), now: 219.5).started)
    }

    func testSourcesMustExceedMinimum() {
        let store = InProcessWaveStore(settings: WaveSettings())
        var r = Rand(9)
        // 200 copies from 5 senders on 5 networks: not a wave (needs more than 5).
        for i in 0..<200 {
            let o = WaveOrigin(
                sender: "bulk\(i % 5)@shop.test", clientIP: [198, 51, 100 + UInt8(i % 5), 1], clientAddress: "")
            XCTAssertNil(store.observe(Gen.waveFingerprint(&r), origin: o, now: 1000 + Double(i)).wave)
        }
        // One more sender on a network already counted does not make it (senders are free to forge).
        let o = WaveOrigin(sender: "other@x.test", clientIP: [198, 51, 100, 1], clientAddress: "")
        XCTAssertNil(store.observe(Gen.waveFingerprint(&r), origin: o, now: 1201).wave)
        // One more network makes it.
        let o2 = WaveOrigin(sender: "bulk1@shop.test", clientIP: [198, 51, 105, 1], clientAddress: "")
        XCTAssertNotNil(store.observe(Gen.waveFingerprint(&r), origin: o2, now: 1202).started)
    }

    /// One host (or one /24, or one IPv6 /48) cannot forge a wave with fresh envelope senders; the
    /// same copies from distinct networks are one.
    func testForgedSendersFromOneNetworkAreOneSource() {
        var r = Rand(21)
        let store = InProcessWaveStore(settings: WaveSettings())
        for i in 0..<300 {
            let o = WaveOrigin(
                sender: "forged\(i)@random\(i).test", clientIP: [192, 0, 2, UInt8(1 + i % 250)], clientAddress: "")
            XCTAssertNil(store.observe(Gen.waveFingerprint(&r), origin: o, now: 1000 + Double(i)).wave, "copy \(i + 1)")
        }
        let list = store.waves(now: 1300)
        XCTAssertTrue(list.isEmpty)
        // IPv6: 300 distinct /64s inside one /48, and IPv4-mapped addresses of the same /24.
        let v6 = InProcessWaveStore(settings: WaveSettings())
        for i in 0..<300 {
            var ip: [UInt8] =
                [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07, UInt8(i >> 8), UInt8(i & 255)] + [UInt8](repeating: 0, count: 7)
                + [1]
            if i % 3 == 0 { ip = [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 192, 0, 2, UInt8(1 + i % 250)] }
            let o = WaveOrigin(sender: "forged\(i)@random\(i).test", clientIP: ip, clientAddress: "")
            XCTAssertNil(v6.observe(Gen.waveFingerprint(&r), origin: o, now: 1000 + Double(i)).wave, "copy \(i + 1)")
        }
        // The same copies from distinct /24s (one sender for all) are a wave.
        let spread = InProcessWaveStore(settings: WaveSettings())
        var started: Int?
        for i in 0..<100 {
            let o = WaveOrigin(sender: "same@one.test", clientIP: [198, 51, UInt8(i), 9], clientAddress: "")
            if spread.observe(Gen.waveFingerprint(&r), origin: o, now: 1000 + Double(i)).started != nil {
                started = i + 1
            }
        }
        XCTAssertNotNil(started)
        XCTAssertLessThanOrEqual(started ?? 999, 60)
    }

    /// 200,000 all-distinct messages: the store stays within its configured size (its own
    /// accounting and the process heap), every observe stays cheap, and a wave trickling in among
    /// them is still found.
    func testFloodOfDistinctMessagesStaysWithinCapacity() {
        var settings = WaveSettings()
        settings.storeSize = 4 << 20
        let rssBefore = residentBytes()
        let store = InProcessWaveStore(settings: settings)
        var r = Rand(42)
        var mins = [UInt32](repeating: 0, count: waveSignatureSize)
        var now = 5_000_000.0
        var waveFound = false
        let start = Date()
        for i in 0..<200_000 {
            now += 0.002
            if i % 500 == 0 {
                // One wave copy every 500 distinct messages (400 in all, 50 within any window of 100,000).
                // (From a network of its own each: sources are client networks.)
                let o = store.observe(Gen.waveFingerprint(&r), origin: origin(i / 500), now: now)
                if o.wave != nil { waveFound = true }
                continue
            }
            for k in 0..<waveSignatureSize { mins[k] = UInt32(truncatingIfNeeded: r.next()) }
            let fp = WaveFingerprint(signature: mins, words: 100, subject: "s", sample: "distinct \(i)")
            XCTAssertNil(store.observe(fp, origin: origin(i), now: now).wave)
        }
        let seconds = Date().timeIntervalSince(start)
        let u = store.usage()
        let rssAfter = residentBytes()
        XCTAssertLessThanOrEqual(u.entries, u.capacity)
        XCTAssertEqual(u.entries, u.capacity)
        XCTAssertLessThanOrEqual(u.bytes, Int(settings.storeSize))
        // The process as a whole: resident memory grew by no more than the store's size (plus 1 MB
        // for the test's own transient allocations).
        XCTAssertLessThanOrEqual(
            rssAfter - rssBefore, Int(settings.storeSize) + (1 << 20),
            "resident memory grew by \(rssAfter - rssBefore) bytes for a \(settings.storeSize)-byte store")
        XCTAssertGreaterThan(u.evictions, 190_000)
        XCTAssertTrue(waveFound, "a wave among the flood was not found")
        print("200,000 observes in \(String(format: "%.2f", seconds)) s, \(u.entries) entries, \(u.bytes) bytes")
    }
}

/// Resident bytes of this process (/proc/self/statm).
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let f = s.split(separator: " ")
    return (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))

    func testIndexSlotsNameEveryEntryAndKeepTheirTag() {
        for capacity in [64, 7_207, 100_000, InProcessWaveStore.maxEntries] {
            let st = InProcessWaveStore.State(capacity: capacity, settings: WaveSettings(), budget: 0)
            XCTAssertGreaterThanOrEqual(32 - st.entryBits, 8, "\(capacity)")
            var key: UInt64 = 0x9E37_79B9_7F4A_7C15
            for e in [0, 1, capacity / 2, capacity - 1] {
                key = key &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let slot = st.slotValue(key, e)
                XCTAssertNotEqual(slot, 0)
                XCTAssertEqual(st.slotEntry(slot), e, "\(capacity) \(e)")
                XCTAssertEqual(slot >> UInt32(st.entryBits), st.slotTag(key))
            }
        }
        // The largest store size the configuration takes fits the slot's entry field.
        let largest = InProcessWaveStore(
            settings: {
                var s = WaveSettings()
                s.storeSize = 4 << 30
                return s
            }())
        XCTAssertLessThan(largest.capacity, InProcessWaveStore.maxEntries)
    }
}

final class WaveDetectorTests: XCTestCase {
    func testAllowListedSenderIsNeverAWave() {
        var s = WaveSettings()
        s.allowSenders = ["@lists.example.org"]
        s.allowNetworks = [CIDR("192.0.2.0/24")!]
        let detector = WaveDetector(settings: s, stats: Stats())
        let control = WaveDetector(settings: WaveSettings(), stats: Stats())
        var r = Rand(1)
        let w = Gen.wave(&r)
        let fp = Gen.fingerprint(subject: w.subject, text: w.text, html: w.html)
        var controlStarted = false
        for i in 0..<300 {
            let ip: [UInt8] = [203, 0, UInt8(i % 250), 113]
            // Identical messages to many recipients, from many networks.
            XCTAssertNil(
                detector.observe(
                    fp, sender: "<News@Lists.Example.ORG>", clientIP: ip, clientAddress: "", now: Double(i)
                ).wave)
            // From the allow-listed network, any sender.
            XCTAssertNil(
                detector.observe(
                    fp, sender: "<x\(i)@spam.test>", clientIP: [192, 0, 2, UInt8(i % 250)], clientAddress: "",
                    now: Double(i)
                ).wave)
            // The same messages without the allow list do make a wave (the test can fail).
            if control.observe(fp, sender: "<x\(i)@spam.test>", clientIP: ip, clientAddress: "", now: Double(i)).started
                != nil
            {
                controlStarted = true
            }
        }
        XCTAssertTrue(controlStarted)
        XCTAssertEqual(detector.counted.load(ordering: .relaxed), 0)
        XCTAssertEqual(detector.allowListed.load(ordering: .relaxed), 600)
        XCTAssertTrue(detector.waves(now: 300).isEmpty)
    }

    func testConfigKeys() throws {
        var c = Config()
        try c.apply(
            fileText: """
                waves = no
                wave-threshold = 80
                wave-min-sources = 3
                wave-window = 5m
                wave-action = reject
                wave-store-size = 8M
                wave-allow-senders = news@lists.example.org, @partner.example
                wave-allow-networks = 192.0.2.0/24
                """, source: "t")
        XCTAssertFalse(c.wave.enabled)
        XCTAssertEqual(c.wave.threshold, 80)
        XCTAssertEqual(c.wave.minSources, 3)
        XCTAssertEqual(c.wave.window, 300)
        XCTAssertEqual(c.wave.action, .reject)
        XCTAssertEqual(c.wave.storeSize, 8 << 20)
        XCTAssertTrue(c.wave.allowsSender("<News@Lists.Example.org>"))
        XCTAssertTrue(c.wave.allowsSender("a@partner.example"))
        XCTAssertFalse(c.wave.allowsSender("a@example.org"))
        XCTAssertTrue(c.wave.allowsNetwork([192, 0, 2, 9]))
        XCTAssertThrowsError(try c.apply(fileText: "wave-action = drop", source: "t"))
        XCTAssertThrowsError(try c.apply(fileText: "wave-store-size = 100K", source: "t"))
    }
}

final class WaveSuggestionTests: XCTestCase {
    func testLongestSharedRunMatchesEveryCopy() throws {
        var r = Rand(21)
        var raws: [String] = []
        var samples: [String] = []
        for i in 0..<6 {
            let w = Gen.wave(&r)
            let raw = i % 2 == 0 ? w.text : w.html
            raws.append(raw)
            samples.append(
                Gen.fingerprint(subject: w.subject, text: i % 2 == 0 ? raw : nil, html: i % 2 == 0 ? nil : raw)!.sample)
        }
        let s = try XCTUnwrap(WaveSuggestion.make(waveID: "w12ab", samples: Array(samples.prefix(4))))
        XCTAssertEqual(s.name, "Breakwater.Local.Wave.12ab")
        XCTAssertGreaterThanOrEqual(s.words.count, WaveSuggestion.minWords)
        XCTAssertLessThanOrEqual(s.words.count, WaveSuggestion.maxWords)
        XCTAssertFalse(s.words.contains("anna"))
        let re = try NSRegularExpression(pattern: s.regex, options: [.caseInsensitive])
        for raw in raws {
            XCTAssertNotNil(
                re.firstMatch(in: raw, range: NSRange(raw.startIndex..., in: raw)), "\(s.regex) misses\n\(raw)")
        }
        // Ham does not match it.
        for _ in 0..<50 {
            let h = Gen.ham(&r).text
            XCTAssertNil(re.firstMatch(in: h, range: NSRange(h.startIndex..., in: h)))
        }
        XCTAssertTrue(s.command().hasPrefix("breakwater signatures add Breakwater.Local.Wave.12ab --regex '"))
    }

    func testNoSharedRun() {
        XCTAssertNil(WaveSuggestion.make(waveID: "w1", samples: ["alpha beta gamma delta", "epsilon zeta eta theta"]))
        XCTAssertNil(WaveSuggestion.make(waveID: "w1", samples: []))
        // One sample says nothing of what varies between messages.
        XCTAssertNil(WaveSuggestion.make(waveID: "w1", samples: ["alpha beta gamma delta epsilon zeta eta"]))
        XCTAssertNotNil(
            WaveSuggestion.make(
                waveID: "w1", samples: ["alpha beta gamma delta epsilon zeta eta", "x\nalpha beta gamma delta epsilon"])
        )
    }

    func testShellQuote() {
        XCTAssertEqual(WaveSuggestion.shellQuote("it's"), "'it'\\''s'")
    }
}

final class WaveSubjectTests: XCTestCase {
    func testDecode() {
        XCTAssertEqual(WaveSubject.decode(" Hello there"), " Hello there")
        XCTAssertEqual(
            WaveSubject.decode("=?utf-8?B?WsO2ZSwgeW91ciBwYXJjZWw=?= is =?UTF-8?Q?on_hold?="),
            "Zöe, your parcel is on hold")
        XCTAssertEqual(WaveSubject.decode("=?iso-8859-1?q?J=FCrgen?=\r\n =?iso-8859-1?q?_wins?="), "Jürgen wins")
        // Unknown charsets and malformed words are kept as they are.
        XCTAssertEqual(WaveSubject.decode("=?koi8-r?B?abc?= x"), "=?koi8-r?B?abc?= x")
        XCTAssertEqual(WaveSubject.decode("a =? b"), "a =? b")
    }
}

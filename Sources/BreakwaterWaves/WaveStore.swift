import BreakwaterCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One wave as `breakwater waves` shows it.
package struct WaveInfo: Sendable {
    package var id: String
    package var active: Bool
    /// When the wave passed the threshold, and when it ended (a whole window without a message).
    package var startedAt: Double
    package var endedAt: Double?
    /// First and last message of its fingerprint.
    package var firstSeen: Double
    package var lastSeen: Double
    /// Messages of the fingerprint in the sliding window (now, or when the wave ended).
    package var windowCount: Int
    /// Messages of the fingerprint since it was first seen.
    package var totalCount: Int
    /// Messages that arrived while it was a wave (those that got the wave action).
    package var waveMessages: Int
    /// Approximate distinct envelope senders and client networks in the window.
    package var senders: Int
    package var networks: Int
    package var subject: String
    package var excerpt: String
    /// Normalised texts of a few members (see `WaveFingerprint.sample`).
    package var samples: [String]
    /// The signature it was promoted to, if it was.
    package var promotedAs: String?
    /// Its fingerprint's template (the low 16 bits of each MinHash value, as the store keeps them),
    /// to tell its own messages from others (`RecentHam`). Empty when the store keeps none.
    package var signature: [UInt16]

    package init(
        id: String, active: Bool, startedAt: Double, endedAt: Double?, firstSeen: Double, lastSeen: Double,
        windowCount: Int, totalCount: Int, waveMessages: Int, senders: Int, networks: Int, subject: String,
        excerpt: String, samples: [String], promotedAs: String?, signature: [UInt16] = []
    ) {
        self.id = id
        self.active = active
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.windowCount = windowCount
        self.totalCount = totalCount
        self.waveMessages = waveMessages
        self.senders = senders
        self.networks = networks
        self.subject = subject
        self.excerpt = excerpt
        self.samples = samples
        self.promotedAs = promotedAs
        self.signature = signature
    }
}

/// What the store made of one message.
package struct WaveObservation: Sendable {
    /// The wave the message belongs to, when its fingerprint is an active wave.
    package var wave: String?
    /// This message made its fingerprint a wave.
    package var started: WaveInfo?
    /// This message completed the wave's samples (its suggested signature is now final).
    package var sampled: WaveInfo?
    package init(wave: String? = nil, started: WaveInfo? = nil, sampled: WaveInfo? = nil) {
        self.wave = wave
        self.started = started
        self.sampled = sampled
    }
}

package enum WaveEvent: Sendable {
    case started(WaveInfo)
    case ended(WaveInfo)
}

package struct WaveStoreUsage: Sendable {
    /// Fingerprints held and the most the store holds.
    package var entries: Int
    package var capacity: Int
    /// Bytes the store has allocated (entries, index, wave records with their samples) and its budget.
    package var bytes: Int
    package var budget: Int
    package var activeWaves: Int
    package var evictions: Int
    /// Fragments of one wave merged into one fingerprint.
    package var merges: Int
}

/// Counts recent fingerprints and tells which are waves. The daemon ships the in-process store; a
/// store shared by several MX hosts can implement the same protocol.
package protocol WaveStore: AnyObject, Sendable {
    /// Counts one message (never an allow-listed one); cost bounded whatever the store holds.
    func observe(_ fingerprint: WaveFingerprint, origin: WaveOrigin, now: Double) -> WaveObservation
    /// Ends waves that saw no message for a whole window.
    func sweep(now: Double) -> [WaveEvent]
    /// Active waves (most recent first), then ended ones.
    func waves(now: Double) -> [WaveInfo]
    /// Records that the wave got a signature; false for an unknown id.
    func markPromoted(id: String, as name: String) -> Bool
    func usage() -> WaveStoreUsage
}

/// The in-process store: a fixed number of entries (from `wave-store-size`) in flat arrays, an LSH
/// index over the MinHash bands, two-segment eviction, and a small table of wave records.
///
/// - Memory: every array is allocated at start at its final size (the per-entry tables as
///   `ZeroedArray`s, resident only as far as entries have been used); the only growth is in wave
///   records (at most `maxWaveRecords`, each with at most `samplesPerWave` samples of at most
///   `WaveFingerprintBuilder.sampleLimit` bytes), which are reserved from the budget up front.
/// - CPU per message: 32 band lookups in 4-slot buckets, at most 128 candidate comparisons of 64
///   values, O(1) list moves and eviction; no scan over the entries ever happens on the message path.
/// - Eviction: a new fingerprint enters the "probation" list; a second message moves it to the
///   "protected" list (capped at half the entries). The victim is the oldest probation entry, so a
///   flood of all-distinct messages churns probation and never pushes out a fingerprint that is
///   repeating.
/// - Locking: one mutex, held for the few microseconds of an `observe`; fingerprints are computed
///   before it is taken, never under it.
package final class InProcessWaveStore: WaveStore {
    package static let bands = waveSignatureSize / 2
    package static let slotsPerBucket = 4
    package static let ringBuckets = 10
    package static let maxWaveRecords = 32
    package static let samplesPerWave = 4
    /// Entries an index slot can name (24 bits, leaving 8 for the tag): more than the largest
    /// wave-store-size (4G) holds.
    package static let maxEntries = 1 << 24 - 1
    /// Distinct senders (and networks) per half window held exactly before the bitmap estimate takes over.
    package static let smallSet = 8

    /// Bytes one entry costs: its arrays plus its share of the index.
    package static let bytesPerEntry: Int =
        waveSignatureSize * 3  // signature (low 16 bits of each value) and its votes
        + ringBuckets * 4 + 8  // window ring and its epoch
        + 8 * 8 + 8  // sender and network bitmaps (current and previous half window), their epoch
        + 4 * smallSet * 2  // the first few distinct senders and networks of each half window, exactly
        + 8 + 8 + 4 + 4  // first/last seen, total, wave record
        + 4 + 4 + 1 + 4  // list links, segment, free list
        + bands * 4  // index slots (one per band)
    /// Bytes reserved for the wave records and their samples.
    package static let waveRecordBytes = samplesPerWave * WaveFingerprintBuilder.sampleLimit + 1024

    package let settings: WaveSettings
    package let capacity: Int
    private let state: Locked<State>

    package init(settings: WaveSettings) {
        self.settings = settings
        let budget = Int(max(settings.storeSize, WaveSettings.minimumStoreSize))
        let forEntries = budget - InProcessWaveStore.maxWaveRecords * InProcessWaveStore.waveRecordBytes
        capacity = max(64, forEntries / InProcessWaveStore.bytesPerEntry)
        state = Locked(State(capacity: capacity, settings: settings, budget: budget))
    }

    package func observe(_ fingerprint: WaveFingerprint, origin: WaveOrigin, now: Double) -> WaveObservation {
        state.withLock { $0.observe(fingerprint, origin: origin, now: now) }
    }

    package func sweep(now: Double) -> [WaveEvent] {
        state.withLock { $0.sweep(now: now) }
    }

    package func waves(now: Double) -> [WaveInfo] {
        state.withLock { s in
            var list = s.records.indices.map { s.info($0, now: now) }
            list.sort { a, b in
                if a.active != b.active { return a.active }
                return a.active ? a.lastSeen > b.lastSeen : (a.endedAt ?? 0) > (b.endedAt ?? 0)
            }
            return list
        }
    }

    package func markPromoted(id: String, as name: String) -> Bool {
        state.withLock { s in
            guard let i = s.records.firstIndex(where: { $0.id == id }) else { return false }
            s.records[i].promotedAs = name
            return true
        }
    }

    package func usage() -> WaveStoreUsage {
        state.withLock { s in
            WaveStoreUsage(
                entries: s.live, capacity: s.capacity, bytes: s.allocatedBytes, budget: s.budget,
                activeWaves: s.records.filter { $0.active }.count, evictions: s.evictions,
                merges: s.merges)
        }
    }

    // MARK: state

    struct Record {
        var id: String
        var entry: Int  // -1 once ended
        var active: Bool
        var startedAt: Double
        var endedAt: Double?
        var firstSeen: Double
        var lastSeen: Double
        var windowCount: Int
        var totalCount: Int
        var waveMessages: Int
        var senders: Int
        var networks: Int
        var subject: String
        var samples: [String]
        var promotedAs: String?
        var signature: [UInt16]
    }

    struct State {
        let capacity: Int
        let budget: Int
        let threshold: Int
        let minSources: Int
        let window: Double
        let minEqualBins: Int
        let bucketCount: Int

        // Entries, structure of arrays.
        let sig: ZeroedArray<UInt16>
        let votes: ZeroedArray<UInt8>  // per signature value: majority-vote counter (see `learn`)
        let ring: ZeroedArray<UInt32>
        let ringEpoch: ZeroedArray<Int>
        // Per entry: senders cur (2), senders prev (2), networks cur (2), networks prev (2).
        let bits: ZeroedArray<UInt64>
        // Per entry: senders cur, senders prev, networks cur, networks prev (smallSet each; 0 empty).
        let small: ZeroedArray<UInt16>
        let halfEpoch: ZeroedArray<Int>
        let firstSeen: ZeroedArray<Double>
        let lastSeen: ZeroedArray<Double>
        let total: ZeroedArray<UInt32>
        var record: [Int32]  // wave record index, -1 for none
        var prev: [Int32]
        var next: [Int32]
        let segment: ZeroedArray<UInt8>  // 0 free, 1 probation, 2 protected
        // Index: bucketCount * slotsPerBucket slots of (tag << entryBits | entry + 1); 0 is empty. The
        // tag is the top bits of the band key, as many as the entry number leaves free (at least 8): a
        // slot whose tag matches by chance only costs a comparison, as every candidate is compared.
        let index: ZeroedArray<UInt32>
        let entryBits: Int

        var heads: (Int32, Int32) = (-1, -1)  // probation, protected
        var tails: (Int32, Int32) = (-1, -1)
        var counts: (Int, Int) = (0, 0)
        var nextUnused = 0
        var live = 0
        var evictions = 0
        var merges = 0
        var free: [Int32] = []  // entries freed by a merge
        var records: [Record] = []
        var candidates: [Int32] = []

        init(capacity: Int, settings: WaveSettings, budget: Int) {
            self.capacity = capacity
            self.budget = budget
            threshold = max(1, settings.threshold)
            minSources = max(0, settings.minSources)
            window = max(1, settings.window)
            minEqualBins = max(1, Int((settings.similarity * Double(waveSignatureSize)).rounded(.up)))
            bucketCount = max(1, capacity * InProcessWaveStore.bands / InProcessWaveStore.slotsPerBucket)
            sig = ZeroedArray<UInt16>(zeros: capacity * waveSignatureSize)
            votes = ZeroedArray<UInt8>(zeros: capacity * waveSignatureSize)
            ring = ZeroedArray<UInt32>(zeros: capacity * InProcessWaveStore.ringBuckets)
            ringEpoch = ZeroedArray<Int>(zeros: capacity)
            bits = ZeroedArray<UInt64>(zeros: capacity * 8)
            small = ZeroedArray<UInt16>(zeros: capacity * 4 * InProcessWaveStore.smallSet)
            halfEpoch = ZeroedArray<Int>(zeros: capacity)
            firstSeen = ZeroedArray<Double>(zeros: capacity)
            lastSeen = ZeroedArray<Double>(zeros: capacity)
            total = ZeroedArray<UInt32>(zeros: capacity)
            record = [Int32](repeating: -1, count: capacity)
            prev = [Int32](repeating: -1, count: capacity)
            next = [Int32](repeating: -1, count: capacity)
            segment = ZeroedArray<UInt8>(zeros: capacity)
            index = ZeroedArray<UInt32>(zeros: bucketCount * InProcessWaveStore.slotsPerBucket)
            entryBits = UInt64.bitWidth - UInt64(capacity).leadingZeroBitCount
            precondition(
                entryBits <= 32 - 8, "wave store of \(capacity) entries: at most \(InProcessWaveStore.maxEntries)")
            records.reserveCapacity(InProcessWaveStore.maxWaveRecords)
            candidates.reserveCapacity(InProcessWaveStore.bands * InProcessWaveStore.slotsPerBucket)
            free.reserveCapacity(capacity)
        }

        var allocatedBytes: Int {
            let tables = [
                sig.bytes, votes.bytes, ring.bytes, ringEpoch.bytes, bits.bytes, small.bytes, halfEpoch.bytes,
                firstSeen.bytes, lastSeen.bytes, total.bytes, segment.bytes, index.bytes,
            ]
            var n = tables.reduce(0, +)
            n += (record.capacity + prev.capacity + next.capacity) * MemoryLayout<Int32>.stride
            n += candidates.capacity * 4 + free.capacity * 4
            n += records.capacity * MemoryLayout<Record>.stride
            for r in records {
                n += r.id.utf8.count + r.subject.utf8.count + (r.promotedAs?.utf8.count ?? 0)
                n += r.signature.capacity * MemoryLayout<UInt16>.stride
                n += r.samples.capacity * MemoryLayout<String>.stride + r.samples.reduce(0) { $0 + $1.utf8.count }
            }
            return n
        }

        // MARK: time

        var bucketSeconds: Double { window / Double(InProcessWaveStore.ringBuckets) }

        mutating func advance(_ e: Int, now: Double) {
            let epoch = Int(now / bucketSeconds)
            let b = InProcessWaveStore.ringBuckets
            let gap = epoch - ringEpoch[e]
            if gap > 0 {
                for k in 1...min(gap, b) { ring[e * b + (ringEpoch[e] + k) % b] = 0 }
                ringEpoch[e] = epoch
            }
            let half = Int(now / (window / 2))
            let hg = half - halfEpoch[e]
            if hg > 0 {
                let o = e * 8
                if hg == 1 {
                    bits[o + 2] = bits[o]
                    bits[o + 3] = bits[o + 1]
                    bits[o + 6] = bits[o + 4]
                    bits[o + 7] = bits[o + 5]
                } else {
                    bits[o + 2] = 0
                    bits[o + 3] = 0
                    bits[o + 6] = 0
                    bits[o + 7] = 0
                }
                bits[o] = 0
                bits[o + 1] = 0
                bits[o + 4] = 0
                bits[o + 5] = 0
                let k = InProcessWaveStore.smallSet
                let so = e * 4 * k
                for i in 0..<k {
                    small[so + k + i] = hg == 1 ? small[so + i] : 0
                    small[so + 3 * k + i] = hg == 1 ? small[so + 2 * k + i] : 0
                    small[so + i] = 0
                    small[so + 2 * k + i] = 0
                }
                halfEpoch[e] = half
            }
        }

        func windowCount(_ e: Int, now: Double) -> Int {
            let b = InProcessWaveStore.ringBuckets
            let epoch = Int(now / bucketSeconds)
            let gap = epoch - ringEpoch[e]
            if gap >= b { return 0 }
            var n = 0
            // Buckets epoch-(b-1) ... epoch; those after ringEpoch are empty.
            for k in 0..<(b - max(0, gap)) { n += Int(ring[e * b + (ringEpoch[e] - k + b * 4) % b]) }
            return n
        }

        /// Distinct senders (or networks) in the current and previous half window: exact while
        /// both halves hold fewer than `smallSet`, else linear counting over 128 bits.
        func distinct(_ e: Int, networks: Bool, now: Double) -> Int {
            let half = Int(now / (window / 2))
            let hg = half - halfEpoch[e]
            if hg > 1 { return 0 }
            let k = InProcessWaveStore.smallSet
            let so = e * 4 * k + (networks ? 2 * k : 0)
            // Exact: the union of the two small sets (the previous one only when still in the window).
            var count = 0
            var saturated = false
            var filledCur = 0
            for i in 0..<k where small[so + i] != 0 { filledCur += 1 }
            count = filledCur
            if filledCur == k { saturated = true }
            if hg == 0 {
                var filledPrev = 0
                for i in 0..<k where small[so + k + i] != 0 {
                    filledPrev += 1
                    let v = small[so + k + i]
                    var inCur = false
                    for j in 0..<filledCur where small[so + j] == v { inCur = true }
                    if !inCur { count += 1 }
                }
                if filledPrev == k { saturated = true }
            }
            if !saturated { return count }
            let o = e * 8 + (networks ? 4 : 0)
            var a: UInt64 = 0
            var b: UInt64 = 0
            if hg == 0 {
                a = bits[o] | bits[o + 2]
                b = bits[o + 1] | bits[o + 3]
            } else {
                a = bits[o]
                b = bits[o + 1]
            }
            let ones = a.nonzeroBitCount + b.nonzeroBitCount
            let zeros = 128 - ones
            let estimate = zeros == 0 ? 128 * 5 : Int((-128.0 * log(Double(zeros) / 128.0)).rounded())
            return max(count, estimate)
        }

        mutating func remember(_ e: Int, _ h: UInt64, networks: Bool) {
            let bit = Int(h & 127)
            bits[e * 8 + (networks ? 4 : 0) + bit / 64] |= 1 << UInt64(bit % 64)
            let k = InProcessWaveStore.smallSet
            let so = e * 4 * k + (networks ? 2 * k : 0)
            let v = UInt16(truncatingIfNeeded: h >> 48) | 1
            for i in 0..<k {
                if small[so + i] == v { return }
                if small[so + i] == 0 {
                    small[so + i] = v
                    return
                }
            }
        }

        // MARK: lists

        mutating func unlink(_ e: Int) {
            let seg = Int(segment[e])
            guard seg != 0 else { return }
            let p = prev[e]
            let n = next[e]
            if p >= 0 { next[Int(p)] = n } else { setHead(seg, n) }
            if n >= 0 { prev[Int(n)] = p } else { setTail(seg, p) }
            prev[e] = -1
            next[e] = -1
            if seg == 1 { counts.0 -= 1 } else { counts.1 -= 1 }
            segment[e] = 0
        }

        mutating func pushFront(_ e: Int, _ seg: Int) {
            let h = head(seg)
            prev[e] = -1
            next[e] = h
            if h >= 0 { prev[Int(h)] = Int32(e) } else { setTail(seg, Int32(e)) }
            setHead(seg, Int32(e))
            segment[e] = UInt8(seg)
            if seg == 1 { counts.0 += 1 } else { counts.1 += 1 }
        }

        func head(_ seg: Int) -> Int32 { seg == 1 ? heads.0 : heads.1 }
        func tail(_ seg: Int) -> Int32 { seg == 1 ? tails.0 : tails.1 }
        mutating func setHead(_ seg: Int, _ v: Int32) { if seg == 1 { heads.0 = v } else { heads.1 = v } }
        mutating func setTail(_ seg: Int, _ v: Int32) { if seg == 1 { tails.0 = v } else { tails.1 = v } }

        // MARK: index

        /// The index key of a band: its two values (low 16 bits, as the entries keep them).
        static func bandKey(_ a: UInt16, _ b: UInt16, _ band: Int) -> UInt64 {
            waveMix(UInt64(a) << 16 | UInt64(b) | UInt64(band) << 40)
        }

        static func bandKey(_ s: [UInt32], _ band: Int) -> UInt64 {
            bandKey(UInt16(truncatingIfNeeded: s[2 * band]), UInt16(truncatingIfNeeded: s[2 * band + 1]), band)
        }

        /// The index slot for entry `e` under a band key, its tag, and the entry a slot holds.
        func slotValue(_ key: UInt64, _ e: Int) -> UInt32 { slotTag(key) << UInt32(entryBits) | UInt32(e + 1) }
        func slotTag(_ key: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: key >> UInt64(32 + entryBits)) }
        func slotEntry(_ slot: UInt32) -> Int { Int(slot & (UInt32.max >> UInt32(32 - entryBits))) - 1 }

        /// Entry `e`'s signature (its wave's template once it learned one).
        func template(_ e: Int) -> [UInt16] {
            (0..<waveSignatureSize).map { sig[e * waveSignatureSize + $0] }
        }

        func equalBins(_ e: Int, _ s: [UInt32]) -> Int {
            var n = 0
            let o = e * waveSignatureSize
            for i in 0..<waveSignatureSize where sig[o + i] == UInt16(truncatingIfNeeded: s[i]) { n += 1 }
            return n
        }

        mutating func bestMatch(_ s: [UInt32]) -> Int? {
            candidates.removeAll(keepingCapacity: true)
            let spb = InProcessWaveStore.slotsPerBucket
            for band in 0..<InProcessWaveStore.bands {
                let key = State.bandKey(s, band)
                let tag = slotTag(key)
                let base = Int(truncatingIfNeeded: (key & 0xFFFF_FFFF) % UInt64(bucketCount)) * spb
                for k in 0..<spb {
                    let slot = index[base + k]
                    if slot != 0 && slot >> UInt32(entryBits) == tag {
                        let e = slotEntry(slot)
                        if segment[e] != 0 && !candidates.contains(Int32(e)) { candidates.append(Int32(e)) }
                    }
                }
            }
            // Every entry the message is similar to: the best one, and others that are fragments of
            // the same wave (they started before their template was learned) to merge into it.
            var best = -1
            var bestBins = minEqualBins - 1
            var similar = 0
            for i in candidates.indices {
                let e = candidates[i]
                let n = equalBins(Int(e), s)
                if n >= minEqualBins {
                    candidates[similar] = e
                    similar += 1
                    // A wave's entry is preferred, then the one with more messages, then similarity.
                    if best < 0 || rank(Int(e), n) > rank(best, bestBins) {
                        bestBins = n
                        best = Int(e)
                    }
                }
            }
            candidates.removeSubrange(similar...)
            return best >= 0 ? best : nil
        }

        func rank(_ e: Int, _ bins: Int) -> (Int, UInt32, Int) {
            (record[e] >= 0 ? 1 : 0, total[e], bins)
        }

        /// Merges fragment `f` into entry `e` (both advanced to now): counts, sources, first seen; a
        /// wave record moves along. `f` is freed. Two active waves are not merged.
        mutating func merge(_ f: Int, into e: Int, now: Double) {
            guard f != e, segment[f] != 0, !(record[e] >= 0 && record[f] >= 0) else { return }
            advance(f, now: now)
            let b = InProcessWaveStore.ringBuckets
            for k in 0..<b { ring[e * b + k] = ring[e * b + k] &+ ring[f * b + k] }
            total[e] = total[e] &+ total[f]
            firstSeen[e] = min(firstSeen[e], firstSeen[f])
            for k in 0..<8 { bits[e * 8 + k] |= bits[f * 8 + k] }
            let k = InProcessWaveStore.smallSet
            for set in 0..<4 {
                for i in 0..<k {
                    let v = small[f * 4 * k + set * k + i]
                    if v == 0 { break }
                    let so = e * 4 * k + set * k
                    for j in 0..<k {
                        if small[so + j] == v { break }
                        if small[so + j] == 0 {
                            small[so + j] = v
                            break
                        }
                    }
                }
            }
            if record[f] >= 0 {
                record[e] = record[f]
                records[Int(record[f])].entry = e
                record[f] = -1
            }
            unlink(f)
            live -= 1
            free.append(Int32(f))
            merges += 1
        }

        /// Indexes the entry's bands (`bands`: a bit per band; all by default).
        mutating func addToIndex(_ e: Int, bands: UInt64 = .max) {
            let spb = InProcessWaveStore.slotsPerBucket
            let o = e * waveSignatureSize
            for band in 0..<InProcessWaveStore.bands where bands & (1 << UInt64(band)) != 0 {
                let key = State.bandKey(sig[o + 2 * band], sig[o + 2 * band + 1], band)
                let base = Int(truncatingIfNeeded: (key & 0xFFFF_FFFF) % UInt64(bucketCount)) * spb
                let value = slotValue(key, e)
                // An empty slot, a slot of a dead entry, or the slot of the entry with the fewest messages.
                var victim = base
                var victimTotal = UInt32.max
                for k in 0..<spb {
                    let slot = index[base + k]
                    if slot == 0 || slot == value {
                        victim = base + k
                        break
                    }
                    let other = slotEntry(slot)
                    let t = segment[other] == 0 ? 0 : total[other]
                    if t < victimTotal {
                        victimTotal = t
                        victim = base + k
                    }
                }
                index[victim] = value
            }
        }

        /// The entry's signature learns its wave's template: each value is a majority vote
        /// (Boyer-Moore) over the members. Values that come from the wave's fixed text recur in most
        /// members and stay; values that come from one member's own variation (a name, a hash
        /// buster paragraph) lose the vote and are replaced. A member is therefore compared with the
        /// template's MinHash rather than with the first member's, which holds up against copies that
        /// share only part of their text. Changed bands are indexed again.
        mutating func learn(_ e: Int, _ s: [UInt32]) {
            let o = e * waveSignatureSize
            var changed: UInt64 = 0
            for i in 0..<waveSignatureSize {
                let v = UInt16(truncatingIfNeeded: s[i])
                if sig[o + i] == v {
                    if votes[o + i] < 255 { votes[o + i] += 1 }
                } else if votes[o + i] == 0 {
                    sig[o + i] = v
                    votes[o + i] = 1
                    changed |= 1 << UInt64(i / 2)
                } else {
                    votes[o + i] -= 1
                }
            }
            if changed != 0 { addToIndex(e, bands: changed) }
        }

        // MARK: entries

        mutating func allocate(now: Double) -> Int {
            if let f = free.popLast() { return Int(f) }
            if nextUnused < capacity {
                nextUnused += 1
                return nextUnused - 1
            }
            // Victim: the oldest probation entry; the least recently seen protected one only when
            // probation is empty.
            var v = Int(tails.0)
            if v < 0 { v = Int(tails.1) }
            evict(v, now: now)
            return v
        }

        mutating func evict(_ e: Int, now: Double) {
            if record[e] >= 0 { end(Int(record[e]), now: now) }
            unlink(e)
            live -= 1
            evictions += 1
        }

        mutating func observe(_ fp: WaveFingerprint, origin: WaveOrigin, now: Double) -> WaveObservation {
            let s = fp.signature
            guard s.count == waveSignatureSize else { return WaveObservation() }
            var e: Int
            if let m = bestMatch(s) {
                e = m
                advance(e, now: now)
                for f in candidates where Int(f) != e { merge(Int(f), into: e, now: now) }
                learn(e, s)
                unlink(e)
                pushFront(e, 2)
                if counts.1 > capacity / 2, tails.1 >= 0 {
                    // Protected is full: its least recent entry goes back to probation.
                    let t = Int(tails.1)
                    unlink(t)
                    pushFront(t, 1)
                }
            } else {
                e = allocate(now: now)
                let o = e * waveSignatureSize
                for i in 0..<waveSignatureSize {
                    sig[o + i] = UInt16(truncatingIfNeeded: s[i])
                    votes[o + i] = 1
                }
                for k in 0..<InProcessWaveStore.ringBuckets { ring[e * InProcessWaveStore.ringBuckets + k] = 0 }
                for k in 0..<8 { bits[e * 8 + k] = 0 }
                for k in 0..<(4 * InProcessWaveStore.smallSet) { small[e * 4 * InProcessWaveStore.smallSet + k] = 0 }
                ringEpoch[e] = Int(now / bucketSeconds)
                halfEpoch[e] = Int(now / (window / 2))
                firstSeen[e] = now
                total[e] = 0
                record[e] = -1
                pushFront(e, 1)
                live += 1
                addToIndex(e)
            }
            let b = InProcessWaveStore.ringBuckets
            let slot = e * b + ringEpoch[e] % b
            ring[slot] = ring[slot] &+ (ring[slot] == .max ? 0 : 1)
            total[e] = total[e] == .max ? .max : total[e] + 1
            lastSeen[e] = now
            remember(e, origin.sender, networks: false)
            remember(e, origin.network, networks: true)

            if record[e] >= 0 {
                let r = Int(record[e])
                records[r].waveMessages += 1
                records[r].lastSeen = now
                if records[r].samples.count < InProcessWaveStore.samplesPerWave, !fp.sample.isEmpty {
                    records[r].samples.append(fp.sample)
                    if records[r].samples.count == InProcessWaveStore.samplesPerWave {
                        return WaveObservation(wave: records[r].id, sampled: info(r, now: now))
                    }
                }
                return WaveObservation(wave: records[r].id)
            }
            let count = windowCount(e, now: now)
            guard count >= threshold else { return WaveObservation() }
            // Sources are client networks only: a single host forges any number of envelope senders,
            // while a new /24 (or /48) costs an attacker a real address elsewhere.
            let sources = distinct(e, networks: true, now: now)
            guard sources > minSources else { return WaveObservation() }
            let r = startWave(e, fp: fp, now: now)
            return WaveObservation(wave: records[r].id, started: info(r, now: now))
        }

        mutating func startWave(_ e: Int, fp: WaveFingerprint, now: Double) -> Int {
            var h: UInt64 = 0
            let o = e * waveSignatureSize
            for i in 0..<8 { h = waveMix(h ^ UInt64(sig[o + i])) }
            let id = "w" + String(String(h, radix: 16).suffix(8))
            let rec = Record(
                id: id, entry: e, active: true, startedAt: now, endedAt: nil, firstSeen: firstSeen[e],
                lastSeen: now, windowCount: 0, totalCount: 0, waveMessages: 1, senders: 0, networks: 0,
                subject: truncatedUTF8(fp.subject, max: 200), samples: [fp.sample], promotedAs: nil,
                signature: template(e))
            var r: Int
            if let same = records.firstIndex(where: { $0.id == id && !$0.active }) {
                // The same campaign again: its record (and a promotion) carries over.
                r = same
                let promoted = records[r].promotedAs
                records[r] = rec
                records[r].promotedAs = promoted
            } else if records.count < InProcessWaveStore.maxWaveRecords {
                records.append(rec)
                r = records.count - 1
            } else {
                // Replace the oldest ended record; with none ended, end the least recently seen wave.
                if let old = records.indices.filter({ !records[$0].active }).min(by: {
                    (records[$0].endedAt ?? 0) < (records[$1].endedAt ?? 0)
                }) {
                    r = old
                } else {
                    r = records.indices.min(by: { records[$0].lastSeen < records[$1].lastSeen })!
                    end(r, now: now)
                }
                records[r] = rec
            }
            records[r].samples.reserveCapacity(InProcessWaveStore.samplesPerWave)
            record[e] = Int32(r)
            return r
        }

        /// Ends wave record `r`, keeping the final figures.
        mutating func end(_ r: Int, now: Double) {
            guard records[r].active else { return }
            let e = records[r].entry
            if e >= 0 {
                records[r].windowCount = windowCount(e, now: records[r].lastSeen)
                records[r].totalCount = Int(total[e])
                records[r].senders = distinct(e, networks: false, now: records[r].lastSeen)
                records[r].networks = distinct(e, networks: true, now: records[r].lastSeen)
                records[r].signature = template(e)
                record[e] = -1
            }
            records[r].entry = -1
            records[r].active = false
            records[r].endedAt = now
        }

        mutating func sweep(now: Double) -> [WaveEvent] {
            var events: [WaveEvent] = []
            for r in records.indices where records[r].active && now - records[r].lastSeen >= window {
                end(r, now: now)
                events.append(.ended(info(r, now: now)))
            }
            return events
        }

        func info(_ r: Int, now: Double) -> WaveInfo {
            let rec = records[r]
            var i = WaveInfo(
                id: rec.id, active: rec.active, startedAt: rec.startedAt, endedAt: rec.endedAt,
                firstSeen: rec.firstSeen, lastSeen: rec.lastSeen, windowCount: rec.windowCount,
                totalCount: rec.totalCount, waveMessages: rec.waveMessages, senders: rec.senders,
                networks: rec.networks, subject: rec.subject,
                excerpt: rec.samples.first.map(WaveFingerprint.excerpt) ?? "",
                samples: rec.samples, promotedAs: rec.promotedAs, signature: rec.signature)
            if rec.active && rec.entry >= 0 {
                let e = rec.entry
                i.windowCount = windowCount(e, now: now)
                i.totalCount = Int(total[e])
                i.senders = distinct(e, networks: false, now: now)
                i.networks = distinct(e, networks: true, now: now)
                i.lastSeen = lastSeen[e]
                i.signature = template(e)
            }
            return i
        }
    }
}

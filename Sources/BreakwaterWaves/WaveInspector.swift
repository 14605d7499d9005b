import BreakwaterCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Feeds the text and HTML layers libclamav decodes during the scan into a wave fingerprint, so wave
/// detection needs no MIME parser of its own. One inspector per message (not thread-safe; a scan
/// calls it from its own thread only).
///
/// What libclamav 1.4 hands over (checked with a probe of the file-inspection callback): the message
/// itself as `CL_TYPE_MAIL` at depth 0, then each decoded part at depth 1: a text/plain part as
/// `CL_TYPE_TEXT_ASCII` whatever its charset (UTF-8 included), whether it was 7bit, quoted-printable
/// or base64; a text/html part as `CL_TYPE_HTML`, raw (tags and entities still there, transfer
/// encoding removed); multipart/alternative gives both. UTF-16 text is `CL_TYPE_TEXT_UTF16LE/BE`.
/// The layer comes with libclamav's mapped view of it, read in place; without one, it is pread.
///
/// libclamav's clean-file cache: a message byte-identical to one already scanned clean is not
/// parsed again, so its parts never reach the callback (only depth 0 does). Such a repeat gets the
/// fingerprint of the original from `WaveMemo`, keyed by the message's size, head and tail. The
/// commonest repeat is a sending MTA's retry of a wave message that got 4xx: `rememberAsWaveMember`
/// keeps those longer than the last 128 messages.
package final class WaveLayerInspector: LayerInspector {
    package private(set) var builder: WaveFingerprintBuilder
    private let memo: WaveMemo?
    private var memoKey: UInt64?
    private var textLayers = 0
    /// Every layer seen (type, depth, size), when `recordLayers` is set (for `breakwater waves
    /// fingerprint`).
    package private(set) var layers: [(type: String, depth: Int, size: Int)] = []
    private let recordLayers: Bool
    /// What a scan worker collected (`collected` there), when this inspector stands for it.
    private var fromWorker: WaveBody?

    package init(memo: WaveMemo?, byteLimit: Int = WaveFingerprintBuilder.defaultByteLimit, recordLayers: Bool = false)
    {
        self.memo = memo
        self.builder = WaveFingerprintBuilder(byteLimit: byteLimit)
        self.recordLayers = recordLayers
    }

    /// What this inspector collected during the scan, to be sent from a scan worker to the daemon.
    package var collected: WaveCollected {
        WaveCollected(memoKey: memoKey, textLayers: textLayers, body: fromWorker ?? builder.body)
    }

    /// An inspector standing for the one a scan worker ran (`collected` there), for `finish` and
    /// `rememberAsWaveMember` in the daemon with its memo.
    package init(memo: WaveMemo?, collected c: WaveCollected) {
        self.memo = memo
        self.builder = WaveFingerprintBuilder(byteLimit: 0)
        self.recordLayers = false
        memoKey = c.memoKey
        textLayers = c.textLayers
        fromWorker = c.body
    }

    package func inspect(fd: Int32, type: String, depth: Int, size: Int) {
        inspect(fd: fd, type: type, depth: depth, size: size, buffer: nil)
    }

    package func inspect(fd: Int32, type: String, depth: Int, size: Int, buffer: UnsafeRawBufferPointer?) {
        if recordLayers { layers.append((type, depth, size)) }
        if depth == 0 {
            if memo != nil, memoKey == nil { memoKey = WaveMemo.key(fd: fd, size: size, buffer: buffer) }
            return
        }
        guard let kind = WaveLayerKind.forClamType(type), builder.remaining > 0, size > 0 else { return }
        textLayers += 1
        let want = min(size, builder.remaining)
        if let buffer, buffer.baseAddress != nil {
            builder.add(UnsafeRawBufferPointer(rebasing: buffer[0..<min(want, buffer.count)]), kind: kind)
            return
        }
        guard fd >= 0 else { return }
        let bytes = [UInt8](unsafeUninitializedCapacity: want) { buf, count in
            var off = 0
            while off < want {
                let n = pread(fd, buf.baseAddress! + off, want - off, off_t(off))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                off += n
            }
            count = off
        }
        bytes.withUnsafeBytes { builder.add($0, kind: kind) }
    }

    /// The message turned out to be in a wave: its body goes to the memo's list of wave members, so
    /// that the sending MTA's retry (byte-identical, not parsed again by libclamav) is one too, however
    /// many messages came in between. Without it, a wave answered 4xx (wave-action tempfail) came
    /// through on the retry once 128 other messages had passed (the outage replay, docs/incident.md).
    package func rememberAsWaveMember() {
        guard let memo, let key = memoKey else { return }
        if textLayers > 0 {
            memo.keepMember(key, fromWorker ?? builder.body)
        } else if let earlier = memo.lookup(key) {
            memo.keepMember(key, earlier)
        }
    }

    /// The message's fingerprint (nil when it has too little text), once the scan is over.
    package func finish(subject: String?) -> WaveFingerprint? {
        if let memo, let key = memoKey {
            if textLayers > 0 {
                memo.store(key, fromWorker ?? builder.body)
            } else if let earlier = memo.lookup(key) {
                return earlier.finish(subject: subject)
            }
        }
        return (fromWorker ?? builder.body).finish(subject: subject)
    }
}

/// The body fingerprints of the last `entries` messages, by a key of their size, first and last
/// 4 KB: lets a byte-identical repeat (which libclamav's cache does not parse again) count as what it
/// is. At most `entries` x (256 bytes + the sample, at most 2 KB). Besides, the last `memberEntries`
/// wave members (`keepMember`), without their sample: at most about 3 MB.
package final class WaveMemo: Sendable {
    package static let entries = 128
    /// Wave members kept for their retries: a sending MTA retries after minutes, and a wave of 20
    /// messages a second brings thousands in between.
    package static let memberEntries = 8192
    private let state = Locked<(keys: [UInt64], bodies: [UInt64: WaveBody], next: Int)>(([], [:], 0))
    private let members = Locked<(keys: [UInt64], bodies: [UInt64: WaveBody], next: Int)>(([], [:], 0))

    package init() {}

    /// Keeps a wave member's body (its sample dropped: a retry adds no sample to the wave).
    func keepMember(_ key: UInt64, _ body: WaveBody) {
        var b = body
        b.sample = []
        members.withLock { s in
            if s.bodies[key] == nil {
                if s.keys.count < WaveMemo.memberEntries {
                    s.keys.append(key)
                } else {
                    s.bodies[s.keys[s.next]] = nil
                    s.keys[s.next] = key
                    s.next = (s.next + 1) % WaveMemo.memberEntries
                }
            }
            s.bodies[key] = b
        }
    }

    static func key(fd: Int32, size: Int, buffer: UnsafeRawBufferPointer?) -> UInt64? {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(size)
        func mix(_ b: UnsafeRawBufferPointer) {
            var i = 0
            // 8 bytes at a time; the tail byte by byte.
            while i + 8 <= b.count {
                h = (h ^ b.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x0000_0100_0000_01b3
                h ^= h >> 29
                i += 8
            }
            while i < b.count {
                h = (h ^ UInt64(b[i])) &* 0x0000_0100_0000_01b3
                i += 1
            }
        }
        let part = 4096
        if let buffer, buffer.baseAddress != nil, buffer.count == size {
            mix(UnsafeRawBufferPointer(rebasing: buffer[0..<min(part, size)]))
            if size > part { mix(UnsafeRawBufferPointer(rebasing: buffer[max(part, size - part)..<size])) }
            return h
        }
        guard fd >= 0 else { return nil }
        var head = [UInt8](repeating: 0, count: min(part, size))
        guard pread(fd, &head, head.count, 0) == head.count else { return nil }
        head.withUnsafeBytes { mix($0) }
        if size > part {
            let start = max(part, size - part)
            var tail = [UInt8](repeating: 0, count: size - start)
            guard pread(fd, &tail, tail.count, off_t(start)) == tail.count else { return nil }
            tail.withUnsafeBytes { mix($0) }
        }
        return h
    }

    func store(_ key: UInt64, _ body: WaveBody) {
        state.withLock { s in
            if s.bodies[key] == nil {
                if s.keys.count < WaveMemo.entries {
                    s.keys.append(key)
                } else {
                    s.bodies[s.keys[s.next]] = nil
                    s.keys[s.next] = key
                    s.next = (s.next + 1) % WaveMemo.entries
                }
            }
            s.bodies[key] = body
        }
    }

    func lookup(_ key: UInt64) -> WaveBody? {
        state.withLock { $0.bodies[key] } ?? members.withLock { $0.bodies[key] }
    }
}

/// What a wave inspector collected in a scan worker, sent to the daemon with the scan's result: the
/// repeat key, the number of text layers and the body's fingerprint (at most about 2.6 KB).
package struct WaveCollected: Sendable {
    package var memoKey: UInt64?
    package var textLayers: Int
    package var body: WaveBody

    /// Appends the encoding to `out` (little-endian integers, counted byte strings).
    package func encode(into out: inout [UInt8]) {
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(memoKey == nil ? 0 : 1)
        u64(memoKey ?? 0)
        u64(UInt64(textLayers))
        u64(UInt64(body.words))
        u64(UInt64(body.mins.count))
        for m in body.mins { withUnsafeBytes(of: m.littleEndian) { out.append(contentsOf: $0) } }
        u64(UInt64(body.sample.count))
        out.append(contentsOf: body.sample)
    }

    /// Decodes what `encode` wrote at `at` (moved past it); nil when it is malformed.
    package static func decode(_ b: [UInt8], at: inout Int) -> WaveCollected? {
        func u64() -> UInt64? {
            guard at + 8 <= b.count else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
            at += 8
            return v
        }
        guard at < b.count else { return nil }
        let hasKey = b[at] == 1
        at += 1
        guard let key = u64(), let layers = u64(), let words = u64(), let n = u64(), n == UInt64(waveSignatureSize),
            at + Int(n) * 4 <= b.count
        else { return nil }
        var mins: [UInt32] = []
        mins.reserveCapacity(Int(n))
        for i in 0..<Int(n) {
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(b[at + i * 4 + k]) << (8 * UInt32(k)) }
            mins.append(v)
        }
        at += Int(n) * 4
        guard let sn = u64(), sn <= UInt64(WaveFingerprintBuilder.sampleLimit) * 4, at + Int(sn) <= b.count,
            layers < 1 << 30, words < 1 << 40
        else { return nil }
        let sample = Array(b[at..<(at + Int(sn))])
        at += Int(sn)
        return WaveCollected(
            memoKey: hasKey ? key : nil, textLayers: Int(layers),
            body: WaveBody(mins: mins, words: Int(words), sample: sample))
    }
}

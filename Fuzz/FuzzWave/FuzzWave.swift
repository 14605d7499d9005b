// libFuzzer target: the wave tokenizer and fingerprint (WaveFingerprintBuilder over decoded
// layers of every kind) and the Subject decoder (WaveSubject.decode of RFC 2047 encoded words).
// Input: a first line that is the raw Subject, then layers separated by the byte 0xFF, each
// starting with one byte that chooses its kind. Invariants: the fingerprint is 64 bins, identical
// when built twice from the same layers (no hidden state), similar to itself at 1.0; its sample is
// at most sampleLimit bytes and its subject at most 200; the decoded Subject holds no CR, LF or tab
// and stays bounded (at most 3 bytes out per byte of the 1,000 it reads).
import BreakwaterCore
import BreakwaterWaves

let kinds: [WaveLayerKind] = [.text, .html, .utf16LE, .utf16BE, .html16LE, .html16BE]

func build(_ layers: [UnsafeRawBufferPointer], kindBytes: [UInt8], byteLimit: Int) -> WaveFingerprintBuilder {
    var b = WaveFingerprintBuilder(byteLimit: byteLimit)
    for (i, layer) in layers.enumerated() {
        b.add(layer, kind: kinds[Int(kindBytes[i]) % kinds.count])
    }
    return b
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWave(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let all = UnsafeRawBufferPointer(start: data, count: size)
    let nl = all.firstIndex(of: 10) ?? size
    let rawSubject = String(decoding: all[0..<nl], as: UTF8.self)
    let subject = WaveSubject.decode(rawSubject)
    if subject.utf8.contains(where: { $0 == 10 || $0 == 13 || $0 == 9 }) {
        fatalError("decoded subject holds a line break or tab: \(subject.debugDescription)")
    }
    if subject.utf8.count > 3 * 1000 + 3 {
        fatalError("decoded subject of \(subject.utf8.count) bytes from \(rawSubject.utf8.count)")
    }
    var layers: [UnsafeRawBufferPointer] = []
    var kindBytes: [UInt8] = []
    if nl < size {
        for part in all[(nl + 1)...].split(separator: 0xFF, omittingEmptySubsequences: false) {
            guard let k = part.first else { continue }
            kindBytes.append(k)
            layers.append(UnsafeRawBufferPointer(rebasing: part.dropFirst()))
        }
    }
    // A small byte limit now and then, so that cutting a layer short is covered too.
    let byteLimit = size % 7 == 0 ? 1 + size % 301 : WaveFingerprintBuilder.defaultByteLimit
    let b1 = build(layers, kindBytes: kindBytes, byteLimit: byteLimit)
    let b2 = build(layers, kindBytes: kindBytes, byteLimit: byteLimit)
    if b1.words != b2.words { fatalError("word counts differ between two builds: \(b1.words) vs \(b2.words)") }
    let f1 = b1.finish(subject: subject)
    let f2 = b2.body.finish(subject: subject)
    switch (f1, f2) {
    case (nil, nil):
        if b1.words >= WaveFingerprintBuilder.minimumWords { fatalError("no fingerprint from \(b1.words) words") }
    case (let a?, let b?):
        guard a.signature.count == waveSignatureSize else { fatalError("signature of \(a.signature.count) bins") }
        guard a.signature == b.signature, a.sample == b.sample, a.words == b.words, a.subject == b.subject else {
            fatalError("two builds of the same layers differ")
        }
        guard a.similarity(b.signature) == 1.0 else { fatalError("not similar to itself") }
        guard a.sample.utf8.count <= WaveFingerprintBuilder.sampleLimit else { fatalError("sample of \(a.sample.utf8.count) bytes") }
        guard a.subject.utf8.count <= 200 else { fatalError("subject of \(a.subject.utf8.count) bytes") }
        guard a.words >= WaveFingerprintBuilder.minimumWords else { fatalError("a fingerprint from \(a.words) words") }
        _ = a.excerpt
        if a.excerpt.utf8.count > 160 { fatalError("excerpt of \(a.excerpt.utf8.count) bytes") }
        _ = a.similarity([])
    default:
        fatalError("one build gave a fingerprint, the other not")
    }
    // The builder never reads past its byte limit.
    let fed = layers.reduce(0) { $0 + $1.count }
    if b1.remaining != max(0, byteLimit - fed) && fed <= byteLimit { fatalError("remaining \(b1.remaining) after \(fed) of \(byteLimit)") }
    return 0
}

// libFuzzer target: the signature-line builder behind `breakwater signatures add`
// (SignatureLine.make and the helpers it exposes). Input: one byte choosing the pattern kind and
// flags, then NUL-separated fields (name, pattern, trigger). Invariants: a built line is one line
// of text (no CR, LF, NUL, other C0 controls), its name field is the name given, it has the field
// count of its database format, and nothing in the pattern adds a field separator.
import BreakwaterCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSignature(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let fields = UnsafeBufferPointer(start: data + 1, count: size - 1)
        .split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    let prefix = "Local."
    // Most inputs get a valid name so that the pattern code is reached.
    let name = mode & 0x80 != 0 ? (fields.first ?? "") : "Local.Fuzz"
    let pattern = fields.count > 1 ? fields[1] : (fields.first ?? "")
    let trigger: String? = fields.count > 2 ? fields[2] : nil
    let ignoreCase = mode & 0x08 != 0
    let p: SignaturePattern
    switch mode & 0x07 {
    case 0, 1: p = .text(pattern, ignoreCase: ignoreCase)
    case 2, 3: p = .regex(pattern, ignoreCase: ignoreCase, trigger: mode & 0x10 != 0 ? trigger : nil)
    case 4, 5: p = .hex(pattern)
    default: p = .sha256(pattern, size: UInt64(mode & 0x30))
    }
    _ = p.summary
    _ = SignatureLine.requiredLiteral(pattern)
    do throws(SignatureInputError) {
        let (kind, line) = try SignatureLine.make(name: name, pattern: p, prefix: prefix)
        if let bad = line.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7f }) {
            fatalError("signature line holds control character \(bad.value): \(line.debugDescription)")
        }
        // Fields as ClamAV splits them: by bytes.
        let colonFields = line.utf8.split(separator: 0x3a, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        let semicolonFields = line.utf8.split(separator: 0x3b, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        switch kind {
        case .ndb:
            guard colonFields.count == 4, colonFields[0] == name, colonFields[1] == "0", colonFields[2] == "*" else {
                fatalError("bad ndb line \(line.debugDescription)")
            }
        case .ldb:
            // name;Engine:81-255,Target:0;logic;subsig[;subsig]
            guard semicolonFields.count == 4 || semicolonFields.count == 5, semicolonFields[0] == name,
                  semicolonFields[1] == "Engine:81-255,Target:0" else {
                fatalError("bad ldb line \(line.debugDescription)")
            }
            if semicolonFields.count == 5 {
                // The PCRE subsignature: 0/regex/flags, no unescaped '/' inside, no blank.
                let pcre = Array(semicolonFields[4].utf8)  // bytes: a combining mark may follow the '/'
                guard pcre.starts(with: Array("0/".utf8)), !pcre.contains(0x20), !pcre.contains(0x3a) else {
                    fatalError("bad pcre subsignature \(semicolonFields[4].debugDescription) in \(line.debugDescription)")
                }
                var closing: Int? = nil
                var i = 2
                while i < pcre.count {
                    if pcre[i] == 0x5c { i += 2; continue }
                    if pcre[i] == 0x2f { closing = i; break }
                    i += 1
                }
                guard let closing, pcre[(closing + 1)...].allSatisfy({ $0 == UInt8(ascii: "i") }) else {
                    fatalError("pcre subsignature not closed by its last '/': \(semicolonFields[4].debugDescription)")
                }
            }
        case .hsb:
            guard colonFields.count == 3, colonFields[2] == name, colonFields[0].utf8.count == 64 else {
                fatalError("bad hsb line \(line.debugDescription)")
            }
        }
    } catch {
        _ = error.description
    }
    do throws(SignatureInputError) { try SignatureLine.validateNote(pattern, what: "comment") } catch { _ = error.description }
    return 0
}

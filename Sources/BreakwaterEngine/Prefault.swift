import BreakwaterCore
import CClamAVPrefault
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Whether this process hands libclamav's page maps out populated (`prefault-size`,
/// Sources/CClamAVPrefault/prefault.c), and why.
package struct PrefaultStatus: Sendable, Equatable {
    package let enabled: Bool
    package let reason: String
    package init(enabled: Bool, reason: String) {
        self.enabled = enabled
        self.reason = reason
    }
    /// One line for the start-up log and `status`: `prefault: on (...)` or `prefault: off (...)`.
    package var summary: String { "prefault: \(enabled ? "on" : "off") (\(reason))" }
}

/// The gate in front of the mmap wrapper. The wrapper replaces `mmap64`/`munmap` for the whole process
/// and skips libclamav's aging remaps inside the maps it populated: right for the page-map code it was
/// measured on (libclamav 1.4's fmap.c, where an aged page is read from the file again before use), not
/// necessarily for another. So it is turned on only for a libclamav release in the tested range, and
/// only after a self-test against the real library has read a file's bytes back through aged, skipped
/// remaps; otherwise it stays off and passes every call through (libclamav's own paging). Decided once
/// per process, before the first engine is built; a security update of libclamav outside the range turns
/// it off, and says so, instead of changing what is scanned.
package enum Prefault {
    /// The libclamav feature release the wrapper was verified on: 1.4 (measured on 1.4.6). ClamAV's
    /// patch releases on a feature line (what a Debian security update brings) carry fixes, not a
    /// reworked page map; fmap.c's aging did change after 1.4 (a per-owner aging budget), so a newer
    /// feature release is out until measured again. The self-test guards the patch releases.
    package static let testedMajor = 1
    package static let testedMinor = 4
    package static var testedRange: String { "\(testedMajor).\(testedMinor).x" }

    /// A release version `MAJOR.MINOR.PATCH` (digits only); nil for anything else (a pre-release such as
    /// `1.4.0-rc`, a development build, an empty string).
    package static func releaseVersion(_ s: String) -> (major: Int, minor: Int, patch: Int)? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var numbers: [Int] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 6, p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(p) else {
                return nil
            }
            numbers.append(n)
        }
        return (numbers[0], numbers[1], numbers[2])
    }

    /// Why `version` (as `cl_retver()` returns it) is outside the tested range; nil when it is inside.
    package static func versionRefusal(_ version: String) -> String? {
        guard let v = releaseVersion(version) else {
            return "libclamav \(printable(version)) is not a release version the wrapper was tested on (\(testedRange))"
        }
        if v.major != testedMajor || v.minor != testedMinor {
            return "libclamav \(version) is outside the tested range \(testedRange)"
        }
        return nil
    }

    /// The decision, without side effects: off when the wrapper is not compiled in, when `prefault-size`
    /// is 0, or when the version is outside the range (the self-test is then not run); else the
    /// self-test's verdict. `selfTest` returns a description of what it proved, or throws why not.
    static func decide(
        version: String, available: Bool, prefaultSize: UInt64,
        selfTest: () -> Result<String, SelfTestFailure>
    ) -> PrefaultStatus {
        guard available else {
            return PrefaultStatus(
                enabled: false, reason: "not compiled in: a sanitizer build, whose own mmap interceptor stays in charge"
            )
        }
        guard prefaultSize > 0 else {
            return PrefaultStatus(enabled: false, reason: "prefault-size is 0")
        }
        if let refusal = versionRefusal(version) {
            return PrefaultStatus(enabled: false, reason: refusal + "; libclamav pages on its own")
        }
        switch selfTest() {
        case .success(let proof):
            return PrefaultStatus(enabled: true, reason: "libclamav \(version), tested range \(testedRange); \(proof)")
        case .failure(let why):
            return PrefaultStatus(
                enabled: false,
                reason: "libclamav \(version): self-test failed: \(why.message); libclamav pages on its own")
        }
    }

    struct SelfTestFailure: Error {
        let message: String
    }

    private static let decided = Mutex<PrefaultStatus?>(nil)

    /// The decision, once made (nil before the first engine is built).
    package static var status: PrefaultStatus? { decided.withLock { $0 } }

    /// Makes the decision if it is not made yet, and turns the wrapper on or off accordingly. Called by
    /// `ClamEngine.init` before it builds an engine (the first engine's limits decide), and by nothing
    /// scanning meanwhile: the self-test turns the wrapper on for its own scans.
    @discardableResult
    package static func ensureDecided(limits: EngineLimits) -> PrefaultStatus {
        decided.withLock { state in
            if let s = state { return s }
            let s = decide(
                version: ClamAVLibrary.version, available: bw_prefault_available() != 0,
                prefaultSize: limits.prefaultSize,
                selfTest: { runSelfTest(temporaryDirectory: limits.temporaryDirectory) })
            bw_prefault_enable(s.enabled ? 1 : 0)
            state = s
            return s
        }
    }

    // MARK: the self-test

    /// A file past fmap's aging threshold (8 MiB paged in a map ages it down to 4 MiB) scanned by
    /// descriptor, so libclamav maps it the way it maps every part it decodes: one anonymous private map
    /// as large as the file, which the wrapper hands out populated. The file is a MIME message: a
    /// plain-text marker and a base64 part (whose decoded bytes are a second marker) near its start,
    /// zero bytes up to 9 MiB, and a third marker at its end. libclamav 1.4.6 reads it three times: the
    /// clean-cache hash over the whole file (which ages the map: the first pages are remapped, and the
    /// wrapper skips those remaps), then the MIME parse from the start (the decoded marker), then the
    /// raw match (the plain-text and end markers), each reading pages again that an earlier pass had
    /// aged. All three markers must be found, at least one aging remap must have been skipped, and the
    /// map must have been populated; otherwise the wrapper stays off. When markers are missed with the
    /// wrapper on, the same scan runs with it off to tell a wrong byte from a self-test this libclamav
    /// does not run as designed.
    static func runSelfTest(temporaryDirectory: String?) -> Result<String, SelfTestFailure> {
        let start = Now.monotonic()
        let base = temporaryDirectory ?? Config.defaultTemporaryDirectory
        let nonce = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        let rawMarker = "BREAKWATER-PREFAULT-SELF-TEST-RAW-\(nonce)"
        let decodedMarker = "BREAKWATER-PREFAULT-SELF-TEST-DECODED-\(nonce)"
        let tailMarker = "BREAKWATER-PREFAULT-SELF-TEST-TAIL-\(nonce)"
        let rawName = "Breakwater.SelfTest.PrefaultRaw"
        let decodedName = "Breakwater.SelfTest.PrefaultDecoded"
        let tailName = "Breakwater.SelfTest.PrefaultTail"

        // The signatures, in a directory of their own (libclamav loads from files), removed once built.
        var template = Array("\(base)/breakwater-prefault-self-test.XXXXXX".utf8CString)
        guard let dirPointer = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            return .failure(SelfTestFailure(message: "cannot create a directory in \(base): \(FileWalk.errnoString())"))
        }
        let dir = String(cString: dirPointer)
        let sigPath = dir + "/self-test.ndb"
        defer {
            unlink(sigPath)
            rmdir(dir)
        }
        let sigs =
            "\(rawName):0:*:\(hex(rawMarker))\n\(decodedName):0:*:\(hex(decodedMarker))\n"
            + "\(tailName):0:*:\(hex(tailMarker))\n"
        guard writeFile(sigPath, Array(sigs.utf8)) else {
            return .failure(SelfTestFailure(message: "cannot write \(sigPath): \(FileWalk.errnoString())"))
        }
        var limits = EngineLimits()
        limits.temporaryDirectory = temporaryDirectory
        limits.heuristics = []
        let engine: ClamEngine
        do {
            engine = try ClamEngine(directories: [dir], limits: limits, gated: false)
        } catch {
            return .failure(SelfTestFailure(message: "cannot build its engine: \(error)"))
        }

        // The message, in an unlinked file.
        var file = "From: self-test@breakwater.invalid\r\nTo: self-test@breakwater.invalid\r\n"
        file += "Subject: prefault self-test\r\nMIME-Version: 1.0\r\n"
        file += "Content-Type: multipart/mixed; boundary=\"self-test\"\r\n\r\n\(rawMarker)\r\n"
        file += "--self-test\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        file += Base64.encode(Array(decodedMarker.utf8)) + "\r\n--self-test--\r\n"
        // The epilogue: zero bytes, which libclamav's MIME parser passes over quickly (the scan costs about
        // a tenth of a second; text lines would take several times longer).
        let size = 9 << 20
        var bytes = Array(file.utf8)
        let tail = Array("\r\n\(tailMarker)\r\n".utf8)
        bytes += [UInt8](repeating: 0, count: size - bytes.count - tail.count)
        bytes += tail
        var fileTemplate = Array("\(base)/breakwater-prefault-self-test.XXXXXX".utf8CString)
        let fd = fileTemplate.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            return .failure(SelfTestFailure(message: "cannot create a file in \(base): \(FileWalk.errnoString())"))
        }
        fileTemplate.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == bytes.count else {
            return .failure(
                SelfTestFailure(
                    message: "cannot write its \(bytes.count)-byte file in \(base): \(FileWalk.errnoString())"))
        }

        let expected: Set<String> = [rawName, decodedName, tailName]
        let wasOn = bw_prefault_enabled()
        bw_prefault_enable(1)
        let populatedBefore = bw_prefault_count()
        let skippedBefore = bw_prefault_remaps_skipped()
        let on = engine.scan(fd: fd, name: "prefault-self-test")
        let populated = bw_prefault_count() - populatedBefore
        let skipped = bw_prefault_remaps_skipped() - skippedBefore
        bw_prefault_enable(wasOn)
        let found = Set(on.detections.map(\.name))
        if found == expected && skipped > 0 && populated > 0 {
            let ms = Int(((Now.monotonic() - start) * 1000).rounded())
            return .success(
                "self-test passed: a \(size >> 20) MiB file read back through \(skipped) skipped aging remaps in \(ms) ms"
            )
        }
        if found == expected {
            return .failure(
                SelfTestFailure(
                    message: populated == 0
                        ? "libclamav did not map the file through the wrapper"
                        : "libclamav did not age the file's map, so skipping its remaps could not be proven"))
        }
        let off = engine.scan(fd: fd, name: "prefault-self-test")
        let foundOff = Set(off.detections.map(\.name))
        if foundOff == expected {
            return .failure(
                SelfTestFailure(
                    message:
                        "with the wrapper on, the file read back wrong (found \(describe(found, on)) instead of all three markers; with libclamav's own paging, all three)"
                ))
        }
        return .failure(
            SelfTestFailure(
                message:
                    "the markers were not found even with libclamav's own paging (found \(describe(foundOff, off))): this self-test does not run as designed on this libclamav"
            ))
    }

    private static func describe(_ names: Set<String>, _ r: ScanResult) -> String {
        if let e = r.errorMessage { return "error \(e)" }
        return names.isEmpty ? "nothing" : names.sorted().joined(separator: ", ")
    }

    private static func hex(_ s: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in s.utf8 {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    /// A version string as libclamav gave it, with anything but printable ASCII escaped (it goes to logs).
    static func printable(_ s: String) -> String {
        var out = ""
        for b in s.utf8.prefix(64) {
            if b >= 0x20 && b < 0x7F {
                out.append(Character(Unicode.Scalar(b)))
            } else {
                out += "\\x" + String(b, radix: 16)
            }
        }
        return out.isEmpty ? "(empty)" : out
    }
}

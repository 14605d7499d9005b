import BreakwaterCore
import Foundation
import XCTest

@testable import BreakwaterEngine

/// Paths and builders shared by the engine tests. Everything here is test data: the engine under test is
/// always the real libclamav.
enum Fixtures {
    /// The checkout's root (this file is Tests/BreakwaterEngineTests/Support.swift).
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static let signatures = root + "/Signatures"
    static let samples = signatures + "/samples"
    static let ham = signatures + "/ham"
    static let clamavTestFiles = "/usr/share/clamav-testfiles"

    /// The EICAR test string, from two halves so this source file is not itself an EICAR hit.
    static let eicar = Array(("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").utf8)

    /// One engine with the shipped set, built once for all tests (a build takes a few milliseconds, but
    /// sharing it also exercises the "one engine, many scans" use).
    nonisolated(unsafe) private static var cached: ClamEngine?
    private static let lock = NSLock()
    static func shipped() throws -> ClamEngine {
        lock.lock()
        defer { lock.unlock() }
        if let e = cached { return e }
        let e = try ClamEngine(directories: [signatures])
        cached = e
        return e
    }

    /// Every .eml file under `dir`, sorted.
    static func messages(under dir: String) -> [String] {
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: dir) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".eml") }.sorted().map { dir + "/" + $0 }
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The names a sample's `X-Breakwater-Expect:` header lists (empty for "clean"); nil when it has none.
    static func expectation(of message: [UInt8]) -> Set<String>? {
        let text = String(decoding: message.prefix(8192), as: UTF8.self)
        let header = text.components(separatedBy: "\r\n\r\n").first ?? text
        for line in header.components(separatedBy: "\r\n") where line.hasPrefix("X-Breakwater-Expect:") {
            let value = line.dropFirst("X-Breakwater-Expect:".count).trimmingCharacters(in: .whitespaces)
            if value == "clean" { return [] }
            return Set(value.components(separatedBy: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        return nil
    }

    /// Every signature name defined in the shipped database files (.ndb/.ldb/.cdb; comments skipped).
    static func shippedNames() throws -> Set<String> {
        var names = Set<String>()
        for file in try FileManager.default.contentsOfDirectory(atPath: signatures) {
            let sep: Character
            switch (file as NSString).pathExtension {
            case "ndb", "cdb": sep = ":"
            case "ldb": sep = ";"
            default: continue
            }
            let text = try String(contentsOfFile: signatures + "/" + file, encoding: .utf8)
            for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
                names.insert(String(line.split(separator: sep, maxSplits: 1)[0]))
            }
        }
        return names
    }

    static func clamExe(file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let path = clamavTestFiles + "/clam.exe"
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) is missing: install clamav-testfiles (scripts/setup.sh --test)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return try read(path)
    }

    /// A temporary directory holding the given files, removed by the caller (`defer`).
    static func tempDirectory(_ files: [String: String]) throws -> String {
        let dir = NSTemporaryDirectory() + "bw-engine-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, content) in files {
            try content.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        return dir
    }
}

extension ClamEngine {
    /// Scans bytes from memory.
    func scan(bytes: [UInt8]) -> ScanResult {
        bytes.withUnsafeBytes { scan($0) }
    }
}

extension ScanResult {
    var names: Set<String> { Set(detections.map(\.name)) }
}

// MARK: - Building messages

enum Mime {
    static func base64(_ bytes: [UInt8]) -> String {
        let out = Array(Base64.encode(bytes).utf8)
        var lines = ""
        var j = 0
        while j < out.count {
            lines += String(decoding: out[j..<min(j + 76, out.count)], as: UTF8.self) + "\r\n"
            j += 76
        }
        return lines
    }

    /// A multipart/mixed message: a text part, then each attachment base64-encoded.
    static func message(
        subject: String, text: String, attachments: [(name: String, type: String, data: [UInt8])] = [],
        forwarded: [UInt8]? = nil, boundary: String = "b-\(UUID().uuidString)"
    ) -> [UInt8] {
        var m = "From: Test <test@example.org>\r\nTo: alex@bench.example\r\nSubject: \(subject)\r\n"
        m += "Date: Mon, 04 Mar 2024 09:15:00 +0000\r\nMessage-ID: <\(UUID().uuidString)@example.org>\r\n"
        m += "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"\(boundary)\"\r\n\r\n"
        m += "--\(boundary)\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\(text)\r\n"
        for a in attachments {
            m += "--\(boundary)\r\nContent-Type: \(a.type); name=\"\(a.name)\"\r\n"
            m += "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"\(a.name)\"\r\n\r\n"
            m += base64(a.data)
        }
        var bytes = Array(m.utf8)
        if let forwarded {
            bytes += Array(
                "--\(boundary)\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n".utf8)
            bytes += forwarded
            bytes += Array("\r\n".utf8)
        }
        bytes += Array("--\(boundary)--\r\n".utf8)
        return bytes
    }
}

/// Writes zip archives with stored (uncompressed) members, by hand: XCTest has no zip library, and a
/// stored zip is a few headers around the data.
enum StoredZip {
    static func make(_ members: [(name: String, data: [UInt8])]) -> [UInt8] {
        var out = [UInt8]()
        var central = [UInt8]()
        for m in members {
            let name = Array(m.name.utf8)
            let crc = crc32(m.data)
            let offset = UInt32(out.count)
            out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(0) + le16(0x4BC0) + le16(0x5861)
            out += le32(crc) + le32(UInt32(m.data.count)) + le32(UInt32(m.data.count))
            out += le16(UInt16(name.count)) + le16(0) + name + m.data
            central += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(0) + le16(0x4BC0) + le16(0x5861)
            central += le32(crc) + le32(UInt32(m.data.count)) + le32(UInt32(m.data.count))
            central += le16(UInt16(name.count)) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + name
        }
        let cdOffset = UInt32(out.count)
        out += central
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(members.count)) + le16(UInt16(members.count))
        out += le32(UInt32(central.count)) + le32(cdOffset) + le16(0)
        return out
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    private static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}

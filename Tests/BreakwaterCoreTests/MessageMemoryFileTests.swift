import CProcessTuning
import XCTest

@testable import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// A message held in memory in a memfd (the daemon's scan workers get it as a descriptor, no copy).
final class MessageMemoryFileTests: XCTestCase {
    private func read(_ fd: Int32, _ size: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        return Array(out.prefix(max(0, n)))
    }

    func testBytesGoToTheMemoryFileAndItsBudgetIsHeld() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(
            admission: a, spoolThreshold: 256 << 10, spoolDirectory: NSTemporaryDirectory(),
            memoryFile: { bw_memfd("test-message") })
        try m.append("Subject: hi\r\n\r\n")
        let chunk = [UInt8]((0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try chunk.withUnsafeBytes { try m.append($0) }
        guard case .memory = m.storage else { return XCTFail("spooled") }
        let d = try XCTUnwrap(m.descriptor())
        XCTAssertEqual(d.size, 15 + 40_000)
        let expected = Array("Subject: hi\r\n\r\n".utf8) + chunk
        XCTAssertEqual(read(d.fd, d.size), expected)
        XCTAssertEqual(m.withMemory { Array($0) }, expected)
        XCTAssertGreaterThanOrEqual(a.snapshot.buffered, UInt64(d.size))
        m.reset()
        XCTAssertEqual(a.snapshot.buffered, 0)
        // The session's next message reuses the memfd, emptied but for its first 16 KB (kept: no
        // ftruncate and no page fault for a small message).
        XCTAssertEqual(fileLength(d.fd), MessageBuffer.keptMemoryFileBytes)
        XCTAssertEqual(try XCTUnwrap(m.descriptor()).size, 0)
        try m.append("Subject: again\r\n\r\nbody\r\n")
        let again = try XCTUnwrap(m.descriptor())
        XCTAssertEqual(again.fd, d.fd)
        XCTAssertEqual(read(again.fd, again.size), Array("Subject: again\r\n\r\nbody\r\n".utf8))
        XCTAssertGreaterThan(a.snapshot.buffered, 0, "a message in the kept bytes still holds budget")
        m.reset()
        XCTAssertEqual(fileLength(d.fd), MessageBuffer.keptMemoryFileBytes)
        XCTAssertEqual(a.snapshot.buffered, 0)
    }

    private func fileLength(_ fd: Int32) -> Int {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int(st.st_size) : -1
    }

    func testSpillToDiskCarriesTheMemoryFilesBytes() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(
            admission: a, spoolThreshold: 32 << 10, spoolDirectory: NSTemporaryDirectory(),
            memoryFile: { bw_memfd("test-message") })
        let first = [UInt8](repeating: 65, count: 20_000)
        let second = [UInt8](repeating: 66, count: 20_000)
        try first.withUnsafeBytes { try m.append($0) }
        try second.withUnsafeBytes { try m.append($0) }
        guard case .file = m.storage else { return XCTFail("not spooled past the threshold") }
        let d = try XCTUnwrap(m.descriptor())
        XCTAssertEqual(read(d.fd, d.size), first + second)
        XCTAssertEqual(a.snapshot.buffered, 0, "the memory file's budget went back")
    }

    func testAnEmptyMessageStillHasADescriptor() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(
            admission: a, spoolThreshold: 32 << 10, spoolDirectory: NSTemporaryDirectory(),
            memoryFile: { bw_memfd("test-message") })
        let d = try XCTUnwrap(m.descriptor())
        XCTAssertEqual(d.size, 0)
        XCTAssertGreaterThanOrEqual(d.fd, 0)
    }
}

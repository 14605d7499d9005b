import XCTest

@testable import BreakwaterCore

final class MessageAssemblyTests: XCTestCase {
    func make(max: UInt64 = 1 << 20, budget: UInt64 = 1 << 20, threshold: UInt64 = 256 << 10) -> (
        MessageAssembly, Admission
    ) {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: budget)
        let m = MessageBuffer(admission: a, spoolThreshold: threshold, spoolDirectory: NSTemporaryDirectory())
        return (MessageAssembly(buffer: m, maxMessageSize: max), a)
    }

    func header(_ m: MessageAssembly, _ name: String, _ value: String) {
        Array(name.utf8).withUnsafeBytes { n in Array(value.utf8).withUnsafeBytes { v in m.header(name: n, value: v) } }
    }

    @discardableResult
    func body(_ m: MessageAssembly, _ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { m.body($0) }
    }

    func contents(_ m: MessageAssembly) -> String? {
        m.buffer.withMemory { String(decoding: $0, as: UTF8.self) }
    }

    func testAssemblesHeadersBlankLineAndBody() {
        let (m, _) = make()
        header(m, "From", "a@example.org")
        header(m, "Subject", "hello\n\tworld")
        m.endOfHeaders()
        body(m, "line 1\r\n")
        body(m, "line 2\r\n")
        m.endOfHeaders()  // a second call adds nothing
        XCTAssertEqual(contents(m), "From: a@example.org\r\nSubject: hello\n\tworld\r\n\r\nline 1\r\nline 2\r\n")
        XCTAssertEqual(m.received, UInt64(contents(m)!.utf8.count))
        XCTAssertEqual(m.subject, "hello\n\tworld")
        XCTAssertFalse(m.oversize)
    }

    func testLeadingSpaceAndBodyWithoutEndOfHeaders() {
        let (m, _) = make()
        m.leadingSpace = true
        header(m, "X", " y")
        body(m, "b")  // libmilter may skip the end-of-headers step: the blank line still comes first
        XCTAssertEqual(contents(m), "X: y\r\n\r\nb")
    }

    func testFirstSubjectInAnyCaseIsKeptAndCut() {
        let (m, _) = make()
        header(m, "SUBJECT", String(repeating: "s", count: 2000))
        header(m, "Subject", "second")
        XCTAssertEqual(m.subject?.utf8.count, 998)
        header(m, "Subjects", "x")
        XCTAssertEqual(m.subject?.first, "s")
    }

    /// The bypass of issue 19: a declared SIZE over the limit must not mark a small message oversize.
    func testDeclaredSizeNeverMakesAMessageOversize() {
        let (m, a) = make(max: 1000)
        m.declare(size: 30_000_000)
        header(m, "Subject", "eicar")
        m.endOfHeaders()
        XCTAssertTrue(body(m, "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"))
        XCTAssertFalse(m.oversize)
        XCTAssertEqual(m.received, UInt64(contents(m)!.utf8.count))
        XCTAssertLessThanOrEqual(a.snapshot.buffered, MessageBuffer.maxAnnouncedReserve)
    }

    func testDeclaredSizeReservesLittleAndNotPastHalfTheBudget() {
        let (m, a) = make(max: 100 << 20, budget: 1 << 20, threshold: 1 << 20)
        m.declare(size: 30_000_000)
        XCTAssertEqual(a.snapshot.buffered, MessageBuffer.maxAnnouncedReserve, "a declared size reserves at most 64 KB")
        m.reset()
        XCTAssertEqual(a.snapshot.buffered, 0)
        // Idle sessions that declared sizes hold at most half the budget; data still gets the rest.
        var idle: [MessageAssembly] = []
        for _ in 0..<40 {
            let s = MessageAssembly(
                buffer: MessageBuffer(admission: a, spoolThreshold: 1 << 20, spoolDirectory: NSTemporaryDirectory()),
                maxMessageSize: 100 << 20)
            s.declare(size: 1 << 20)
            idle.append(s)
        }
        XCTAssertLessThanOrEqual(a.snapshot.buffered, (1 << 20) / 2)
        XCTAssertTrue(a.reserve((1 << 20) / 2))
        for s in idle { s.reset() }
    }

    func testOversizeIsDecidedOnReceivedBytes() {
        let (m, a) = make(max: 100)
        header(m, "Subject", "x")
        m.endOfHeaders()
        XCTAssertTrue(body(m, String(repeating: "a", count: 80)))
        XCTAssertFalse(m.oversize)
        XCTAssertFalse(body(m, String(repeating: "b", count: 80)), "past the limit the rest is not wanted")
        XCTAssertTrue(m.oversize)
        XCTAssertFalse(m.isKept)
        XCTAssertEqual(m.buffer.size, 0, "an oversize message keeps nothing")
        XCTAssertEqual(a.snapshot.buffered, 0)
        XCTAssertFalse(body(m, "more"))
        XCTAssertEqual(m.received, 12 + 2 + 80 + 80 + 4, "bytes received, also those not kept")
        m.reset()
        XCTAssertFalse(m.oversize)
        XCTAssertEqual(m.received, 0)
        XCTAssertNil(m.subject)
    }

    func testManyAndLongHeadersStopAtTheLimit() {
        let (m, _) = make(max: 64 << 10)
        let long = String(repeating: "v", count: 1 << 20)
        header(m, "X-Long", long)
        XCTAssertTrue(m.oversize)
        let (m2, _) = make(max: 64 << 10)
        for i in 0..<10_000 { header(m2, "X-H\(i)", "v") }
        XCTAssertTrue(m2.oversize)
        XCTAssertEqual(m2.buffer.size, 0)
    }

    func testBytesAreKeptAsReceived() {
        let (m, _) = make()
        let name: [UInt8] = [0x58, 0x00, 0x0D]
        let value: [UInt8] = [0x00, 0xFF, 0x0D, 0x0A, 0x1B]
        name.withUnsafeBytes { n in value.withUnsafeBytes { v in m.header(name: n, value: v) } }
        let chunk: [UInt8] = [0x00, 0x0D, 0x0D]
        _ = chunk.withUnsafeBytes { m.body($0) }
        let kept = m.buffer.withMemory { Array($0) }
        XCTAssertEqual(kept, name + Array(": ".utf8) + value + [13, 10, 13, 10] + chunk)
    }

    func testSpoolBudgetSpentIsATemporaryFailure() {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20, spoolBudget: 4 << 10)
        let m = MessageAssembly(
            buffer: MessageBuffer(admission: a, spoolThreshold: 1 << 10, spoolDirectory: NSTemporaryDirectory()),
            maxMessageSize: 1 << 20)
        header(m, "Subject", "x")
        XCTAssertTrue(body(m, String(repeating: "a", count: 3000)))
        XCTAssertFalse(body(m, String(repeating: "b", count: 3000)))
        XCTAssertEqual(m.spoolFailure?.overBudget, true)
        XCTAssertEqual(a.snapshot.spooled, 0, "the failed message holds no spool budget")
        m.reset()
        XCTAssertNil(m.spoolFailure)
    }

    func testSpoolFailureStopsTakingTheMessage() {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageAssembly(
            buffer: MessageBuffer(admission: a, spoolThreshold: 10, spoolDirectory: "/nonexistent-dir"),
            maxMessageSize: 1 << 20)
        header(m, "Subject", "longer than ten bytes")
        XCTAssertNotNil(m.spoolError)
        XCTAssertEqual(m.spoolFailure?.overBudget, false)
        XCTAssertFalse(body(m, "x"))
        m.reset()
        XCTAssertNil(m.spoolError)
    }
}

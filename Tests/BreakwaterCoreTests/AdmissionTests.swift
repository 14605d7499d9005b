import XCTest
import Synchronization
@testable import BreakwaterCore

final class AdmissionTests: XCTestCase {
    func testSlotsThenLineThenBusy() {
        let a = Admission(slots: 2, maxWaiting: 1, maxWait: 5, memoryBudget: 1 << 20)
        XCTAssertEqual(a.acquireSlot(), .acquired(waited: 0))
        XCTAssertEqual(a.acquireSlot(), .acquired(waited: 0))
        XCTAssertFalse(a.isSaturated)
        // One may wait; it gets the slot released by another thread.
        let got = Mutex<Admission.SlotResult?>(nil)
        let waiter = Thread.start { got.withLock { $0 = a.acquireSlot() } }
        var spins = 0
        while a.snapshot.waiting == 0 && spins < 500 { usleep(2000); spins += 1 }
        XCTAssertEqual(a.snapshot.waiting, 1)
        XCTAssertTrue(a.isSaturated)
        XCTAssertEqual(a.acquireSlot(), .busy, "the line is full: answer busy at once")
        a.releaseSlot()
        waiter.join()
        guard case .acquired = got.withLock({ $0 }) else { return XCTFail("waiter did not get the slot") }
        XCTAssertEqual(a.snapshot.busy, 2)
        a.releaseSlot()
        a.releaseSlot()
        XCTAssertEqual(a.snapshot.busy, 0)
    }

    func testFreedSlotGoesToTheWaitingMessageNotToANewcomer() {
        let a = Admission(slots: 1, maxWaiting: 1, maxWait: 0.5, memoryBudget: 1 << 20)
        XCTAssertEqual(a.acquireSlot(), .acquired(waited: 0))
        let got = Mutex<Admission.SlotResult?>(nil)
        let waiter = Thread.start { got.withLock { $0 = a.acquireSlot() } }
        var spins = 0
        while a.snapshot.waiting == 0 && spins < 500 { usleep(2000); spins += 1 }
        a.releaseSlot()
        // Right after the release a newcomer finds the slot handed over (or taken): it may not overtake.
        let newcomer = a.acquireSlot()
        XCTAssertNotEqual(newcomer, .acquired(waited: 0), "a newcomer took the slot freed for the waiting message")
        waiter.join()
        guard case .acquired = got.withLock({ $0 }) else { return XCTFail("the waiting message did not get the slot") }
        XCTAssertEqual(a.snapshot.busy, 1)
        XCTAssertEqual(a.snapshot.waiting, 0)
        a.releaseSlot()
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.acquireSlot(), .acquired(waited: 0))
        a.releaseSlot()
    }

    func testManyWaitersAllServedAndCountsBalance() {
        let a = Admission(slots: 2, maxWaiting: 64, maxWait: 30, memoryBudget: 1 << 20)
        let served = Atomic<Int>(0)
        let threads = (0..<40).map { _ in
            Thread.start {
                if case .acquired = a.acquireSlot() {
                    usleep(500)
                    served.add(1, ordering: .relaxed)
                    a.releaseSlot()
                }
            }
        }
        threads.forEach { $0.join() }
        XCTAssertEqual(served.load(ordering: .relaxed), 40)
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.snapshot.waiting, 0)
    }

    func testWaitTimesOutAndKeepsAlive() {
        let a = Admission(slots: 1, maxWaiting: 4, maxWait: 1.2, memoryBudget: 1 << 20)
        XCTAssertEqual(a.acquireSlot(), .acquired(waited: 0))
        var pings = 0
        XCTAssertEqual(a.acquireSlot(keepAlive: { pings += 1 }), .timedOut)
        XCTAssertGreaterThanOrEqual(pings, 1)
        XCTAssertEqual(a.snapshot.waiting, 0)
        a.releaseSlot()
    }

    func testMemoryBudget() {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1000)
        XCTAssertTrue(a.reserve(600))
        XCTAssertFalse(a.reserve(500))
        XCTAssertTrue(a.reserve(400))
        a.release(600)
        XCTAssertEqual(a.snapshot.buffered, 400)
        a.release(400)
        XCTAssertEqual(a.snapshot.buffered, 0)
    }

    func testMessageBufferKeepsSmallMessagesInMemoryAndSpillsLargeOnes() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(admission: a, spoolThreshold: 64 << 10, spoolDirectory: NSTemporaryDirectory())
        try m.append("Subject: hi\r\n\r\n")
        let chunk = [UInt8](repeating: 65, count: 10_000)
        try chunk.withUnsafeBytes { try m.append($0) }
        guard case .memory = m.storage else { return XCTFail("small message should stay in memory") }
        XCTAssertGreaterThan(a.snapshot.buffered, 0)
        XCTAssertEqual(m.withMemory { Array($0.prefix(8)) }, Array("Subject:".utf8))
        for _ in 0..<10 { try chunk.withUnsafeBytes { try m.append($0) } }
        guard case .file(let fd) = m.storage else { return XCTFail("large message should spill") }
        XCTAssertEqual(m.spoolReason, "size")
        XCTAssertEqual(a.snapshot.buffered, 0, "a spooled message holds no memory budget")
        XCTAssertEqual(m.size, UInt64(15 + 110_000))
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        XCTAssertEqual(Int(st.st_size), 15 + 110_000)
        XCTAssertEqual(st.st_nlink, 0, "spool files are unlinked")
        m.reset()
        XCTAssertEqual(m.size, 0)
    }

    func testMessageBufferSpillsWhenBudgetIsSpent() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 40 << 10)
        let m1 = MessageBuffer(admission: a, spoolThreshold: 1 << 20, spoolDirectory: NSTemporaryDirectory())
        let m2 = MessageBuffer(admission: a, spoolThreshold: 1 << 20, spoolDirectory: NSTemporaryDirectory())
        let chunk = [UInt8](repeating: 66, count: 30 << 10)
        try chunk.withUnsafeBytes { try m1.append($0) }
        try chunk.withUnsafeBytes { try m2.append($0) }
        guard case .memory = m1.storage else { return XCTFail() }
        guard case .file = m2.storage else { return XCTFail("over budget must spill, not grow the heap") }
        XCTAssertEqual(m2.spoolReason, "memory budget")
        XCTAssertLessThanOrEqual(a.snapshot.buffered, 40 << 10)
        m1.reset(); m2.reset()
        XCTAssertEqual(a.snapshot.buffered, 0)
    }

    func testSpoolFailureIsReported() {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(admission: a, spoolThreshold: 10, spoolDirectory: "/nonexistent-dir")
        XCTAssertThrowsError(try m.append("this is longer than ten bytes"))
    }
}

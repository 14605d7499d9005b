import Synchronization
import XCTest

@testable import BreakwaterCore

final class AdmissionTests: XCTestCase {
    /// Waits (polling) until `cond` holds, at most 5 s.
    private func eventually(_ cond: () -> Bool) {
        var spins = 0
        while !cond() && spins < 2500 {
            usleep(2000)
            spins += 1
        }
    }

    func testScannersThenLineThenBusy() {
        let a = Admission(slots: 2, maxWaiting: 1, maxWait: 5, memoryBudget: 1 << 20)
        let gate = Atomic<Bool>(false)
        let outcomes = Mutex<[Admission.SlotResult]>([])
        let first = (0..<2).map { _ in
            BreakwaterCore.PosixThread.start {
                let o = a.hold { _ in while !gate.load(ordering: .relaxed) { usleep(1000) } }
                outcomes.withLock { $0.append(o) }
            }
        }
        eventually { a.snapshot.busy == 2 }
        XCTAssertEqual(a.snapshot.busy, 2)
        XCTAssertEqual(a.snapshot.waiting, 0)
        XCTAssertFalse(a.isSaturated)
        // One may wait in line; the line is then full.
        let third = PosixThread.start {
            let o = a.hold({ _ in })
            outcomes.withLock { $0.append(o) }
        }
        eventually { a.snapshot.waiting == 1 }
        XCTAssertEqual(a.snapshot.waiting, 1)
        XCTAssertTrue(a.isSaturated)
        var ran = false
        XCTAssertEqual(a.hold({ _ in ran = true }), .busy, "the line is full: answer busy at once")
        XCTAssertFalse(ran, "a message turned away is not scanned")
        gate.store(true, ordering: .relaxed)
        (first + [third]).forEach { $0.join() }
        XCTAssertEqual(outcomes.withLock { $0.count }, 3)
        XCTAssertTrue(outcomes.withLock { $0.allSatisfy { if case .scanned = $0 { true } else { false } } })
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.snapshot.waiting, 0)
    }

    func testFirstComeFirstServed() {
        let a = Admission(slots: 1, maxWaiting: 8, maxWait: 10, memoryBudget: 1 << 20)
        let gate = Atomic<Bool>(false)
        let order = Mutex<[Int]>([])
        let blocker = PosixThread.start { _ = a.hold { _ in while !gate.load(ordering: .relaxed) { usleep(1000) } } }
        eventually { a.snapshot.busy == 1 }
        var waiters: [BreakwaterCore.PosixThread] = []
        for i in 0..<5 {
            waiters.append(PosixThread.start { _ = a.hold { _ in order.withLock { $0.append(i) } } })
            eventually { a.snapshot.waiting == i + 1 }
        }
        gate.store(true, ordering: .relaxed)
        blocker.join()
        waiters.forEach { $0.join() }
        XCTAssertEqual(
            order.withLock { $0 }, [0, 1, 2, 3, 4], "messages are scanned in the order they joined the line")
    }

    func testManyWaitersAllServedAndCountsBalance() {
        let a = Admission(slots: 2, maxWaiting: 64, maxWait: 30, memoryBudget: 1 << 20)
        let served = Atomic<Int>(0)
        let threads = (0..<40).map { _ in
            PosixThread.start {
                if case .scanned = a.hold({ _ in usleep(500) }) { served.add(1, ordering: .relaxed) }
            }
        }
        threads.forEach { $0.join() }
        XCTAssertEqual(served.load(ordering: .relaxed), 40)
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.snapshot.waiting, 0)
    }

    func testHoldRunsOnTheCallersThreadWithinTheSlots() {
        let a = Admission(slots: 2, maxWaiting: 64, maxWait: 30, memoryBudget: 1 << 20)
        let inside = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        let held = Mutex<Set<Int>>([])
        let clash = Atomic<Bool>(false)
        let elsewhere = Atomic<Int>(0)
        let threads = (0..<20).map { _ in
            PosixThread.start {
                let me = pthread_self()
                let o = a.hold { slot in
                    if pthread_self() != me { elsewhere.add(1, ordering: .relaxed) }
                    let n = inside.add(1, ordering: .relaxed).newValue
                    _ = most.max(n, ordering: .relaxed)
                    if !(0..<2).contains(slot) || !held.withLock({ $0.insert(slot).inserted }) {
                        clash.store(true, ordering: .relaxed)
                    }
                    usleep(500)
                    held.withLock { _ = $0.remove(slot) }
                    inside.subtract(1, ordering: .relaxed)
                }
                if case .scanned = o {} else { clash.store(true, ordering: .relaxed) }
            }
        }
        threads.forEach { $0.join() }
        XCTAssertEqual(elsewhere.load(ordering: .relaxed), 0, "a held slot ran on another thread")
        XCTAssertLessThanOrEqual(most.load(ordering: .relaxed), 2, "more bodies ran at once than slots")
        XCTAssertFalse(clash.load(ordering: .relaxed), "two bodies held one slot index, or one was not served")
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.snapshot.waiting, 0)
    }

    func testHoldWaitsInOrderTimesOutKeepsAliveAndRespectsAlone() {
        let a = Admission(slots: 2, maxWaiting: 8, maxWait: 10, memoryBudget: 1 << 20)
        let gate = Atomic<Bool>(false)
        let order = Mutex<[String]>([])
        // Two slots taken; an `alone` job first in line waits until both end, and the next behind it
        // waits for it (first come, first served).
        let blockers = (0..<2).map { _ in
            PosixThread.start { _ = a.hold({ _ in while !gate.load(ordering: .relaxed) { usleep(1000) } }) }
        }
        eventually { a.snapshot.busy == 2 }
        let runningWithAlone = Atomic<Int>(-1)
        let alone = PosixThread.start {
            _ = a.hold(alone: true) { _ in
                runningWithAlone.store(a.snapshot.busy, ordering: .relaxed)
                order.withLock { $0.append("alone") }
                usleep(20_000)
            }
        }
        eventually { a.snapshot.waiting == 1 }
        let after = PosixThread.start { _ = a.hold { _ in order.withLock { $0.append("after") } } }
        eventually { a.snapshot.waiting == 2 }
        var pings = 0
        let short = Admission(slots: 1, maxWaiting: 4, maxWait: 1.2, memoryBudget: 1 << 20)
        let shortGate = Atomic<Bool>(false)
        let shortBlocker = PosixThread.start {
            _ = short.hold({ _ in while !shortGate.load(ordering: .relaxed) { usleep(1000) } })
        }
        eventually { short.snapshot.busy == 1 }
        var ran = false
        XCTAssertEqual(short.hold({ _ in ran = true }, keepAlive: { pings += 1 }), .timedOut)
        XCTAssertGreaterThanOrEqual(pings, 1, "no keepalive while waiting in line")
        XCTAssertFalse(ran)
        shortGate.store(true, ordering: .relaxed)
        shortBlocker.join()
        gate.store(true, ordering: .relaxed)
        (blockers + [alone, after]).forEach { $0.join() }
        XCTAssertEqual(order.withLock { $0 }, ["alone", "after"])
        XCTAssertEqual(runningWithAlone.load(ordering: .relaxed), 1, "the alone job ran beside another")
        XCTAssertEqual(a.snapshot.busy, 0)
        XCTAssertEqual(a.snapshot.waiting, 0)
    }

    func testWaitTimesOutAndKeepsAlive() {
        let a = Admission(slots: 1, maxWaiting: 4, maxWait: 1.2, memoryBudget: 1 << 20)
        let gate = Atomic<Bool>(false)
        let blocker = PosixThread.start { _ = a.hold { _ in while !gate.load(ordering: .relaxed) { usleep(1000) } } }
        eventually { a.snapshot.busy == 1 }
        var pings = 0
        var ran = false
        XCTAssertEqual(a.hold({ _ in ran = true }, keepAlive: { pings += 1 }), .timedOut)
        XCTAssertGreaterThanOrEqual(pings, 1)
        XCTAssertEqual(a.snapshot.waiting, 0)
        gate.store(true, ordering: .relaxed)
        blocker.join()
        usleep(20_000)
        XCTAssertFalse(ran, "a message that timed out in line is never scanned")
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

    func testAnnouncedSizeIsReservedOnceWithRoomForTheMTAsHeader() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(admission: a, spoolThreshold: 64 << 10, spoolDirectory: NSTemporaryDirectory())
        m.expect(10_000)
        XCTAssertEqual(a.snapshot.buffered, 11_024, "announced size + 1 KB held at once")
        // The client's message plus a Received: header the MTA added: no growth.
        let chunk = [UInt8](repeating: 65, count: 10_600)
        try chunk.withUnsafeBytes { try m.append($0) }
        XCTAssertEqual(a.snapshot.buffered, 11_024)
        // Past the estimate it grows (geometrically) and holds budget for the new capacity.
        try chunk.withUnsafeBytes { try m.append($0) }
        XCTAssertEqual(m.size, 21_200)
        XCTAssertGreaterThanOrEqual(a.snapshot.buffered, 21_200)
        m.reset()
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
        m1.reset()
        m2.reset()
        XCTAssertEqual(a.snapshot.buffered, 0)
    }

    func testSpoolBudgetBoundsTheBytesInSpoolFiles() throws {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20, spoolBudget: 100 << 10)
        let m1 = MessageBuffer(admission: a, spoolThreshold: 16 << 10, spoolDirectory: NSTemporaryDirectory())
        let m2 = MessageBuffer(admission: a, spoolThreshold: 16 << 10, spoolDirectory: NSTemporaryDirectory())
        let chunk = [UInt8](repeating: 67, count: 10 << 10)
        for _ in 0..<6 { try chunk.withUnsafeBytes { try m1.append($0) } }
        guard case .file = m1.storage else { return XCTFail("past the threshold the message is spooled") }
        XCTAssertEqual(a.snapshot.spooled, 60 << 10)
        XCTAssertEqual(a.snapshot.buffered, 0)
        // The second message spills at 16K and then runs into the 100K budget.
        var failure: MessageBuffer.SpoolError?
        do {
            for _ in 0..<6 { try chunk.withUnsafeBytes { try m2.append($0) } }
        } catch {
            failure = error as? MessageBuffer.SpoolError
        }
        XCTAssertEqual(failure?.overBudget, true, "past spool-budget the append fails as over budget")
        XCTAssertLessThanOrEqual(a.snapshot.spooled, 100 << 10)
        m2.reset()
        XCTAssertEqual(a.snapshot.spooled, 60 << 10, "a dropped message returns its spool budget")
        // Room again: the same message now fits.
        m1.reset()
        XCTAssertEqual(a.snapshot.spooled, 0)
        for _ in 0..<6 { try chunk.withUnsafeBytes { try m2.append($0) } }
        XCTAssertEqual(a.snapshot.spooled, 60 << 10)
        m2.reset()
        XCTAssertEqual(a.snapshot.spooled, 0)
    }

    func testSpillFromMemoryBudgetIsBoundedBySpoolBudget() throws {
        // The memory budget is spent, so a small message must spill, and the spool budget is too.
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 32 << 10, spoolBudget: 8 << 10)
        let held = MessageBuffer(admission: a, spoolThreshold: 32 << 10, spoolDirectory: NSTemporaryDirectory())
        let chunk = [UInt8](repeating: 68, count: 20 << 10)
        try chunk.withUnsafeBytes { try held.append($0) }
        let m = MessageBuffer(admission: a, spoolThreshold: 32 << 10, spoolDirectory: NSTemporaryDirectory())
        XCTAssertThrowsError(try chunk.withUnsafeBytes { try m.append($0) }) { e in
            XCTAssertEqual((e as? MessageBuffer.SpoolError)?.overBudget, true)
        }
        m.reset()
        held.reset()
        XCTAssertEqual(a.snapshot.spooled, 0)
        XCTAssertEqual(a.snapshot.buffered, 0)
    }

    func testOncePerSecondCountsWhatItHolds() {
        let o = OncePerSecond()
        XCTAssertEqual(o.tick(now: 100.1), 1)
        for _ in 0..<50 { XCTAssertNil(o.tick(now: 100.5)) }
        XCTAssertEqual(o.tick(now: 101.0), 51, "the next second's first event reports those held back")
        XCTAssertNil(o.tick(now: 101.9))
    }

    func testSpoolFailureIsReported() {
        let a = Admission(slots: 1, maxWaiting: 0, maxWait: 1, memoryBudget: 1 << 20)
        let m = MessageBuffer(admission: a, spoolThreshold: 10, spoolDirectory: "/nonexistent-dir")
        XCTAssertThrowsError(try m.append("this is longer than ten bytes"))
    }
}

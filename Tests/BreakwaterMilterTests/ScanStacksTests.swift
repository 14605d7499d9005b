import BreakwaterCore
import CStack
import XCTest
@testable import BreakwaterMilter

/// The address of a local variable of the caller's frame.
@inline(never) func here() -> UInt {
    var x = 0
    return withUnsafeMutablePointer(to: &x) { UInt(bitPattern: $0) }
}

func onStack(_ address: UInt, _ stacks: ScanStacks) -> Bool {
    stacks.all.contains { address >= $0 && address < $0 + UInt(ScanStacks.size) }
}

final class ScanStacksTests: XCTestCase {
    func testBodyRunsOnASlotStackAndReturnsItsResult() throws {
        try XCTSkipUnless(bw_stack_switches() != 0, "built with a sanitizer: scans run on the caller's stack")
        let stacks = ScanStacks(count: 2)
        XCTAssertEqual(stacks.all.count, 2)
        XCTAssertFalse(onStack(here(), stacks))
        let (address, value) = stacks.run { (here(), "scanned") }
        XCTAssertTrue(onStack(address, stacks), "the body ran on the thread's own stack")
        XCTAssertEqual(value, "scanned")
        // A deep recursion (a few MB of frames) fits in a slot's stack.
        func depth(_ n: Int) -> Int {
            var pad = (n, n, n, n, n, n, n, n)
            return withUnsafeMutablePointer(to: &pad) { p in n == 0 ? p.pointee.0 : depth(n - 1) + 1 }
        }
        XCTAssertEqual(stacks.run { depth(20_000) }, 20_000)
    }

    func testEveryConcurrentScanGetsAStackOfItsOwnAndNoneIsLost() throws {
        try XCTSkipUnless(bw_stack_switches() != 0, "built with a sanitizer: scans run on the caller's stack")
        let stacks = ScanStacks(count: 4)
        let seen = Locked<[UInt: Int]>([:])
        DispatchQueue.concurrentPerform(iterations: 400) { _ in
            let a = stacks.run { here() }
            // On a slot stack while one was free, else on the caller's: never anywhere else.
            if onStack(a, stacks) {
                let base = stacks.all.first { a >= $0 && a < $0 + UInt(ScanStacks.size) }!
                seen.withLock { $0[base, default: 0] += 1 }
            }
        }
        XCTAssertGreaterThan(seen.withLock { $0.values.reduce(0, +) }, 0)
        // Every stack went back to the free list: four nested runs each still get one.
        func nest(_ k: Int) -> [UInt] {
            k == 0 ? [] : stacks.run { [here()] + nest(k - 1) }
        }
        let addresses = nest(4)
        XCTAssertEqual(Set(addresses.map { a in stacks.all.first { a >= $0 && a < $0 + UInt(ScanStacks.size) } }).count, 4)
        // A fifth nested run finds none free and runs where it is called.
        let fifth = stacks.run { stacks.run { stacks.run { stacks.run { stacks.run { here() } } } } }
        XCTAssertTrue(onStack(fifth, stacks), "the fifth run stays on the fourth's stack")
    }

    func testWithoutStacksTheBodyRunsInPlace() {
        let stacks = ScanStacks(count: 0)
        XCTAssertEqual(stacks.run { 42 }, 42)
    }
}

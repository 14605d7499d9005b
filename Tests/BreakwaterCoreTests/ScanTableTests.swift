import CProcessTuning
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The table of scans running in the directory in memory (ScanDirectory): shared by the scan worker
/// processes forked after it is made, so that each one's test for room counts the others' scans.
final class ScanTableTests: XCTestCase {
    func testACellTakenInAForkedProcessCountsHereUntilForgotten() throws {
        let table = try XCTUnwrap(bw_scan_table())
        let mine = bw_scan_table_enter(table, getpid())
        XCTAssertGreaterThanOrEqual(mine, 0)
        var ready: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ready), 0)
        // A child takes a cell (as a worker entering the directory in memory) and stays inside.
        let child = fork()
        if child == 0 {
            _ = bw_scan_table_enter(table, getpid())
            var b: UInt8 = 1
            _ = write(ready[1], &b, 1)
            pause()
            _exit(0)
        }
        XCTAssertGreaterThan(child, 0)
        var b: UInt8 = 0
        XCTAssertEqual(read(ready[0], &b, 1), 1)
        XCTAssertEqual(bw_scan_table_count(table), 2, "the child's scan counts in this process")
        // It dies inside (a crash): its cell stays taken until the host forgets it.
        kill(child, SIGKILL)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
        XCTAssertEqual(bw_scan_table_count(table), 2)
        bw_scan_table_forget(table, child)
        XCTAssertEqual(bw_scan_table_count(table), 1)
        bw_scan_table_leave(table, mine)
        XCTAssertEqual(bw_scan_table_count(table), 0)
        close(ready[0])
        close(ready[1])
    }

    func testAFullTableRefusesAnotherCell() throws {
        let table = try XCTUnwrap(bw_scan_table())
        for _ in 0..<Int(BW_SCAN_TABLE_CELLS) { XCTAssertGreaterThanOrEqual(bw_scan_table_enter(table, 7), 0) }
        XCTAssertEqual(bw_scan_table_enter(table, 7), -1)
        XCTAssertEqual(bw_scan_table_count(table), BW_SCAN_TABLE_CELLS)
        bw_scan_table_forget(table, 7)
        XCTAssertEqual(bw_scan_table_count(table), 0)
    }
}

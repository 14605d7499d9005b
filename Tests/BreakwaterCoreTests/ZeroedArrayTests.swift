import BreakwaterCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ZeroedArrayTests: XCTestCase {
    func testStartsZeroAndKeepsWhatIsWritten() {
        let a = ZeroedArray<UInt64>(zeros: 1000)
        XCTAssertEqual(a.count, 1000)
        XCTAssertTrue((0..<1000).allSatisfy { a[$0] == 0 })
        a[0] = 7
        a[999] = .max
        XCTAssertEqual(a[0], 7)
        XCTAssertEqual(a[999], .max)
        XCTAssertEqual(a[500], 0)
        XCTAssertEqual(a.bytes, 8000)
        let empty = ZeroedArray<Int>(zeros: 0)
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.bytes, 0)
    }

    /// The point of the type: a big table costs memory only where it is written.
    func testUnwrittenPagesAreNotResident() throws {
        func residentBytes() throws -> Int {
            let text = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8)
            let fields = text.split(separator: " ")
            return try XCTUnwrap(Int(fields[1])) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        let before = try residentBytes()
        let big = ZeroedArray<UInt8>(zeros: 256 << 20)
        big[0] = 1
        big[(256 << 20) - 1] = 2
        let after = try residentBytes()
        XCTAssertLessThan(
            after - before, 16 << 20,
            "a 256 MiB ZeroedArray with two elements written made \(after - before) bytes resident")
        XCTAssertEqual(big[0] + big[(256 << 20) - 1], 3)
    }
}

final class MallocArenasTests: XCTestCase {
    func testOnePerScanSlotUnlessTheEnvironmentSaysOtherwise() {
        XCTAssertEqual(MallocArenas.limit(workers: 2, environment: [:]), 2)
        XCTAssertEqual(MallocArenas.limit(workers: 1, environment: [:]), 2)
        XCTAssertEqual(
            MallocArenas.limit(workers: 6, environment: ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"]), 6)
        XCTAssertNil(MallocArenas.limit(workers: 2, environment: ["MALLOC_ARENA_MAX": "8"]))
        XCTAssertNil(MallocArenas.limit(workers: 2, environment: ["GLIBC_TUNABLES": "glibc.malloc.arena_max=4"]))
    }
}

final class MallocThreadCacheTests: XCTestCase {
    func testAddedToTheTunablesUnlessOneAlreadySetsTheThreadCache() {
        XCTAssertEqual(MallocThreadCache.tunables(adding: nil), "glibc.malloc.tcache_max=64")
        XCTAssertEqual(MallocThreadCache.tunables(adding: ""), "glibc.malloc.tcache_max=64")
        XCTAssertEqual(
            MallocThreadCache.tunables(adding: "glibc.malloc.arena_max=4"),
            "glibc.malloc.arena_max=4:glibc.malloc.tcache_max=64")
        // After the re-execution, or set by an administrator: left alone (no second re-execution).
        XCTAssertNil(MallocThreadCache.tunables(adding: "glibc.malloc.tcache_max=64"))
        XCTAssertNil(MallocThreadCache.tunables(adding: "glibc.malloc.arena_max=4:glibc.malloc.tcache_count=0"))
    }
}

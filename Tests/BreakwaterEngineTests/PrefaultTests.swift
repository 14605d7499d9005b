import XCTest
import CClamAVPrefault
#if canImport(Glibc)
import Glibc
#endif

/// The mmap64/munmap wrappers of Sources/CClamAVPrefault/prefault.c, called the way libclamav calls
/// them: through the symbols the dynamic linker finds first (the program's own), looked up with dlsym.
final class PrefaultTests: XCTestCase {
    typealias Map = @convention(c) (UnsafeMutableRawPointer?, Int, Int32, Int32, Int32, Int) -> UnsafeMutableRawPointer?
    typealias Unmap = @convention(c) (UnsafeMutableRawPointer?, Int) -> Int32

    var map: Map!
    var unmap: Unmap!
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    override func setUpWithError() throws {
        try XCTSkipUnless(bw_prefault_available() != 0, "sanitizer build: the sanitizer owns mmap")
        let m = try XCTUnwrap(dlsym(nil, "mmap64"), "no mmap64 in the global scope")
        let u = try XCTUnwrap(dlsym(nil, "munmap"), "no munmap in the global scope")
        map = unsafeBitCast(m, to: Map.self)
        unmap = unsafeBitCast(u, to: Unmap.self)
        bw_prefault_release_pool()
    }

    override func tearDown() {
        bw_prefault_set_limit(0)
        if bw_prefault_available() != 0 { bw_prefault_release_pool() }
    }

    func anonymous(_ length: Int) -> UnsafeMutableRawPointer? {
        let p = map(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? nil : p
    }

    func testUnmappedRegionIsReusedZeroedOnlyInsideAScan() throws {
        let length = 3 * page - 100
        bw_prefault_set_limit(1 << 20)
        let populated = bw_prefault_count(), reused = bw_prefault_reused()
        let p = try XCTUnwrap(anonymous(length))
        XCTAssertEqual(bw_prefault_count(), populated + 1)
        memset(p, 0xAB, length)
        XCTAssertEqual(unmap(p, length), 0)
        let q = try XCTUnwrap(anonymous(length))
        XCTAssertEqual(q, p, "a region of the same size comes back from the pool")
        XCTAssertEqual(bw_prefault_reused(), reused + 1)
        let bytes = UnsafeRawBufferPointer(start: q, count: 3 * page)
        XCTAssertTrue(bytes.allSatisfy { $0 == 0 }, "a reused region must be zeroed like a new map")
        XCTAssertEqual(unmap(q, length), 0)

        // Outside a scan, or over the limit, or another kind of map: passed through, nothing counted.
        bw_prefault_set_limit(0)
        let r = try XCTUnwrap(anonymous(length))
        XCTAssertNotEqual(r, p, "outside a scan nothing comes from the pool")
        XCTAssertEqual(unmap(r, length), 0)
        bw_prefault_set_limit(2 * page)
        let big = try XCTUnwrap(anonymous(3 * page))
        XCTAssertEqual(unmap(big, 3 * page), 0)
        XCTAssertEqual(bw_prefault_count(), populated + 1)
        XCTAssertEqual(bw_prefault_reused(), reused + 1)
    }

    func testPartlyUnmappedRegionIsNeverPooled() throws {
        bw_prefault_set_limit(1 << 20)
        let p = try XCTUnwrap(anonymous(4 * page))
        XCTAssertEqual(unmap(p + page, page), 0)   // a hole: the region is no longer whole
        XCTAssertEqual(unmap(p, page), 0)
        XCTAssertEqual(unmap(p + 2 * page, 2 * page), 0)
        let reused = bw_prefault_reused()
        let q = try XCTUnwrap(anonymous(4 * page))
        XCTAssertEqual(bw_prefault_reused(), reused, "a region with a hole must not come back")
        memset(q, 1, 4 * page)                     // all of it is mapped and writable
        XCTAssertEqual(unmap(q, 4 * page), 0)
    }

    func fixedRemap(_ address: UnsafeMutableRawPointer, _ length: Int) -> UnsafeMutableRawPointer? {
        let p = map(address, length, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? nil : p
    }

    /// fmap's aging maps fresh pages over part of its map (MAP_FIXED) to give memory back; within a
    /// region that was mapped populated that is skipped: the pages and their bytes stay.
    func testAgingRemapWithinAPopulatedRegionIsSkipped() throws {
        let length = 512 << 10 // over the pool's region size: such maps are tracked too
        bw_prefault_set_limit(1 << 20)
        let p = try XCTUnwrap(anonymous(length))
        memset(p, 0xCD, length)
        let skipped = bw_prefault_remaps_skipped()
        XCTAssertEqual(fixedRemap(p + 4 * page, 3 * page), p + 4 * page)
        XCTAssertEqual(bw_prefault_remaps_skipped(), skipped + 1)
        let kept = UnsafeRawBufferPointer(start: p + 4 * page, count: 3 * page)
        XCTAssertTrue(kept.allSatisfy { $0 == 0xCD }, "a skipped remap leaves the pages as they were")

        // Outside a scan the kernel remaps as asked (fresh zeros).
        bw_prefault_set_limit(0)
        XCTAssertEqual(fixedRemap(p, page), p)
        XCTAssertEqual(bw_prefault_remaps_skipped(), skipped + 1)
        XCTAssertTrue(UnsafeRawBufferPointer(start: p, count: page).allSatisfy { $0 == 0 })
        // A region with a hole unmapped in it is no longer handed out whole: no more skipping.
        bw_prefault_set_limit(1 << 20)
        XCTAssertEqual(unmap(p + 8 * page, page), 0)
        XCTAssertEqual(fixedRemap(p + page, page), p + page)
        XCTAssertEqual(bw_prefault_remaps_skipped(), skipped + 1)
        XCTAssertTrue(UnsafeRawBufferPointer(start: p + page, count: page).allSatisfy { $0 == 0 })
        XCTAssertEqual(unmap(p, length), 0)
    }

    func testReleasingThePoolUnmapsItsRegions() throws {
        bw_prefault_set_limit(1 << 20)
        let p = try XCTUnwrap(anonymous(2 * page))
        XCTAssertEqual(unmap(p, 2 * page), 0)
        bw_prefault_release_pool()
        // The region is gone: the kernel says so for an address that is not mapped.
        var vec: UInt8 = 0
        XCTAssertEqual(mincore(p, page, &vec), -1)
        XCTAssertEqual(errno, ENOMEM)
    }
}

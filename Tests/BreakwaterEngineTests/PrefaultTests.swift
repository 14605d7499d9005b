import BreakwaterCore
import CClamAVPrefault
import XCTest

@testable import BreakwaterEngine

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
        // The wrapper is off until the gate turns it on: on this libclamav (1.4.6) it does.
        let status = Prefault.ensureDecided(limits: EngineLimits())
        XCTAssertTrue(status.enabled, status.summary)
        XCTAssertEqual(bw_prefault_enabled(), 1)
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
        let populated = bw_prefault_count()
        let reused = bw_prefault_reused()
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
        XCTAssertEqual(unmap(p + page, page), 0)  // a hole: the region is no longer whole
        XCTAssertEqual(unmap(p, page), 0)
        XCTAssertEqual(unmap(p + 2 * page, 2 * page), 0)
        let reused = bw_prefault_reused()
        let q = try XCTUnwrap(anonymous(4 * page))
        XCTAssertEqual(bw_prefault_reused(), reused, "a region with a hole must not come back")
        memset(q, 1, 4 * page)  // all of it is mapped and writable
        XCTAssertEqual(unmap(q, 4 * page), 0)
    }

    func fixedRemap(_ address: UnsafeMutableRawPointer, _ length: Int) -> UnsafeMutableRawPointer? {
        let p = map(address, length, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? nil : p
    }

    /// fmap's aging maps fresh pages over part of its map (MAP_FIXED) to give memory back; within a
    /// region that was mapped populated that is skipped: the pages and their bytes stay.
    func testAgingRemapWithinAPopulatedRegionIsSkipped() throws {
        let length = 512 << 10  // over the pool's region size: such maps are tracked too
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

    /// Turned off, the wrapper passes everything through: a scan's limit is taken as 0, nothing is
    /// populated, pooled or spared a remap.
    func testTurnedOffTheWrapperPassesThrough() throws {
        defer { bw_prefault_enable(1) }
        bw_prefault_enable(0)
        bw_prefault_set_limit(1 << 20)
        let populated = bw_prefault_count()
        let reused = bw_prefault_reused()
        let skipped = bw_prefault_remaps_skipped()
        let p = try XCTUnwrap(anonymous(4 * page))
        memset(p, 0xCD, 4 * page)
        XCTAssertEqual(fixedRemap(p, page), p)
        XCTAssertTrue(UnsafeRawBufferPointer(start: p, count: page).allSatisfy { $0 == 0 }, "the kernel remapped it")
        XCTAssertEqual(unmap(p, 4 * page), 0)
        let q = try XCTUnwrap(anonymous(4 * page))
        XCTAssertEqual(unmap(q, 4 * page), 0)
        XCTAssertEqual(bw_prefault_count(), populated)
        XCTAssertEqual(bw_prefault_reused(), reused)
        XCTAssertEqual(bw_prefault_remaps_skipped(), skipped)
    }

    /// The version gate is a pure function of cl_retver()'s string: only a 1.4.x release is in range.
    func testVersionsOutsideTheTestedRangeTurnItOff() {
        for v in ["1.4.0", "1.4.6", "1.4.7", "1.4.12"] {
            XCTAssertNil(Prefault.versionRefusal(v), v)
        }
        for v in ["1.5.0", "1.3.2", "2.4.6", "0.104.4", "1.0.9"] {
            XCTAssertEqual(Prefault.versionRefusal(v), "libclamav \(v) is outside the tested range 1.4.x", v)
        }
        for v in ["1.4.6-rc1", "1.4", "1.4.6.1", "", "devel-20240101", "1.4.x", "1.4.-1", "+1.4.6", "1.4.6\u{1B}[2J"] {
            let refusal = Prefault.versionRefusal(v)
            XCTAssertNotNil(refusal, v)
            XCTAssertTrue(refusal?.contains("is not a release version") ?? false, v)
            XCTAssertFalse(refusal?.contains("\u{1B}") ?? true, "escaped for the log: \(refusal ?? "")")
        }
        // Off outside the range, with no self-test run; off with prefault-size 0 or without the wrapper.
        let out = Prefault.decide(
            version: "1.5.0", available: true, prefaultSize: 16 << 20,
            selfTest: {
                XCTFail("no self-test outside the range")
                return .success("")
            })
        XCTAssertFalse(out.enabled)
        XCTAssertEqual(
            out.summary, "prefault: off (libclamav 1.5.0 is outside the tested range 1.4.x; libclamav pages on its own)"
        )
        let zero = Prefault.decide(
            version: "1.4.6", available: true, prefaultSize: 0,
            selfTest: {
                XCTFail("no self-test for prefault-size 0")
                return .success("")
            })
        XCTAssertEqual(zero, PrefaultStatus(enabled: false, reason: "prefault-size is 0"))
        XCTAssertFalse(
            Prefault.decide(
                version: "1.4.6", available: false, prefaultSize: 16 << 20,
                selfTest: { .success("") }
            ).enabled)
        // In range: the self-test decides.
        let failed = Prefault.decide(
            version: "1.4.6", available: true, prefaultSize: 16 << 20,
            selfTest: { .failure(.init(message: "read back wrong")) })
        XCTAssertFalse(failed.enabled)
        XCTAssertEqual(failed.reason, "libclamav 1.4.6: self-test failed: read back wrong; libclamav pages on its own")
        let passed = Prefault.decide(
            version: "1.4.6", available: true, prefaultSize: 16 << 20, selfTest: { .success("proof") })
        XCTAssertEqual(passed, PrefaultStatus(enabled: true, reason: "libclamav 1.4.6, tested range 1.4.x; proof"))
    }

    /// The start-up self-test against the real libclamav: a 9 MiB file scanned through a populated map
    /// whose aging remaps are skipped reads both markers back.
    func testSelfTestPassesOnThisLibclamav() throws {
        XCTAssertEqual(ClamEngine.libraryVersion.prefix(4), "1.4.", "this machine's libclamav is the tested one")
        let skipped = bw_prefault_remaps_skipped()
        switch Prefault.runSelfTest(temporaryDirectory: nil) {
        case .success(let proof):
            XCTAssertTrue(proof.hasPrefix("self-test passed: a 9 MiB file read back through "), proof)
        case .failure(let why):
            XCTFail(why.message)
        }
        XCTAssertGreaterThan(bw_prefault_remaps_skipped(), skipped)
        XCTAssertEqual(bw_prefault_enabled(), 1, "the self-test leaves the wrapper as it found it")
        XCTAssertEqual(ClamEngine.prefaultStatus?.enabled, true)
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

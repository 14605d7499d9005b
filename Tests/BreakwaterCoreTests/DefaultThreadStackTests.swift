import CProcessTuning
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The daemon gives libmilter's session threads small stacks by setting the process default before
/// smfi_main (MilterDaemon.sessionThreadStack says why): a thread created with no attributes of its
/// own, as libmilter creates its threads, must get the size set.
final class DefaultThreadStackTests: XCTestCase {
    func testThreadsWithoutAttributesGetTheDefaultStackSize() throws {
        let original = bw_default_thread_stack_size()
        XCTAssertGreaterThan(original, 0)
        defer { XCTAssertEqual(bw_set_default_thread_stack_size(original), 0) }

        let size = 256 << 10
        XCTAssertNotEqual(original, size, "the test needs a default other than the size it sets")
        XCTAssertEqual(bw_set_default_thread_stack_size(size), 0)
        XCTAssertEqual(bw_default_thread_stack_size(), size)

        // A thread created as libmilter creates its own: pthread_create with no attributes.
        final class Box: @unchecked Sendable { var size = 0 }
        let box = Box()
        var tid = pthread_t()
        let rc = pthread_create(
            &tid, nil,
            { arg in
                let box = Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue()
                box.size = bw_current_thread_stack_size()
                return nil
            }, Unmanaged.passUnretained(box).toOpaque())
        XCTAssertEqual(rc, 0)
        pthread_join(tid, nil)
        // glibc may hand the thread a cached stack of a thread that ended, of at least the size asked
        // and at most four times it (another test's 1 MB thread, say): never the 8 MB default.
        XCTAssertGreaterThanOrEqual(box.size, size)
        XCTAssertLessThanOrEqual(box.size, 4 * size)
        XCTAssertLessThan(box.size, original)
    }

    func testAStackBelowTheMinimumIsRefused() {
        let original = bw_default_thread_stack_size()
        XCTAssertEqual(bw_set_default_thread_stack_size(1024), EINVAL)
        XCTAssertEqual(bw_default_thread_stack_size(), original, "a refused size leaves the default as it was")
    }
}

import BreakwaterCore
import CStack
import Synchronization

/// One stack per scan slot, on which `decide` runs each scan (the switch is `Sources/CStack`).
///
/// libmilter answers each busy session on a thread of its own, and the scan runs on the thread that
/// took end-of-message. libclamav touches a few hundred KB of stack in a scan, and a thread's touched
/// stack stays resident as long as the thread lives: with 200 sessions, 200 deep stacks. Admission lets
/// at most one scan per slot run at once, so one stack per slot is always free when a scan starts; the
/// switch is two `swapcontext` calls, no thread hand-off.
final class ScanStacks: Sendable {
    /// Each stack's size: what a thread gets by default (libclamav recurses into nested archives).
    static let size = 8 << 20
    /// Addresses of the stacks not in use.
    private let free: Locked<[UInt]>
    /// Addresses of every stack made.
    let all: [UInt]
    /// Scans that ran on a slot stack (`breakwater status` shows it beside the scans done).
    let scansOnStacks = Atomic<Int>(0)

    /// `count` stacks (as many as there are scan slots); fewer when the system refuses the mappings,
    /// in which case the scans that find none run on their own thread's stack.
    init(count: Int) {
        var made: [UInt] = []
        if bw_stack_switches() != 0 {
            for _ in 0..<max(0, count) {
                guard let s = bw_stack_create(ScanStacks.size) else { break }
                made.append(UInt(bitPattern: s))
            }
        }
        all = made
        free = Locked(made)
    }

    deinit {
        for s in all { bw_stack_destroy(UnsafeMutableRawPointer(bitPattern: s), ScanStacks.size) }
    }

    /// Runs `body` on a free stack (on the caller's own when none is free, or under a sanitizer) and
    /// returns its result.
    func run<R>(_ body: () -> R) -> R {
        guard let address = free.withLock({ $0.popLast() }), let stack = UnsafeMutableRawPointer(bitPattern: address) else {
            return body()
        }
        defer { free.withLock { $0.append(address) } }
        var result: R?
        let ran = withoutActuallyEscaping(body) { body -> Bool in
            // The C side gets a pointer to this local closure: no object is allocated per scan.
            var call: () -> Void = { result = body() }
            return withUnsafeMutablePointer(to: &call) { p in
                bw_stack_run(stack, ScanStacks.size, { raw in
                    raw!.assumingMemoryBound(to: (() -> Void).self).pointee()
                }, UnsafeMutableRawPointer(p)) == 0
            }
        }
        guard ran, let result else { return body() }
        scansOnStacks.add(1, ordering: .relaxed)
        return result
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A fixed-size array of plain values that starts all zero and costs memory only where it is written.
///
/// `[T](repeating: 0, count: n)` writes every element at start, so a table sized for its worst case
/// is resident from the first second. This one comes from `calloc`: a large block is a fresh anonymous
/// map whose pages the kernel supplies, already zero, on first write. The wave store keeps its big
/// per-entry tables in these, so a daemon that has seen a few hundred distinct messages holds a few
/// hundred entries' worth of memory, not the whole `wave-store-size` (which stays the bound).
///
/// Reference semantics: copies share the storage. Every access is bounds-checked. Not synchronised:
/// its owner serialises access (the wave store's lock).
package final class ZeroedArray<Element: BitwiseCopyable>: @unchecked Sendable {
    package let count: Int
    private let base: UnsafeMutablePointer<Element>

    /// `count` zero elements. Stops the process when the memory cannot be had, as an Array would.
    package init(zeros count: Int) {
        precondition(count >= 0, "ZeroedArray: negative count")
        self.count = count
        let n = max(count, 1)
        guard let raw = calloc(n, MemoryLayout<Element>.stride) else {
            fatalError("ZeroedArray: out of memory for \(n) elements of \(MemoryLayout<Element>.stride) bytes")
        }
        base = raw.bindMemory(to: Element.self, capacity: n)
    }

    deinit { free(base) }

    /// Bytes reserved (all of them, resident or not).
    package var bytes: Int { count * MemoryLayout<Element>.stride }

    package subscript(i: Int) -> Element {
        get {
            precondition(i >= 0 && i < count, "ZeroedArray: index \(i) out of range 0..<\(count)")
            return base[i]
        }
        set {
            precondition(i >= 0 && i < count, "ZeroedArray: index \(i) out of range 0..<\(count)")
            base[i] = newValue
        }
    }
}

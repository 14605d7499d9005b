import BreakwaterCore

/// The texts of the last messages the daemon accepted clean, so that `breakwater waves promote` can
/// check a wave's suggested signature against real recent mail before adding it: a signature that
/// would have matched one of them is refused unless forced.
///
/// Each entry is the message's wave-fingerprint sample (at most `WaveFingerprintBuilder.sampleLimit`
/// bytes of normalised text, the text a suggestion is built from) and its MinHash signature. Keeping
/// them costs the message path a lock and two retains: the sample and signature were made for the
/// fingerprint anyway. Memory: at most `capacity` samples (about 2.3 KB each).
package final class RecentHam: Sendable {
    package static let defaultCapacity = 256

    struct Item {
        var sample: String
        var signature: [UInt32]
    }

    package let capacity: Int
    private let state: Locked<(items: [Item], next: Int)>

    package init(capacity: Int = RecentHam.defaultCapacity) {
        self.capacity = max(1, capacity)
        var items: [Item] = []
        items.reserveCapacity(self.capacity)
        state = Locked((items, 0))
    }

    /// Remembers one message that was accepted clean (the oldest goes when full).
    package func add(_ fp: WaveFingerprint) {
        let item = Item(sample: fp.sample, signature: fp.signature)
        let old: Item? = state.withLock { s in
            if s.items.count < capacity {
                s.items.append(item)
                return nil
            }
            let o = s.items[s.next]
            s.items[s.next] = item
            s.next = (s.next + 1) % capacity
            return o
        }
        _ = old  // released outside the lock
    }

    package var count: Int { state.withLock { $0.items.count } }

    /// The samples held, except those similar to one of `excluding` (wave templates, as the store
    /// keeps them: the low 16 bits of each value): the first messages of a wave were accepted before
    /// it was one, and they are not ham. Similar means `minEqualBins` or more equal values.
    package func samples(excluding: [[UInt16]], minEqualBins: Int) -> [String] {
        let items = state.withLock { $0.items }
        return items.compactMap { item in
            for t in excluding where t.count == item.signature.count {
                var equal = 0
                for i in 0..<t.count where t[i] == UInt16(truncatingIfNeeded: item.signature[i]) { equal += 1 }
                if equal >= minEqualBins { return nil }
            }
            return item.sample
        }
    }
}

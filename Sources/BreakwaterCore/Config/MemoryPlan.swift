/// What a configuration can make the daemon hold at most, by part (`breakwater check-config`), and
/// the memory its budgets still allow it to take (a reload's `auto` choice).
public struct MemoryPlan: Sendable {
    /// libclamav's working memory for one scan, estimated as 3 x max-message-size (about 75M was
    /// measured on a 25M message: the message, its decoded parts and libclamav's maps of them).
    public static func scanWorkingMemory(_ c: Config) -> UInt64 { 3 &* c.maxMessageSize }

    /// Memory the budgets may still take on top of what the process holds now: the memory budget not
    /// in use and the scan working memory of the idle slots.
    public static func headroom(_ c: Config, buffered: UInt64, busySlots: Int) -> UInt64 {
        let budget = c.memoryBudget > buffered ? c.memoryBudget - buffered : 0
        let idle = UInt64(max(0, c.workers - busySlots))
        return budget &+ idle &* scanWorkingMemory(c)
    }
}

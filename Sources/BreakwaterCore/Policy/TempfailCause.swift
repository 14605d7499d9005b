/// Why a message was not (fully) scanned or could not be answered normally.
package enum TempfailCause: String, Sendable, CaseIterable {
    case busy
    case memoryBudget = "memory_budget"
    case timeout
    case scanError = "scan_error"
    case size
    /// The spool budget (`spool-budget`) was spent: the message could not be held on disk.
    case spoolBudget = "spool_budget"
    /// More milter sessions open than `max-sessions`: the new one is answered at connect.
    case sessions
    /// A signature whose action is tempfail (`action GLOB tempfail`): held back on purpose.
    case policy
    /// A message of a mail wave, with `wave-action = tempfail`.
    case wave
}

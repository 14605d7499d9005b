extension StringProtocol {
    /// The string without leading and trailing spaces, tabs, CR and LF.
    public var trimmed: String {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !ws($0) }) else { return "" }
        let last = lastIndex(where: { !ws($0) })!
        return String(self[first...last])
    }
}

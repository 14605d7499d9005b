/// Values written as a config file writes them: the inverse of the key parsers in `Config`.
enum ConfigText {
    /// `20s`, `500ms`.
    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : "\(Int((s * 1000).rounded()))ms"
    }

    /// `10m`, or seconds when not a whole number of minutes.
    static func minutes(_ s: Double) -> String {
        s.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(s / 60))m" : seconds(s)
    }

    static func yesNo(_ b: Bool) -> String { b ? "yes" : "no" }

    static func list(_ items: [String]) -> String { items.joined(separator: ",") }

    /// `0660`.
    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(1, 4 - digits.count)) + digits
    }

    static func heuristics(_ h: Heuristics) -> String {
        h.isEmpty ? "none" : list(Heuristics.names.filter { h.contains($0.1) }.map(\.0))
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Sizes written as a number of bytes with an optional K, M or G suffix (powers of 1024).
package enum ByteSize {
    package struct ParseError: Error, CustomStringConvertible, Sendable {
        package let description: String
    }
    package static func parse(_ text: String) throws(ParseError) -> UInt64 {
        let s = text.trimmed
        guard !s.isEmpty else { throw ParseError(description: "empty size") }
        var digits = Substring(s)
        var mult: UInt64 = 1
        switch s.last!.uppercased() {
        case "K":
            mult = 1 << 10
            digits = digits.dropLast()
        case "M":
            mult = 1 << 20
            digits = digits.dropLast()
        case "G":
            mult = 1 << 30
            digits = digits.dropLast()
        default: break
        }
        guard let n = UInt64(digits), n <= UInt64.max / mult else {
            if s.count > 1, let d = s.firstIndex(where: { !$0.isNumber }), let num = UInt64(s[..<d]),
                let unit = s[d...].first,
                "KkMmGg".contains(unit)
            {
                throw ParseError(description: "'\(s)' is not a size: write \(num)\(unit.uppercased()), not \(s)")
            }
            throw ParseError(description: "'\(s)' is not a size (a number of bytes, optionally followed by K, M or G)")
        }
        return n * mult
    }
    package static func format(_ n: UInt64) -> String {
        if n >= 1 << 30 && n % (1 << 30) == 0 { return "\(n >> 30)G" }
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20)M" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10)K" }
        return "\(n)"
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Times as ops read them.
package enum Timestamp {
    /// `2025-05-01T12:34:56Z` for seconds since the epoch.
    package static func iso8601(_ seconds: Double) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ n: Int32, _ w: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return
            "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))Z"
    }

    /// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
    package static func duration(_ seconds: Double) -> String {
        let s = max(0, Int(seconds))
        let d = s / 86400
        let h = s / 3600 % 24
        let m = s / 60 % 60
        let sec = s % 60
        if d > 0 { return "\(d)d \(h)h" }
        if h > 0 { return "\(h)h \(m)m" }
        if m > 0 { return "\(m)m \(sec)s" }
        return "\(sec)s"
    }
}

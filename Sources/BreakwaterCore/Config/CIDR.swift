#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 network.
package struct CIDR: Sendable, Equatable, CustomStringConvertible {
    package let address: [UInt8]  // 4 or 16 bytes
    package let prefix: Int

    package init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let addr = CIDR.parseAddress(String(parts[0])) else { return nil }
        let maxPrefix = addr.count * 8
        var p = maxPrefix
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxPrefix).contains(n) else { return nil }
            p = n
        }
        address = addr
        prefix = p
    }

    package var description: String { "\(CIDR.format(address))/\(prefix)" }

    package func contains(_ ip: [UInt8]) -> Bool {
        var ip = ip
        // IPv4-mapped IPv6 (::ffff:a.b.c.d) matches IPv4 networks.
        if address.count == 4 && ip.count == 16 && ip[0..<10].allSatisfy({ $0 == 0 }) && ip[10] == 0xff
            && ip[11] == 0xff
        {
            ip = Array(ip[12...])
        }
        guard ip.count == address.count else { return false }
        var bits = prefix
        for i in 0..<address.count where bits > 0 {
            let take = min(8, bits)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - take))
            if ip[i] & mask != address[i] & mask { return false }
            bits -= take
        }
        return true
    }

    package func contains(_ text: String) -> Bool {
        guard let ip = CIDR.parseAddress(text) else { return false }
        return contains(ip)
    }

    package static func parseAddress(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func format(_ a: [UInt8]) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        let family = a.count == 4 ? AF_INET : AF_INET6
        _ = a.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buf, socklen_t(buf.count)) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A TCP address to listen on, written `HOST:PORT`: an IPv4 address (`127.0.0.1:9897`), an IPv6
/// address in brackets (`[::1]:9897`) or `localhost:PORT`. Names are not resolved: a listener's address
/// must not depend on DNS.
package struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    package let address: [UInt8]
    package let port: UInt16

    package init(address: [UInt8], port: UInt16) {
        precondition(address.count == 4 || address.count == 16)
        self.address = address
        self.port = port
    }

    package var isIPv6: Bool { address.count == 16 }

    package var description: String {
        let host = CIDR.format(address)
        return isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    package struct ParseError: Error, CustomStringConvertible, Sendable {
        package let description: String
    }

    package static func parse(_ text: String) throws(ParseError) -> ListenAddress {
        let hint = "write HOST:PORT, e.g. 127.0.0.1:9897 or [::1]:9897"
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ParseError(description: "'\(text)': missing ']' after the IPv6 address; \(hint)")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ParseError(description: "'\(text)': no port; \(hint)") }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ParseError(description: "'\(text)': no port; \(hint)")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                throw ParseError(description: "'\(text)': put an IPv6 address in brackets; \(hint)")
            }
        }
        guard let port = UInt16(portText), port > 0 else {
            throw ParseError(description: "'\(text)': '\(portText)' is not a port (1-65535); \(hint)")
        }
        if host == "localhost" { return ListenAddress(address: [127, 0, 0, 1], port: port) }
        guard !host.isEmpty, let bytes = CIDR.parseAddress(String(host)),
            bytes.count == (text.hasPrefix("[") ? 16 : 4)
        else {
            throw ParseError(description: "'\(text)': '\(host)' is not an IP address (names are not resolved); \(hint)")
        }
        return ListenAddress(address: bytes, port: port)
    }
}

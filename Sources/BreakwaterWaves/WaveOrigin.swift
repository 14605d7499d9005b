import BreakwaterCore

/// Where a message came from, as the store counts it: the envelope sender and the client network
/// (/24 for IPv4, /48 for IPv6: what one site is commonly given), both hashed. Only networks make a
/// wave's sources; senders are shown.
package struct WaveOrigin: Sendable {
    package var sender: UInt64
    package var network: UInt64

    package init(sender: UInt64, network: UInt64) {
        self.sender = sender
        self.network = network
    }

    /// `clientIP`: 4 or 16 bytes (IPv4-mapped IPv6 counts as IPv4); `clientAddress` is used when the
    /// address is unknown (a unix-socket client).
    package init(sender: String, clientIP: [UInt8]?, clientAddress: String) {
        self.sender = WaveOrigin.hash(Array(AddressList.bare(sender).utf8), salt: 1)
        if var ip = clientIP {
            if ip.count == 16 && ip[0..<10].allSatisfy({ $0 == 0 }) && ip[10] == 0xff && ip[11] == 0xff {
                ip = Array(ip[12...])
            }
            let prefix = ip.count == 4 ? ip.prefix(3) : ip.prefix(6)
            self.network = WaveOrigin.hash(Array(prefix), salt: UInt64(ip.count))
        } else {
            self.network = WaveOrigin.hash(Array(clientAddress.utf8), salt: 3)
        }
    }

    static func hash(_ bytes: [UInt8], salt: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ (salt &* 0x9E37_79B9_7F4A_7C15)
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return waveMix(h)
    }
}

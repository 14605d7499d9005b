import BreakwaterCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// systemd readiness for `Type=notify` (breakwater.service): `READY=1` once the milter socket listens
/// and the other services have started, `STOPPING=1` when the daemon stops. systemd then starts the units
/// ordered after Breakwater (Postfix) only when it accepts connections. Nothing happens unless systemd
/// set `NOTIFY_SOCKET`, so the daemon runs the same by hand or under another supervisor.
package final class SystemdNotify: DaemonService {
    let path: String

    /// Registers the service when systemd asks for notifications; install it after every other service.
    package static func install(on daemon: MilterDaemon) {
        guard let p = getenv("NOTIFY_SOCKET"), p.pointee != 0 else { return }
        daemon.services.append(SystemdNotify(path: String(cString: p)))
    }

    init(path: String) { self.path = path }

    package func start(_ daemon: MilterDaemon) throws {
        if !Self.send("READY=1\nMAINPID=\(getpid())\nSTATUS=listening on \(daemon.config.socket)", to: path) {
            daemon.logger.warning("systemd notification to \(path) failed: \(FileWalk.errnoString())")
        }
    }

    package func stop() {
        Self.send("STOPPING=1", to: path)
    }

    /// Sends one datagram to the notification socket (a path, or `@name` in the abstract namespace).
    @discardableResult
    package static func send(_ message: String, to path: String) -> Bool {
        var bytes = Array(path.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@") else { return false }
        var addr = sockaddr_un()
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        addr.sun_family = sa_family_t(AF_UNIX)
        let abstract = first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withCString { m in sendto(fd, m, strlen(m), Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent >= 0
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The user behind `sudo`, when an ops command runs as root on someone else's behalf.
///
/// sudo sets SUDO_UID and SUDO_GID. A file named on the command line (`--config FILE`) is then
/// opened with that user's permissions (effective user, group and supplementary groups switched for
/// the `open`, then back to root), so a command allowed through sudo cannot be used to read a file the
/// user could not read: a config parse error quotes the offending line, which would print, say, the
/// first line of /etc/shadow. Once open, the file is read as root through that descriptor.
package struct InvokingUser: Sendable, CustomStringConvertible {
    package let uid: uid_t
    package let gid: gid_t
    package let name: String?

    package var description: String { name.map { "\($0), uid \(uid)" } ?? "uid \(uid)" }

    /// The user who ran sudo, or nil when the command does not run as root on behalf of another user
    /// (no SUDO_UID, SUDO_UID=0, or not root).
    package static func fromSudo(environment: [String: String]? = nil) -> InvokingUser? {
        func env(_ k: String) -> String? {
            if let environment { return environment[k] }
            return getenv(k).map { String(cString: $0) }
        }
        guard geteuid() == 0, let u = env("SUDO_UID").flatMap({ UInt32($0) }), u != 0 else { return nil }
        let pw = getpwuid(u)
        let gid = env("SUDO_GID").flatMap { UInt32($0) } ?? pw.map { $0.pointee.pw_gid } ?? u
        return InvokingUser(uid: u, gid: gid, name: pw.flatMap { $0.pointee.pw_name.map { String(cString: $0) } })
    }

    /// ` (as the user who ran sudo, NAME, uid N)` after an error when `invoker` is set; empty otherwise.
    package static func note(_ invoker: InvokingUser?) -> String {
        invoker.map { " (read as the user who ran sudo: \($0))" } ?? ""
    }

    /// The user's groups: the primary one and, when the account exists, its supplementary ones.
    package var groups: [gid_t] {
        guard let name else { return [gid] }
        var n: Int32 = 64
        while true {
            var list = [gid_t](repeating: 0, count: Int(n))
            var count = n
            if getgrouplist(name, gid, &list, &count) >= 0 { return Array(list.prefix(Int(count))) }
            if count <= n { return [gid] }
            n = count
        }
    }

    /// Opens `path` read-only with this user's permissions (the path's directories included); returns
    /// the descriptor, or -1 with errno set.
    package func open(_ path: String, flags: Int32 = O_RDONLY | O_CLOEXEC) -> Int32 {
        let savedEgid = getegid()
        let savedCount = getgroups(0, nil)
        var saved = [gid_t](repeating: 0, count: Int(max(0, savedCount)))
        let got = saved.isEmpty ? 0 : getgroups(Int32(saved.count), &saved)
        let mine = groups
        guard got >= 0, setgroups(mine.count, mine) == 0 else { return -1 }
        var fd: Int32 = -1
        var e: Int32 = 0
        if setegid(gid) == 0 {
            if seteuid(uid) == 0 {
                fd = Glibc.open(path, flags)
                e = errno
                // Back to root: the real and saved user ids are still 0. Going on as anyone else is not an option.
                guard seteuid(0) == 0 else { fatalError("cannot return to root after opening \(path) as \(self)") }
            } else {
                e = errno
            }
            guard setegid(savedEgid) == 0 else { fatalError("cannot restore the group after opening \(path)") }
        } else {
            e = errno
        }
        guard setgroups(Int(got), saved) == 0 else { fatalError("cannot restore the groups after opening \(path)") }
        errno = e
        return fd
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads (files in a directory another user owns: DirectoryHandle).
package enum FileIO {
    /// The file's bytes; nil when it cannot be read (errno says why), is not a regular file, or is
    /// larger than `limit` (errno EFBIG).
    /// With `invoker` (a command run through sudo), the file is opened with that user's permissions.
    package static func read(_ path: String, limit: Int = 64 << 20, as invoker: InvokingUser? = nil) -> [UInt8]? {
        // Non-blocking open: a FIFO in place of a file must not hang the command (refused below).
        let flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
        let fd = invoker.map { $0.open(path, flags: flags) } ?? open(path, flags)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let fl = fcntl(fd, F_GETFL)
        if fl >= 0 { _ = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) }
        guard Int(st.st_size) <= limit else {
            errno = EFBIG
            return nil
        }
        return readAll(fd: fd, limit: limit, sizeHint: Int(st.st_size))
    }

    /// Everything `fd` gives until end of file (standard input, a pipe, an open file); nil on a read
    /// error (errno says which) or past `limit` bytes (errno EFBIG).
    package static func readAll(fd: Int32, limit: Int = 64 << 20, sizeHint: Int = 0) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(min(sizeHint, limit))
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while out.count <= limit {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            out += buf[0..<n]
        }
        guard out.count <= limit else {
            errno = EFBIG
            return nil
        }
        return out
    }
}

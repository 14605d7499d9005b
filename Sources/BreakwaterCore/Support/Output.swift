#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to stdout/stderr (the C `stderr` global is off limits in Swift 6 mode).
package enum Output {
    package static func out(_ s: String) { write(fd: 1, s) }
    package static func err(_ s: String) { write(fd: 2, s) }
    package static func write(fd: Int32, _ s: String) {
        var s = s
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                off += n
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension dirent {
    /// The entry's file name (`d_name`, a NUL-terminated array of at most 256 bytes).
    package var name: String {
        withUnsafePointer(to: d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }
}

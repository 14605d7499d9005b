#if canImport(Glibc)
import Glibc
#endif

/// Where the signature sets live.
package enum SignatureLocations {
    package static let installedShipped = "/usr/share/breakwater/signatures"
    package static let defaultLocal = "/var/lib/breakwater/signatures"

    /// The shipped set: the installed copy, or the checkout's `Signatures/` when the program runs from a
    /// source tree (its binary under `<checkout>/.build`).
    package static func shipped(executable: String = currentExecutable()) -> String {
        if let r = executable.firstRange(of: "/.build") {
            let root = String(executable[..<r.lowerBound])
            let candidate = root + "/Signatures"
            if isDirectory(candidate) { return candidate }
        }
        return installedShipped
    }

    package static func currentExecutable() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n <= 0 { return CommandLine.arguments.first ?? "" }
        return buf.withUnsafeBufferPointer { p in
            String(decoding: UnsafeRawBufferPointer(start: p.baseAddress, count: n), as: UTF8.self)
        }
    }

    package static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The default set: shipped plus the ops directory when it holds signatures (the package creates it
    /// empty, and libclamav refuses a directory without database files).
    package static func defaults(local: String = defaultLocal) -> [String] {
        var dirs = [shipped()]
        if hasDatabaseFiles(local) { dirs.append(local) }
        return dirs
    }

    /// The file name extensions libclamav loads from a signature directory.
    package static let databaseExtensions: Set<String> = [
        "cvd", "cld", "cud", "db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ndb", "ndu",
        "ldb", "ldu", "cdb", "cbc", "idb", "zmd", "rmd", "sdb", "pdb", "gdb", "wdb", "ftm", "cfg", "cat",
        "crb", "fp", "sfp", "ign", "ign2", "yar", "yara", "pwdb", "imp", "ioc",
    ]

    /// True when `path` is a directory holding at least one file libclamav would load.
    package static func hasDatabaseFiles(_ path: String) -> Bool {
        guard let dir = opendir(path) else { return false }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = entry.pointee.name
            if let dot = name.lastIndex(of: "."), name.first != ".",
                databaseExtensions.contains(String(name[name.index(after: dot)...]).lowercased())
            {
                return true
            }
        }
        return false
    }
}

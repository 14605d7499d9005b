#if canImport(Glibc)
import Glibc
#endif

/// What the signature directories look like, cheaply: for each database file its inode, size, and
/// modification and change times (a `readdir` and one `stat` per file, nothing read). Two states
/// differ when a database file was added, removed, replaced (a new inode), rewritten, touched or had
/// its permissions changed. Files libclamav would not load (temporary files, lock files) are ignored.
package struct SignatureDirectoryState: Sendable, Equatable {
    package struct Stamp: Sendable, Equatable {
        package var inode: UInt64
        package var size: Int64
        package var modified: Int64  // nanoseconds
        package var changed: Int64  // nanoseconds
    }

    package private(set) var directories: [String]
    /// Directories that could not be read (missing, or no permission).
    package private(set) var unreadable: Set<String>
    /// Full path -> stamp.
    package private(set) var files: [String: Stamp]

    package init(directories: [String], unreadable: Set<String>, files: [String: Stamp]) {
        self.directories = directories
        self.unreadable = unreadable
        self.files = files
    }

    package static func capture(_ directories: [String]) -> SignatureDirectoryState {
        var unreadable = Set<String>()
        var files: [String: Stamp] = [:]
        var seen = Set<String>()
        for dir in directories where seen.insert(dir).inserted {
            guard let d = opendir(dir) else {
                unreadable.insert(dir)
                continue
            }
            let base = dir.hasSuffix("/") ? dir : dir + "/"
            while let entry = readdir(d) {
                let name = entry.pointee.name
                guard name.first != ".", SignatureLocations.databaseExtensions.contains(SignatureCatalog.fileType(name))
                else { continue }
                var st = stat()
                guard stat(base + name, &st) == 0 else { continue }  // removed meanwhile
                files[base + name] = Stamp(
                    inode: UInt64(st.st_ino), size: Int64(st.st_size),
                    modified: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                    changed: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))
            }
            closedir(d)
        }
        return SignatureDirectoryState(directories: Array(seen).sorted(), unreadable: unreadable, files: files)
    }

    /// What changed since `old`, one phrase per file or directory (`added /x/a.ndb`), sorted; empty
    /// when nothing did.
    package func changes(since old: SignatureDirectoryState) -> [String] {
        var out: [String] = []
        for (path, stamp) in files {
            if let before = old.files[path] {
                if before != stamp { out.append("changed \(path)") }
            } else {
                out.append("added \(path)")
            }
        }
        for path in old.files.keys where files[path] == nil { out.append("removed \(path)") }
        for dir in unreadable.subtracting(old.unreadable) { out.append("cannot read \(dir)") }
        for dir in old.unreadable.subtracting(unreadable) { out.append("can read \(dir) again") }
        return out.sorted()
    }
}

import BreakwaterCore

#if canImport(Glibc)
import Glibc
#endif

/// Private copies of the signature files, one set per load: after an engine was built, its files are
/// copied, and the copy is kept only when no file changed from before the build to after the copy (a
/// verified copy: exactly the set that loaded). A blocking reload frees the engine before it builds
/// the next; when the new set does not load, the set in service is built again from its copy,
/// whatever happened to the directories meanwhile.
///
/// The copies live in a private directory (mode 0700) under the spool directory, named with the
/// daemon's PID (`.breakwater-signatures-PID.XXXXXXXX`); one left by a daemon that no longer runs is
/// removed at start. Files are copied, not hard-linked: a link changes the file's ctime (the
/// self-check watch would see a change after every reload), `breakwater signatures` refuses to rewrite
/// a file with a second link, and a file rewritten in place would change the copy too.
package final class SignatureSnapshots: Sendable {
    /// One copy of a set: `directories[i]` holds the database files of `originals[i]`.
    package struct Set: Sendable {
        package let root: String
        package let directories: [String]
        package let originals: [String]
        /// Bytes of signature files in the set.
        package let bytes: UInt64
        /// Files copied (the others were unchanged since the previous set, and linked to its copy).
        package let copied: Int
        /// The source files as they were when this set was staged (`SignatureDirectoryState`).
        package let sources: SignatureDirectoryState?
    }

    package let root: String
    private let counter = Locked(0)
    private let inService = Locked<Set?>(nil)

    static let prefix = ".breakwater-signatures-"

    /// Creates the private directory under `parent`, after removing those of daemons no longer running.
    package init(parent: String) throws(DirectoryError) {
        SignatureSnapshots.removeStale(in: parent)
        let dir = try DirectoryHandle.makeTemporary(in: parent, prefix: SignatureSnapshots.prefix + "\(getpid())")
        root = dir.path
    }

    /// The copy of the set the engine in service was built from (nil before the first load).
    package var current: Set? { inService.withLock { $0 } }

    /// Copies the database files of `directories` (those libclamav would load) into a new set. A file
    /// whose stamp in `sources` (inode, size, times) is the one it had when the set in service was
    /// staged is linked to that set's copy instead (both copies are private: no source file is
    /// touched), so a reload after freshclam changed one file copies that file only.
    package func stage(_ directories: [String], sources: SignatureDirectoryState? = nil) throws(DirectoryError) -> Set {
        let previous = current
        let n = counter.withLock { c -> Int in
            c += 1
            return c
        }
        let setRoot = root + "/set-\(n)"
        guard mkdir(setRoot, 0o700) == 0 else {
            throw DirectoryError("cannot create \(setRoot): \(FileWalk.errnoString())")
        }
        var dirs: [String] = []
        var bytes: UInt64 = 0
        var copied = 0
        do throws(DirectoryError) {
            for (i, source) in directories.enumerated() {
                let target = setRoot + "/\(i)"
                guard mkdir(target, 0o700) == 0 else {
                    throw DirectoryError("cannot create \(target): \(FileWalk.errnoString())")
                }
                dirs.append(target)
                guard let d = opendir(source) else {
                    throw DirectoryError("signature directory \(source): \(FileWalk.errnoString())")
                }
                var names: [String] = []
                while let e = readdir(d) {
                    let name = e.pointee.name
                    if name.first != ".",
                        SignatureLocations.databaseExtensions.contains(SignatureCatalog.fileType(name))
                    {
                        names.append(name)
                    }
                }
                closedir(d)
                let earlier = previous.flatMap { p in p.originals.firstIndex(of: source).map { p.directories[$0] } }
                for name in names.sorted() {
                    let path = (source.hasSuffix("/") ? source : source + "/") + name
                    if let earlier, let stamp = sources?.files[path], previous?.sources?.files[path] == stamp,
                        link(earlier + "/" + name, target + "/" + name) == 0
                    {
                        continue
                    }
                    bytes += try SignatureSnapshots.copy(source + "/" + name, to: target + "/" + name)
                    copied += 1
                }
            }
        } catch {
            SignatureSnapshots.removeTree(setRoot)
            throw error
        }
        return Set(
            root: setRoot, directories: dirs, originals: directories, bytes: bytes, copied: copied, sources: sources)
    }

    /// `set` now backs the engine in service: the previous set's copy is removed.
    package func promote(_ set: Set) {
        let old = inService.withLock { s -> Set? in
            defer { s = set }
            return s
        }
        if let old, old.root != set.root { SignatureSnapshots.removeTree(old.root) }
    }

    /// Forgets the copy in service (it no longer matches the engine) and removes it.
    package func dropCurrent() {
        let old = inService.withLock { s -> Set? in
            defer { s = nil }
            return s
        }
        if let old { SignatureSnapshots.removeTree(old.root) }
    }

    /// A set that did not load.
    package func discard(_ set: Set) {
        if inService.withLock({ $0?.root }) != set.root { SignatureSnapshots.removeTree(set.root) }
    }

    /// Removes every copy (the daemon stops).
    package func removeAll() {
        inService.withLock { $0 = nil }
        SignatureSnapshots.removeTree(root)
    }

    /// Replaces the paths of `set` in a message (libclamav's error names the file it loaded) by the
    /// directories they are copies of.
    package static func unmap(_ text: String, _ set: Set) -> String {
        var t = text
        for (copy, original) in zip(set.directories, set.originals).reversed() {
            t = t.replacing(copy, with: original)
        }
        return t
    }

    /// Copies the regular file `source` (a symbolic link in the directory is followed, as libclamav
    /// would) to the new file `target`; returns the bytes copied (0 for anything but a regular file,
    /// which is skipped).
    static func copy(_ source: String, to target: String) throws(DirectoryError) -> UInt64 {
        var st = stat()
        guard stat(source, &st) == 0 else {
            throw DirectoryError("cannot read \(source): \(FileWalk.errnoString())")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return 0 }
        let input = open(source, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard input >= 0 else { throw DirectoryError("cannot read \(source): \(FileWalk.errnoString())") }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw DirectoryError("cannot write \(target): \(FileWalk.errnoString())") }
        defer { close(output) }
        var total: UInt64 = 0
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 1 << 20)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw DirectoryError("cannot read \(source): \(FileWalk.errnoString())") }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = write(output, buffer + off, n - off)
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { throw DirectoryError("cannot write \(target): \(FileWalk.errnoString())") }
                off += w
            }
            total += UInt64(n)
        }
        return total
    }

    /// Removes a directory tree of this class's making (directories and files, no links followed).
    static func removeTree(_ path: String) {
        guard let d = opendir(path) else {
            unlink(path)
            return
        }
        var names: [String] = []
        while let e = readdir(d) {
            let n = e.pointee.name
            if n != "." && n != ".." { names.append(n) }
        }
        closedir(d)
        for n in names {
            let p = path + "/" + n
            var st = stat()
            if lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                removeTree(p)
            } else {
                unlink(p)
            }
        }
        rmdir(path)
    }

    /// Removes the copies left under `parent` by daemons that no longer run (their PID is gone).
    static func removeStale(in parent: String) {
        guard let d = opendir(parent) else { return }
        var stale: [String] = []
        while let e = readdir(d) {
            let name = e.pointee.name
            guard name.hasPrefix(prefix) else { continue }
            let digits = name.dropFirst(prefix.count).prefix { $0.isNumber }
            guard let pid = Int32(digits), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { stale.append(name) }
        }
        closedir(d)
        for name in stale {
            var st = stat()
            let p = parent + "/" + name
            // Only a directory of this user's (the spool directory may be shared).
            if lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == geteuid() { removeTree(p) }
        }
    }
}

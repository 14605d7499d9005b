#if canImport(Glibc)
import Glibc
#endif

/// Why an operation on a file of a `DirectoryHandle` was refused or failed.
package struct DirectoryError: Error, CustomStringConvertible, Sendable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// A directory opened once, whose files are then opened relative to it, never through a link.
///
/// The ops commands run as root against directories the service user owns (the local-signatures
/// directory, the spool directory). That user can put a symbolic link, a hard link, a FIFO or a device
/// in place of any file there, or swap the directory itself for a link, between two calls. So every
/// access goes through the descriptor of the directory (opened with O_DIRECTORY|O_NOFOLLOW) with
/// `openat(..., O_NOFOLLOW)`, accepts only regular files (a FIFO is opened non-blocking, so it cannot
/// hang the command), and changes the owner (`fchown`) only of a file this process has just created
/// with O_CREAT|O_EXCL. A file is replaced by writing a new temporary file and `renameat` over the old
/// name, which replaces a link itself, never what it points to.
package final class DirectoryHandle {
    package let path: String
    package let fd: Int32

    /// Opens `path` as a directory; refuses a symbolic link in its last component.
    package init(_ path: String) throws(DirectoryError) {
        let p = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            var st = stat()
            if e == ELOOP || (e == ENOTDIR && lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK) {
                throw DirectoryError("\(p) is a symbolic link: not followed (name the directory it points to)")
            }
            if e == ENOTDIR { throw DirectoryError("\(p) is not a directory") }
            throw DirectoryError("cannot open the directory \(p): \(FileWalk.errnoString(e))")
        }
        self.path = p
        self.fd = fd
    }

    /// Wraps a descriptor already open on a directory; it is closed with the handle.
    package init(adopting fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The full path of `name` in the directory, for messages.
    package func display(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// The directory's own status.
    package func status() -> stat? {
        var st = stat()
        return fstat(fd, &st) == 0 ? st : nil
    }

    /// The status of `name` itself (a link is not followed); nil when there is no such entry.
    package func status(of name: String) throws(DirectoryError) -> stat? {
        var st = stat()
        if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
        if errno == ENOENT { return nil }
        throw DirectoryError("cannot stat \(display(name)): \(FileWalk.errnoString())")
    }

    /// The names in the directory (without `.` and `..`), sorted.
    package func names() throws(DirectoryError) -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let d = fdopendir(copy) else {
            throw DirectoryError("cannot read the directory \(path): \(FileWalk.errnoString())")
        }
        defer { closedir(d) }
        var out: [String] = []
        while let entry = readdir(d) {
            let name = entry.pointee.name
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    /// `name`, opened for reading without following a link: a regular file only, with at most
    /// `maxLinks` hard links when given. nil when it does not exist.
    package func openRegular(_ name: String, maxLinks: UInt? = nil) throws(DirectoryError) -> Int32? {
        let fd = openat(self.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if e == ENOENT { return nil }
            if e == ELOOP { throw DirectoryError("\(display(name)) is a symbolic link: refusing to follow it") }
            throw DirectoryError("cannot read \(display(name)): \(FileWalk.errnoString(e))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw DirectoryError("cannot stat \(display(name)): \(FileWalk.errnoString(e))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw DirectoryError("\(display(name)) is not a regular file: refusing to use it")
        }
        if let maxLinks, UInt(st.st_nlink) > maxLinks {
            close(fd)
            throw DirectoryError(
                "\(display(name)) has \(st.st_nlink) hard links: refusing to use it (it should have one)")
        }
        // Back to blocking reads (O_NONBLOCK only kept a FIFO from hanging the open).
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// The bytes of the regular file `name` (see `openRegular`); nil when it does not exist.
    package func read(_ name: String, limit: Int = 64 << 20, maxLinks: UInt? = nil) throws(DirectoryError) -> [UInt8]? {
        guard let fd = try openRegular(name, maxLinks: maxLinks) else { return nil }
        defer { close(fd) }
        var st = stat()
        _ = fstat(fd, &st)
        guard Int(st.st_size) <= limit, let bytes = FileIO.readAll(fd: fd, limit: limit, sizeHint: Int(st.st_size))
        else {
            throw DirectoryError("cannot read \(display(name)): \(FileWalk.errnoString())")
        }
        return bytes
    }

    /// Creates `name` new (O_CREAT|O_EXCL|O_NOFOLLOW: an existing file or link fails with EEXIST).
    /// Returns the descriptor, or nil when the name exists.
    package func createNew(_ name: String, mode: mode_t, flags: Int32 = O_WRONLY) throws(DirectoryError) -> Int32? {
        let fd = openat(self.fd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd >= 0 { return fd }
        if errno == EEXIST { return nil }
        throw DirectoryError("cannot create \(display(name)): \(FileWalk.errnoString())")
    }

    /// Gives a file this process has just created (`fd`) the directory's owner and group, when running
    /// as root (so that the service user can use it too). Never called on a file found in place.
    package func giveToDirectoryOwner(_ fd: Int32) {
        guard geteuid() == 0, let d = status() else { return }
        _ = fchown(fd, d.st_uid, d.st_gid)
    }

    /// Opens the lock file `name` (created, and given to the directory's owner when running as root, if
    /// it does not exist; otherwise it must be a regular file, not a link) and takes an exclusive
    /// `flock` on it, waiting for another holder. Returns the descriptor; closing it releases the lock.
    package func lock(_ name: String) throws(DirectoryError) -> Int32 {
        var fd: Int32 = -1
        for _ in 0..<10 {
            if let created = try createNew(name, mode: 0o644, flags: O_RDONLY) {
                giveToDirectoryOwner(created)
                fd = created
                break
            }
            if let existing = try openRegular(name) {
                fd = existing
                break
            }
            // Removed between the two opens: try again.
        }
        guard fd >= 0 else { throw DirectoryError("cannot open the lock file \(display(name))") }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR {
                let e = errno
                close(fd)
                throw DirectoryError("cannot lock \(display(name)): \(FileWalk.errnoString(e))")
            }
        }
        return fd
    }

    /// Replaces (or creates) `name` with `contents` atomically: a new temporary file in the directory
    /// (created with O_EXCL), written and synced, then `renameat` over the name. The new file takes the
    /// permission bits (read and write only) and owner of the regular file it replaces; a new name
    /// gets `newMode` and, as root, the directory's owner and group. A link or anything but a regular
    /// file in place of `name`, or a file with more than one hard link, is refused.
    package func replace(_ name: String, with contents: String, newMode: mode_t = 0o644) throws(DirectoryError) {
        let old = try status(of: name)
        if let old {
            if (old.st_mode & S_IFMT) == S_IFLNK {
                throw DirectoryError("\(display(name)) is a symbolic link: refusing to replace it")
            }
            guard (old.st_mode & S_IFMT) == S_IFREG else {
                throw DirectoryError("\(display(name)) is not a regular file: refusing to replace it")
            }
            guard old.st_nlink <= 1 else {
                throw DirectoryError(
                    "\(display(name)) has \(old.st_nlink) hard links: refusing to replace it (it should have one)")
            }
        }
        var tmpName = ""
        var fd: Int32 = -1
        for _ in 0..<100 {
            tmpName = ".\(name).tmp.\(DirectoryHandle.randomSuffix())"
            if let created = try createNew(tmpName, mode: 0o600) {
                fd = created
                break
            }
        }
        guard fd >= 0 else { throw DirectoryError("cannot create a temporary file in \(path)") }
        var ok = false
        defer {
            close(fd)
            if !ok { unlinkat(self.fd, tmpName, 0) }
        }
        let tmp = display(tmpName)
        if let old {
            if geteuid() == 0 { _ = fchown(fd, old.st_uid, old.st_gid) }  // our new file; only root may give it away
            guard fchmod(fd, old.st_mode & 0o666) == 0 else {
                throw DirectoryError("cannot set the mode of \(tmp): \(FileWalk.errnoString())")
            }
        } else {
            giveToDirectoryOwner(fd)
            guard fchmod(fd, newMode) == 0 else {
                throw DirectoryError("cannot set the mode of \(tmp): \(FileWalk.errnoString())")
            }
        }
        var data = contents
        let written: Bool = data.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
        guard written else { throw DirectoryError("cannot write \(tmp): \(FileWalk.errnoString())") }
        guard fsync(fd) == 0 else { throw DirectoryError("cannot sync \(tmp): \(FileWalk.errnoString())") }
        guard renameat(self.fd, tmpName, self.fd, name) == 0 else {
            throw DirectoryError("cannot rename \(tmp) to \(display(name)): \(FileWalk.errnoString())")
        }
        ok = true
        _ = fsync(self.fd)
    }

    /// Removes the entry `name` (a link is removed itself; it is fine when it is already gone) and
    /// syncs the directory.
    package func remove(_ name: String) throws(DirectoryError) {
        if unlinkat(fd, name, 0) != 0 && errno != ENOENT {
            throw DirectoryError("cannot remove \(display(name)): \(FileWalk.errnoString())")
        }
        _ = fsync(fd)
    }

    /// A path naming this very directory whatever happens to its name meanwhile (for a library that
    /// only takes paths, such as libclamav's loader).
    package var procPath: String { "/proc/self/fd/\(fd)" }

    /// Creates a new private directory (mode 0700) under `parent` and opens it. The handle refers to
    /// the directory created even when its name is swapped afterwards; the parent may belong to
    /// another user.
    package static func makeTemporary(in parent: String, prefix: String) throws(DirectoryError) -> DirectoryHandle {
        let base = try DirectoryHandle(parent)
        for _ in 0..<100 {
            let name = "\(prefix).\(randomSuffix())"
            if mkdirat(base.fd, name, 0o700) != 0 {
                if errno == EEXIST { continue }
                throw DirectoryError("cannot create a directory in \(parent): \(FileWalk.errnoString())")
            }
            let fd = openat(base.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            var st = stat()
            guard fd >= 0, fstat(fd, &st) == 0, st.st_uid == geteuid(), (st.st_mode & 0o777) == 0o700 else {
                if fd >= 0 { close(fd) }
                throw DirectoryError(
                    "the directory \(base.display(name)) was swapped while it was created: refusing to use it")
            }
            return DirectoryHandle(adopting: fd, path: base.display(name))
        }
        throw DirectoryError("cannot create a directory in \(parent)")
    }

    /// Removes every entry of this (temporary) directory, then the directory itself from `parent` when
    /// its name there still refers to it.
    package func removeTemporary() {
        if let names = try? names() {
            for n in names { unlinkat(fd, n, 0) }
        }
        guard let me = status(), let slash = path.lastIndex(of: "/") else { return }
        let parentPath = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        guard let parent = try? DirectoryHandle(parentPath), let st = try? parent.status(of: name),
            st.st_dev == me.st_dev, st.st_ino == me.st_ino
        else { return }
        unlinkat(parent.fd, name, AT_REMOVEDIR)
    }

    static func randomSuffix() -> String {
        let digits = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var g = SystemRandomNumberGenerator()  // getrandom(2)
        return String((0..<8).map { _ in digits[Int(g.next() % UInt64(digits.count))] })
    }
}

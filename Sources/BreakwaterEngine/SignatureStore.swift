import BreakwaterCore
import CClamAV

#if canImport(Glibc)
import Glibc
#endif

/// Why `breakwater signatures add|remove` changed nothing.
package struct SignatureStoreError: Error, CustomStringConvertible, Sendable {
    package let description: String
    /// Known-good messages the new signature fired on (`--check`), when that is the reason.
    package let firedOn: [String]
    package init(_ description: String, firedOn: [String] = []) {
        self.description = description
        self.firedOn = firedOn
    }
}

/// The ops directory as `breakwater signatures` changes it. Only the Breakwater-owned files
/// (`breakwater-local.ndb|ldb|hsb`) are ever written; the shipped set and hand-written files are only
/// read (for unique names and for the compile check).
///
/// Every change runs under an exclusive lock (a lock file in the directory), builds the whole new set
/// (the other signature directories plus a copy of the ops directory with the change) in a test
/// engine with the real libclamav, optionally scans known-good mail with it, and only then replaces
/// the file atomically (temporary file, fsync, rename), keeping its mode and owner.
///
/// The commands run as root against a directory the service user owns, so every file of it is opened
/// relative to the directory's descriptor without following links (DirectoryHandle): a link, a FIFO or
/// a hard-linked file planted there is refused, never followed, and only files created here get an
/// owner changed.
package final class SignatureStore: Sendable {
    package let directory: String
    package let prefix: String
    /// The other directories the daemon loads (the shipped or configured set).
    package let otherDirectories: [String]
    package let limits: EngineLimits
    /// Where the test copy of the ops directory is made.
    package let temporaryDirectory: String
    /// The user who ran sudo, when there is one: `--check` mail is read with that user's permissions.
    package let invoker: InvokingUser?

    package static let lockFileName = ".breakwater-signatures.lock"

    package init(
        directory: String, prefix: String, otherDirectories: [String], limits: EngineLimits = EngineLimits(),
        temporaryDirectory: String = Config.defaultTemporaryDirectory, invoker: InvokingUser? = nil
    ) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.prefix = prefix
        self.otherDirectories = otherDirectories.filter { $0 != directory }
        self.limits = limits
        self.temporaryDirectory = temporaryDirectory
        self.invoker = invoker
    }

    /// What a change did.
    package struct Change: Sendable {
        package let name: String
        package let file: String
        package let line: String
        /// Signatures in the test engine (the whole new set).
        package let signatures: Int
        /// Known-good messages it fired on, when `--force` let it through anyway.
        package let firedOn: [String]
        /// Messages checked.
        package let checked: Int
    }

    // MARK: add

    package func add(
        name: String, pattern: SignaturePattern, comment: String, author: String, at time: Double = Now.wall(),
        check: [String] = [], force: Bool = false
    ) throws(SignatureStoreError) -> Change {
        let kind: SignatureFileKind
        let line: String
        do {
            (kind, line) = try SignatureLine.make(name: name, pattern: pattern, prefix: prefix)
            try SignatureLine.validateNote(comment, what: "comment")
            try SignatureLine.validateNote(author, what: "author", maxLength: 100)
        } catch {
            throw SignatureStoreError(error.description)
        }
        let note = SignatureNote(
            author: author, added: Timestamp.iso8601(time), pattern: pattern.summary, comment: comment)
        return try withLock { (dir) throws(SignatureStoreError) -> Change in
            if let existing = try (SignatureCatalog.entries(in: otherDirectories) + opsEntries(dir)).first(where: {
                $0.name == name
            }) {
                throw SignatureStoreError(
                    "a signature named \(name) already exists in \(existing.file) (line \(existing.line)): choose another name, or remove it first"
                )
            }
            let target = directory + "/" + kind.ownedFileName
            var file = try readOwned(kind, in: dir)
            file.entries.append(OwnedSignatureFile.Entry(name: name, line: line, note: note))
            let (engine, signatures) = try compile(dir, replacing: kind.ownedFileName, with: file)
            var fired: [String] = []
            var checked = 0
            if !check.isEmpty, let engine {
                (fired, checked) = try scan(check, with: engine, for: name)
                if !fired.isEmpty && !force {
                    throw SignatureStoreError(
                        "\(name) fires on \(fired.count) of \(checked) known-good message\(checked == 1 ? "" : "s"); nothing changed (--force adds it anyway)",
                        firedOn: fired)
                }
            }
            try write(file, kind: kind, in: dir)
            return Change(
                name: name, file: target, line: line, signatures: signatures, firedOn: fired, checked: checked)
        }
    }

    // MARK: remove

    package func remove(name: String) throws(SignatureStoreError) -> Change {
        try withLock { (dir) throws(SignatureStoreError) -> Change in
            for kind in SignatureFileKind.allCases {
                var file = try readOwned(kind, in: dir)
                guard let i = file.entries.firstIndex(where: { $0.name == name }) else { continue }
                let removed = file.entries.remove(at: i)
                let target = directory + "/" + kind.ownedFileName
                let (_, signatures) = try compile(dir, replacing: kind.ownedFileName, with: file)
                try write(file, kind: kind, in: dir)
                return Change(
                    name: name, file: target, line: removed.line, signatures: signatures, firedOn: [], checked: 0)
            }
            if let other = try (SignatureCatalog.entries(in: otherDirectories) + opsEntries(dir)).first(where: {
                $0.name == name
            }) {
                let inOps = other.file.hasPrefix(directory + "/")
                throw SignatureStoreError(
                    inOps
                        ? "\(name) is in \(other.file) (line \(other.line)), which `breakwater signatures` did not write: edit that file by hand"
                        : "\(name) is in \(other.file), not in the ops directory \(directory): `breakwater signatures` never changes that set"
                )
            }
            throw SignatureStoreError(
                "no local signature named \(name) in \(directory) (see `breakwater signatures list --local`)")
        }
    }

    // MARK: steps

    /// Runs `body` holding the directory's lock file (flock, exclusive; waits for another change), with
    /// the directory open (O_DIRECTORY|O_NOFOLLOW) for every file access.
    func withLock<T>(_ body: (DirectoryHandle) throws(SignatureStoreError) -> T) throws(SignatureStoreError) -> T {
        guard SignatureLocations.isDirectory(directory) else {
            throw SignatureStoreError(
                "the ops signature directory \(directory) does not exist (the package creates it; or set local-signatures)"
            )
        }
        let dir: DirectoryHandle
        let fd: Int32
        do {
            dir = try DirectoryHandle(directory)
            fd = try dir.lock(SignatureStore.lockFileName)
        } catch {
            let hint =
                error.description.hasSuffix(FileWalk.errnoString(EACCES)) ? " (run as root or as the service user)" : ""
            throw SignatureStoreError("cannot lock \(directory): \(error)\(hint); nothing changed")
        }
        defer { close(fd) }
        return try body(dir)
    }

    /// The database file names of the ops directory (what libclamav would load), sorted.
    func databaseNames(_ dir: DirectoryHandle) throws(SignatureStoreError) -> [String] {
        do {
            return try dir.names().filter {
                $0.first != "." && SignatureLocations.databaseExtensions.contains(SignatureCatalog.fileType($0))
            }
        } catch {
            throw SignatureStoreError(error.description)
        }
    }

    /// A file of the ops directory, read without following a link (nil when it does not exist).
    func readFile(_ name: String, in dir: DirectoryHandle, limit: Int, maxLinks: UInt? = nil)
        throws(SignatureStoreError) -> [UInt8]?
    {
        do {
            return try dir.read(name, limit: limit, maxLinks: maxLinks)
        } catch {
            throw SignatureStoreError("\(error); nothing changed")
        }
    }

    /// The named signatures of the ops directory, for unique names.
    func opsEntries(_ dir: DirectoryHandle) throws(SignatureStoreError) -> [CatalogEntry] {
        var out: [CatalogEntry] = []
        for name in try databaseNames(dir) where SignatureCatalog.namedTypes.contains(SignatureCatalog.fileType(name)) {
            guard let bytes = try readFile(name, in: dir, limit: 1 << 30) else { continue }
            out += SignatureCatalog.entries(inText: String(decoding: bytes, as: UTF8.self), file: dir.display(name))
        }
        return out
    }

    func readOwned(_ kind: SignatureFileKind, in dir: DirectoryHandle) throws(SignatureStoreError) -> OwnedSignatureFile
    {
        // One hard link only: the file's text is written back, readable by the directory's owner.
        guard let bytes = try readFile(kind.ownedFileName, in: dir, limit: 256 << 20, maxLinks: 1) else {
            return OwnedSignatureFile(kind: kind)
        }
        return OwnedSignatureFile.parse(String(decoding: bytes, as: UTF8.self), kind: kind)
    }

    /// Builds the whole set as it would be with the file `target` of the ops directory replaced by
    /// `file`: the other directories, and a copy of the ops directory (in a private directory under
    /// the temporary directory, which may belong to the service user: it is used through its
    /// descriptor only). Returns the engine (nil when the set would be empty) and its count.
    func compile(_ dir: DirectoryHandle, replacing target: String, with file: OwnedSignatureFile)
        throws(SignatureStoreError) -> (ClamEngine?, Int)
    {
        let staging: DirectoryHandle
        do {
            staging = try DirectoryHandle.makeTemporary(in: temporaryDirectory, prefix: "breakwater-check")
        } catch {
            throw SignatureStoreError("cannot create a test directory in \(temporaryDirectory): \(error)")
        }
        defer { staging.removeTemporary() }
        var staged = false
        for name in try databaseNames(dir) where name != target {
            guard let bytes = try readFile(name, in: dir, limit: 1 << 30) else { continue }
            try writeStaged(staging, name, String(decoding: bytes, as: UTF8.self))
            staged = true
        }
        if !file.entries.isEmpty {
            try writeStaged(staging, target, file.render())
            staged = true
        }
        var dirs = otherDirectories
        if staged { dirs.append(staging.procPath) }
        guard !dirs.isEmpty else { return (nil, 0) }
        do {
            let engine = try ClamEngine(directories: dirs, limits: limits)
            return (engine, engine.signatureCount)
        } catch {
            let message = "\(error)".replacing(staging.procPath, with: directory).replacing(
                staging.path, with: directory)
            throw SignatureStoreError("libclamav refuses the new set: \(message); nothing changed")
        }
    }

    private func writeStaged(_ staging: DirectoryHandle, _ name: String, _ text: String) throws(SignatureStoreError) {
        let path = staging.display(name)
        let created: Int32?
        do { created = try staging.createNew(name, mode: 0o600) } catch { throw SignatureStoreError(error.description) }
        guard let fd = created else {
            throw SignatureStoreError("cannot write \(path): \(FileWalk.errnoString(EEXIST))")
        }
        defer { close(fd) }
        var t = text
        let ok: Bool = t.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
        if !ok { throw SignatureStoreError("cannot write \(path): \(FileWalk.errnoString())") }
    }

    /// Scans every message under `paths`; returns those on which `name` fired, and how many were scanned.
    func scan(_ paths: [String], with engine: ClamEngine, for name: String) throws(SignatureStoreError) -> (
        [String], Int
    ) {
        var fired: [String] = []
        var count = 0
        for target in FileWalk.targets(paths, as: invoker) {
            switch target {
            case .stdin:
                throw SignatureStoreError("--check takes directories or message files, not -")
            case .unreadable(let path, let reason):
                throw SignatureStoreError("cannot check \(path): \(reason)")
            case .file(let path):
                guard let bytes = FileIO.read(path, as: invoker) else {
                    throw SignatureStoreError(
                        "cannot read \(path): \(FileWalk.errnoString())\(InvokingUser.note(invoker))")
                }
                let result = bytes.withUnsafeBytes { engine.scan($0, name: path) }
                if let e = result.errorMessage { throw SignatureStoreError("cannot check \(path): \(e)") }
                count += 1
                if result.detections.contains(where: { $0.name == name }) { fired.append(path) }
            }
        }
        if count == 0 { throw SignatureStoreError("--check \(paths.joined(separator: " ")): no message files there") }
        return (fired, count)
    }

    func write(_ file: OwnedSignatureFile, kind: SignatureFileKind, in dir: DirectoryHandle) throws(SignatureStoreError)
    {
        do {
            if file.entries.isEmpty {
                try dir.remove(kind.ownedFileName)  // libclamav refuses an empty database file
            } else {
                try dir.replace(kind.ownedFileName, with: file.render())
            }
        } catch {
            throw SignatureStoreError(error.description)
        }
    }

    // MARK: hashing

    /// The SHA-256 (lower-case hex, by libclamav's hashing) and the size of a file, opened with the
    /// permissions of `invoker` when given (the user who ran sudo).
    package static func sha256(ofFile path: String, as invoker: InvokingUser? = nil) throws(SignatureStoreError) -> (
        String, UInt64
    ) {
        do { try ClamAVLibrary.ensureInitialised() } catch { throw SignatureStoreError("\(error)") }
        let flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
        let fd = invoker.map { $0.open(path, flags: flags) } ?? open(path, flags)
        guard fd >= 0 else {
            throw SignatureStoreError("cannot read \(path): \(FileWalk.errnoString())\(InvokingUser.note(invoker))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw SignatureStoreError("\(path) is not a regular file")
        }
        var length: UInt32 = 0
        guard let digest = cl_hash_file_fd(fd, "sha256", &length) else {
            throw SignatureStoreError("cannot hash \(path)")
        }
        defer { free(digest) }
        let hex = (0..<Int(length)).map { i -> String in
            let b = digest[i]
            let d = Array("0123456789abcdef")
            return String([d[Int(b >> 4)], d[Int(b & 15)]])
        }.joined()
        return (hex, UInt64(st.st_size))
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// One thing to scan named on the command line: a message file, or a problem found while listing.
public enum ScanTarget: Sendable, Equatable {
    case file(String)
    case stdin
    case unreadable(String, reason: String)
}

public enum FileWalk {
    /// Expands command-line paths: files as they are, directories recursively (sorted, so output is stable),
    /// `-` as standard input. Paths that cannot be opened come back as `.unreadable` with the reason.
    /// With `invoker` (a command run through sudo), directories are opened with that user's permissions
    /// (files too, by the caller: FileIO.read(_:as:)), so that root lists nothing the user could not.
    public static func targets(_ paths: [String], as invoker: InvokingUser? = nil) -> [ScanTarget] {
        var out: [ScanTarget] = []
        for p in paths {
            if p == "-" { out.append(.stdin); continue }
            walk(p, as: invoker, into: &out)
        }
        return out
    }

    private static func walk(_ path: String, as invoker: InvokingUser?, into out: inout [ScanTarget]) {
        var st = stat()
        if stat(path, &st) != 0 {
            out.append(.unreadable(path, reason: errnoString()))
            return
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            let opened: OpaquePointer?
            if let invoker {
                let fd = invoker.open(path, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                opened = fd >= 0 ? fdopendir(fd) : nil
                if fd >= 0 && opened == nil { close(fd) }
            } else {
                opened = opendir(path)
            }
            guard let dir = opened else {
                out.append(.unreadable(path, reason: invoker.map { "the user who ran sudo (\($0)) cannot read it: \(errnoString())" } ?? errnoString()))
                return
            }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = entry.pointee.name
                if name == "." || name == ".." { continue }
                names.append(name)
            }
            closedir(dir)
            names.sort()
            let base = path.hasSuffix("/") ? path : path + "/"
            for n in names { walk(base + n, as: invoker, into: &out) }
        case S_IFREG:
            out.append(.file(path))
        default:
            out.append(.unreadable(path, reason: "not a regular file"))
        }
    }

    public static func errnoString(_ e: Int32 = errno) -> String {
        String(cString: strerror(e))
    }
}

/// Where the signature sets live.
public enum SignatureLocations {
    public static let installedShipped = "/usr/share/breakwater/signatures"
    public static let defaultLocal = "/var/lib/breakwater/signatures"

    /// The shipped set: the installed copy, or the checkout's `Signatures/` when the program runs from a
    /// source tree (its binary under `<checkout>/.build`).
    public static func shipped(executable: String = currentExecutable()) -> String {
        if let r = executable.firstRange(of: "/.build") {
            let root = String(executable[..<r.lowerBound])
            let candidate = root + "/Signatures"
            if isDirectory(candidate) { return candidate }
        }
        return installedShipped
    }

    public static func currentExecutable() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n <= 0 { return CommandLine.arguments.first ?? "" }
        return buf.withUnsafeBufferPointer { p in
            String(decoding: UnsafeRawBufferPointer(start: p.baseAddress, count: n), as: UTF8.self)
        }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The default set: shipped plus the ops directory when it holds signatures (the package creates it
    /// empty, and libclamav refuses a directory without database files).
    public static func defaults(local: String = defaultLocal) -> [String] {
        var dirs = [shipped()]
        if hasDatabaseFiles(local) { dirs.append(local) }
        return dirs
    }

    /// The file name extensions libclamav loads from a signature directory.
    public static let databaseExtensions: Set<String> = [
        "cvd", "cld", "cud", "db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ndb", "ndu",
        "ldb", "ldu", "cdb", "cbc", "idb", "zmd", "rmd", "sdb", "pdb", "gdb", "wdb", "ftm", "cfg", "cat",
        "crb", "fp", "sfp", "ign", "ign2", "yar", "yara", "pwdb", "imp", "ioc",
    ]

    /// True when `path` is a directory holding at least one file libclamav would load.
    public static func hasDatabaseFiles(_ path: String) -> Bool {
        guard let dir = opendir(path) else { return false }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = entry.pointee.name
            if let dot = name.lastIndex(of: "."), name.first != ".",
               databaseExtensions.contains(String(name[name.index(after: dot)...]).lowercased()) {
                return true
            }
        }
        return false
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// One thing to scan named on the command line: a message file, or a problem found while listing.
package enum ScanTarget: Sendable, Equatable {
    case file(String)
    case stdin
    case unreadable(String, reason: String)
}

package enum FileWalk {
    /// Expands command-line paths: files as they are, directories recursively (sorted, so output is stable),
    /// `-` as standard input. Paths that cannot be opened come back as `.unreadable` with the reason.
    /// With `invoker` (a command run through sudo), directories are opened with that user's permissions
    /// (files too, by the caller: FileIO.read(_:as:)), so that root lists nothing the user could not.
    package static func targets(_ paths: [String], as invoker: InvokingUser? = nil) -> [ScanTarget] {
        var out: [ScanTarget] = []
        for p in paths {
            if p == "-" {
                out.append(.stdin)
                continue
            }
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
                out.append(
                    .unreadable(
                        path,
                        reason: invoker.map { "the user who ran sudo (\($0)) cannot read it: \(errnoString())" }
                            ?? errnoString()))
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

    package static func errnoString(_ e: Int32 = errno) -> String {
        String(cString: strerror(e))
    }
}

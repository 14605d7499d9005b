#if canImport(Glibc)
import Glibc
#endif

/// What `breakwater signatures add` keeps beside an ops signature: who added it, when, what was given,
/// and why.
package struct SignatureNote: Sendable, Equatable {
    package var author: String
    /// ISO 8601, UTC.
    package var added: String
    /// The pattern as given (`SignaturePattern.summary`).
    package var pattern: String
    package var comment: String

    package init(author: String, added: String, pattern: String, comment: String) {
        self.author = author
        self.added = added
        self.pattern = pattern
        self.comment = comment
    }
}

/// A Breakwater-owned database file of the ops directory (`breakwater-local.ndb|ldb|hsb`): a header,
/// then for each signature a note line (`#@ NAME<TAB>author=...<TAB>added=...<TAB>pattern=...<TAB>comment=...`,
/// a comment to libclamav) and the signature line.
package struct OwnedSignatureFile: Sendable, Equatable {
    package struct Entry: Sendable, Equatable {
        package var name: String
        package var line: String
        package var note: SignatureNote?
        package init(name: String, line: String, note: SignatureNote?) {
            self.name = name
            self.line = line
            self.note = note
        }
    }

    package var kind: SignatureFileKind
    package var entries: [Entry]

    package init(kind: SignatureFileKind, entries: [Entry] = []) {
        self.kind = kind
        self.entries = entries
    }

    static let notePrefix = "#@ "

    /// Reads the file's text. Lines added by hand are kept (as entries without a note); other comments
    /// are not (the header is written anew).
    package static func parse(_ text: String, kind: SignatureFileKind) -> OwnedSignatureFile {
        var file = OwnedSignatureFile(kind: kind)
        var pending: (String, SignatureNote)? = nil
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.hasPrefix(notePrefix) {
                pending = parseNote(String(line.dropFirst(notePrefix.count)))
                continue
            }
            if line.trimmed.isEmpty || line.hasPrefix("#") { continue }
            let name = SignatureCatalog.name(ofLine: line, type: kind.rawValue) ?? line
            let note = pending.flatMap { $0.0 == name ? $0.1 : nil }
            file.entries.append(Entry(name: name, line: line, note: note))
            pending = nil
        }
        return file
    }

    package func render() -> String {
        var out =
            "# Breakwater ops signatures (\(kind.rawValue)), written by `breakwater signatures add`: change them with\n"
        out += "# `breakwater signatures add|remove`, which check every change with libclamav before it lands here.\n"
        for e in entries {
            if let n = e.note {
                out += OwnedSignatureFile.notePrefix + e.name
                for (k, v) in [
                    ("author", n.author), ("added", n.added), ("pattern", n.pattern), ("comment", n.comment),
                ] {
                    out += "\t\(k)=" + OwnedSignatureFile.escape(v)
                }
                out += "\n"
            }
            out += e.line + "\n"
        }
        return out
    }

    static func parseNote(_ text: String) -> (String, SignatureNote)? {
        let fields = text.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard let name = fields.first, !name.isEmpty else { return nil }
        var note = SignatureNote(author: "", added: "", pattern: "", comment: "")
        for f in fields.dropFirst() {
            guard let eq = f.firstIndex(of: "=") else { continue }
            let value = unescape(String(f[f.index(after: eq)...]))
            switch f[..<eq] {
            case "author": note.author = value
            case "added": note.added = value
            case "pattern": note.pattern = value
            case "comment": note.comment = value
            default: break
            }
        }
        return (name, note)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        var out = ""
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            guard c == "\\", let n = it.next() else {
                out.unicodeScalars.append(c)
                continue
            }
            switch n {
            case "t": out += "\t"
            case "n": out += "\n"
            case "r": out += "\r"
            default: out.unicodeScalars.append(n)
            }
        }
        return out
    }
}

/// One signature found in a database file.
package struct CatalogEntry: Sendable, Equatable {
    package let name: String
    /// The file's full path.
    package let file: String
    /// The database format: the file's extension (`ndb`, `ldb`, `hsb`, `yara`, ...).
    package let type: String
    /// 1-based line in the file.
    package let line: Int
    package let note: SignatureNote?
}

/// The signatures defined in signature directories, read from the database files (for `list`, for
/// `test` to say which file a matching signature came from, and for unique names).
package enum SignatureCatalog {
    /// Formats whose lines hold signatures with names; the others (allow lists, phishing URL lists,
    /// bytecode, signed containers, configuration) have none to list.
    package static let namedTypes: Set<String> = [
        "db", "ndb", "ndu", "ldb", "ldu", "cdb", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "idb", "yar",
        "yara",
    ]

    /// The name a database line defines, or nil for a comment, a blank line or an unnamed format.
    package static func name(ofLine line: String, type: String) -> String? {
        let t = line.trimmed
        if t.isEmpty || t.hasPrefix("#") { return nil }
        switch type {
        case "ndb", "ndu", "cdb", "idb":
            return t.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
        case "ldb", "ldu":
            return t.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
        case "db":
            return t.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
        case "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu":
            let f = t.split(separator: ":", omittingEmptySubsequences: false)
            return f.count >= 3 ? String(f[2]) : nil
        case "yar", "yara":
            // `rule NAME`, possibly `private rule`, `global rule`, tags after a ':' or a '{' on the line.
            var words = t.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "{" || $0 == ":" })[...]
            while let w = words.first, w == "private" || w == "global" { words = words.dropFirst() }
            guard words.first == "rule", words.count >= 2 else { return nil }
            return String(words[words.startIndex + 1])
        default:
            return nil
        }
    }

    /// Every named signature in `directories` (database files only, sorted by file name), with the notes
    /// of Breakwater-owned files.
    package static func entries(in directories: [String]) -> [CatalogEntry] {
        var out: [CatalogEntry] = []
        var seen = Set<String>()
        for dir in directories where seen.insert(dir).inserted {
            for file in databaseFiles(in: dir) {
                out += entries(inFile: file)
            }
        }
        return out
    }

    /// The signatures of one database file.
    package static func entries(inFile path: String) -> [CatalogEntry] {
        guard namedTypes.contains(fileType(path)), let bytes = FileIO.read(path, limit: 1 << 30) else { return [] }
        return entries(inText: String(decoding: bytes, as: UTF8.self), file: path)
    }

    /// The signatures of a database file's text (`file` gives its name and type).
    package static func entries(inText text: String, file path: String) -> [CatalogEntry] {
        let type = fileType(path)
        guard namedTypes.contains(type) else { return [] }
        var notes: [String: SignatureNote] = [:]
        let owned = SignatureFileKind(rawValue: type).map { $0.ownedFileName == baseName(path) } ?? false
        if owned {
            for e in OwnedSignatureFile.parse(text, kind: SignatureFileKind(rawValue: type)!).entries {
                if let n = e.note { notes[e.name] = n }
            }
        }
        var out: [CatalogEntry] = []
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            guard let name = name(ofLine: String(raw), type: type) else { continue }
            out.append(CatalogEntry(name: name, file: path, type: type, line: lineNo, note: notes[name]))
        }
        return out
    }

    /// The database files of a directory (what libclamav would load), sorted; empty when it cannot be read.
    package static func databaseFiles(in dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = entry.pointee.name
            if name.first != ".", SignatureLocations.databaseExtensions.contains(fileType(name)) { names.append(name) }
        }
        let base = dir.hasSuffix("/") ? dir : dir + "/"
        return names.sorted().map { base + $0 }
    }

    /// The lower-cased extension of a file name.
    package static func fileType(_ path: String) -> String {
        let name = baseName(path)
        guard let dot = name.lastIndex(of: ".") else { return "" }
        return String(name[name.index(after: dot)...]).lowercased()
    }

    package static func baseName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

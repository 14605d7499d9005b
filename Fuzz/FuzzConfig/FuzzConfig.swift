// libFuzzer target: the config file parser (Config.apply(fileText:)), as `load` calls it on a file's
// UTF-8 text. Invariants beyond not crashing:
// - an error names a line of the text (1 ... number of lines);
// - a parsed key's value never spans lines (holds no LF), so one line of the file is one setting;
// - a text that parses re-parses to the same configuration when rewritten canonically, one
//   `key =<TAB>value` per setting, quoted where the value needs it.
import BreakwaterCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    // `load` refuses what is not UTF-8 before parsing.
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    var config = Config()
    do throws(ConfigError) {
        try config.apply(fileText: text, source: "fuzz.conf")
        try? config.validate()
    } catch {
        let lines = text.utf8.count(where: { $0 == 10 }) + 1
        guard let line = error.line, (1...lines).contains(line), error.source == "fuzz.conf" else {
            fatalError("config error without a line of the file: \(error.line.map(String.init) ?? "nil") of \(lines): \(error.description)")
        }
        _ = error.description
        return 0
    }
    // The settings as the parser reads them (its documented syntax), rewritten canonically.
    var canonical = ""
    for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
        let line = raw.trimmed
        if line.isEmpty || line.hasPrefix("#") { continue }
        guard let eq = line.firstIndex(of: "=") else { fatalError("parsed a line without '=': \(line.debugDescription)") }
        let name = line[..<eq].trimmed
        var value = line[line.index(after: eq)...].trimmed
        if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
        if value.utf8.contains(10) {
            fatalError("the value of '\(name)' spans lines: \(value.debugDescription)")
        }
        let needsQuotes = value.trimmed != value || (value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\""))
        canonical += "\(name) =\t" + (needsQuotes ? "\"\(value)\"" : value) + "\n"
    }
    var again = Config()
    do throws(ConfigError) {
        try again.apply(fileText: canonical, source: "canonical")
    } catch {
        fatalError("the canonical rewrite does not parse: \(error.description)\n--- text\n\(text.debugDescription)\n--- canonical\n\(canonical.debugDescription)")
    }
    let a = String(reflecting: config), b = String(reflecting: again)
    if a != b {
        fatalError("the canonical rewrite parses differently\n--- text\n\(text.debugDescription)\n--- canonical\n\(canonical.debugDescription)\n--- first\n\(a)\n--- again\n\(b)")
    }
    return 0
}

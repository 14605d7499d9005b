/// A configuration error, located in the file (or `command line`) and line it came from.
package struct ConfigError: Error, CustomStringConvertible, Sendable {
    package let source: String
    package let line: Int?
    package let message: String
    package init(source: String, line: Int?, message: String) {
        self.source = source
        self.line = line
        self.message = message
    }
    package var description: String {
        if let line { return "\(source):\(line): \(message)" }
        return "\(source): \(message)"
    }
}

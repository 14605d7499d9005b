/// A configuration error, located in the file (or `command line`) and line it came from.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let source: String
    public let line: Int?
    public let message: String
    public init(source: String, line: Int?, message: String) {
        self.source = source
        self.line = line
        self.message = message
    }
    public var description: String {
        if let line { return "\(source):\(line): \(message)" }
        return "\(source): \(message)"
    }
}

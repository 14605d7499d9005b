package enum Breakwater { package static let version = "0.1.0" }

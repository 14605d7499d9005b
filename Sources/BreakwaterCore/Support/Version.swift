public enum Breakwater { public static let version = "0.1.0" }

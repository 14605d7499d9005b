/// One configuration key: its name, default as written in a config file, help, and how it applies.
///
/// Each default is stated once, in `Config`'s property initialisers: `show` writes a configuration's
/// value as a config file would, and `defaultText` is `show(Config())`. A key whose default is not one
/// value (it depends on the machine, the environment or another key) has no `show` and a described
/// default instead; ConfigTests.testDescribedDefaults lists those keys.
package struct ConfigKey: Sendable {
    package let name: String
    package let defaultText: String
    package let help: String
    /// Repeating the key adds to a list instead of replacing it.
    package let repeatable: Bool
    /// The key's value in a configuration, as a config file writes it; nil for a described default.
    package let show: (@Sendable (Config) -> String)?
    let apply: @Sendable (inout Config, String) throws(ValueError) -> Void

    package struct ValueError: Error { package let message: String }
}

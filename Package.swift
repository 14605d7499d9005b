// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Breakwater",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "breakwater", targets: ["breakwater"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Thin C targets: a module map and a one-line shim header each.
        .systemLibrary(name: "CClamAV", pkgConfig: "libclamav", providers: [.apt(["libclamav-dev"])]),
        .systemLibrary(name: "CMilter", providers: [.apt(["libmilter-dev"])]),
        // libclamav's per-file page maps created populated while a thread scans (prefault.c says why).
        .target(name: "CClamAVPrefault", linkerSettings: [.linkedLibrary("dl")]),
        // glibc tuning Swift's Glibc module does not export: mallopt (the daemon's arena cap) and the
        // default thread stack size (libmilter's session threads).
        .target(name: "CProcessTuning"),

        // Logic that needs no C and no socket: config, policy, admission, message assembly.
        .target(name: "BreakwaterCore"),
        // Wave detection: fingerprint, store, detector, reports, suggestions; no C, no libclamav.
        .target(name: "BreakwaterWaves", dependencies: ["BreakwaterCore"]),
        // The libclamav engine wrapper.
        .target(name: "BreakwaterEngine", dependencies: ["CClamAV", "CClamAVPrefault", "BreakwaterCore"]),
        // The libmilter bridge and the daemon.
        .target(
            name: "BreakwaterMilter",
            dependencies: [
                "CMilter", "CProcessTuning", "BreakwaterCore", "BreakwaterEngine", "BreakwaterWaves",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The Prometheus endpoint: swift-metrics instruments in a swift-prometheus registry, a small HTTP listener.
        .target(
            name: "BreakwaterMetrics",
            dependencies: [
                "BreakwaterCore", "BreakwaterEngine", "BreakwaterMilter",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .executableTarget(
            name: "breakwater",
            dependencies: [
                "BreakwaterCore", "BreakwaterEngine", "BreakwaterMilter",
                "BreakwaterMetrics", "BreakwaterWaves",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "BreakwaterCoreTests", dependencies: ["BreakwaterCore", "CProcessTuning"]),
        .testTarget(name: "BreakwaterWavesTests", dependencies: ["BreakwaterWaves", "BreakwaterCore"]),
        .testTarget(
            name: "BreakwaterEngineTests", dependencies: ["BreakwaterEngine", "BreakwaterCore", "CClamAVPrefault"]),
        .testTarget(name: "BreakwaterMetricsTests", dependencies: ["BreakwaterMetrics", "BreakwaterCore"]),
    ],
    swiftLanguageModes: [.v6]
)

// Fuzz targets (Fuzz/README.md): one libFuzzer executable per parser, declared only when
// BREAKWATER_FUZZ=1 so that normal builds and `swift test` neither build nor see them. `make fuzz`
// builds them with -sanitize=fuzzer,address into .build-fuzz.
if Context.environment["BREAKWATER_FUZZ"] == "1" {
    let fuzzers: [(String, [Target.Dependency])] = [
        ("FuzzAssembly", ["BreakwaterCore"]),
        ("FuzzWave", ["BreakwaterWaves", "BreakwaterCore"]),
        ("FuzzConfig", ["BreakwaterCore"]),
        ("FuzzSignature", ["BreakwaterCore"]),
        ("FuzzControl", ["BreakwaterCore"]),
        ("FuzzHTTP", ["BreakwaterMetrics"]),
    ]
    for (name, deps) in fuzzers {
        package.products.append(.executable(name: name, targets: [name]))
        package.targets.append(
            .executableTarget(
                name: name, dependencies: deps, path: "Fuzz/\(name)",
                swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}

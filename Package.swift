// swift-tools-version: 6.0
// tunvpn: an encrypted layer-3 VPN for Linux.
//
// Rooms (docs/ARCHITECTURE.md): a pure protocol core (Crypto, Transport, Routing) wrapped by thin OS
// adapters (Platform) and driven by the Engine (which also holds the clock and thread helpers the adapters
// share); Control wires real adapters, plans and the engine for a server or client, and the tunvpn
// executable only parses flags into Control's settings. LoadGen, a test tool, binds real UDP sockets too.
// Each target declares exactly the modules it imports. libsodium is found by pkg-config and linked
// dynamically by default; TUNVPN_STATIC_SODIUM=1 links libsodium.a instead (README.md).
import PackageDescription

let staticSodium = Context.environment["TUNVPN_STATIC_SODIUM"] == "1"
let sodiumLink: [LinkerSetting] =
    staticSodium ? [.unsafeFlags(["-Xlinker", "-l:libsodium.a"])] : [.linkedLibrary("sodium")]

let package = Package(
    name: "tunvpn",
    products: [
        .executable(name: "tunvpn", targets: ["tunvpn"]),
        .executable(name: "tunvpn-loadgen", targets: ["LoadGen"]),
        .executable(name: "tunvpn-wgprobe", targets: ["WireGuardProbe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // Found by pkg-config for ordinary builds; a static build links libsodium.a by hand instead, because
        // pkg-config's -lsodium would always come first and pick the shared library.
        .systemLibrary(name: "CSodium", pkgConfig: staticSodium ? nil : "libsodium", providers: [.apt(["libsodium-dev"])]),
        // QR codes for `tunvpn add-client --qr` (libqrencode).
        .systemLibrary(name: "CQREncode", pkgConfig: "libqrencode", providers: [.apt(["libqrencode-dev"])]),
        // OpenSSL 3's libcrypto: an optional, faster provider of the per-packet AEAD (Sources/Crypto/AEADProvider.swift).
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // BLAKE2s for WireGuard mode, from the BLAKE2 authors' libb2 (libsodium has only BLAKE2b).
        .systemLibrary(name: "CBlake2", pkgConfig: "libb2", providers: [.apt(["libb2-dev"])]),
        .target(name: "CLinux"),
        // PostgreSQL's client library, for the peer registry (Sources/Control/Registry).
        // Declarations only (no pkg-config, so no -lpq): libpq is opened at run time (Control/Registry/LibPQ.swift).
        .systemLibrary(name: "CLibPQ"),
        .target(name: "Crypto", dependencies: ["CSodium", "COpenSSL", "CBlake2"], linkerSettings: sodiumLink),
        .target(name: "Transport", dependencies: ["Crypto", .product(name: "HeapModule", package: "swift-collections")]),
        .target(name: "Routing"),
        .target(
            name: "Engine",
            dependencies: ["Transport", "Crypto", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Platform", dependencies: ["CLinux", "Engine", "Routing", "Transport", "Crypto"]),
        // What an operator touches besides flag parsing: settings, the server and client run sequences,
        // config files, the status document, metrics, reload and host setup.
        .target(
            name: "Control",
            dependencies: [
                "Crypto", "Transport", "Routing", "Engine", "Platform", "CQREncode", "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // `tunvpn demo` and `tunvpn bench`: apart from Control because neither runs a tunnel of its own (the
        // demo starts tunvpn processes in namespaces; the bench calls libsodium directly).
        .target(name: "TunnelDemo", dependencies: ["Control", "Crypto", "Platform", "Routing", "NamespaceLab"]),
        .target(name: "CipherBench", dependencies: ["CSodium", "Control", "Crypto", "Transport"]),
        .executableTarget(
            name: "tunvpn",
            dependencies: [
                "Control", "TunnelDemo", "CipherBench", "Crypto", "Transport", "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Test tool: many clients doing real handshakes against a server (bench/README.md).
        .executableTarget(
            name: "LoadGen",
            dependencies: [
                "Crypto", "Transport", "Engine", "Platform", "TestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Test tool: tunvpn's WireGuard-mode core against a real WireGuard peer (the interop oracle).
        .executableTarget(
            name: "WireGuardProbe",
            dependencies: [
                "Crypto", "Transport", "TestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The namespace-lab plans and the hex decoder, shared by the demo and the tests: no Testing, no
        // Foundation, so the tunvpn executable can link it.
        .target(name: "NamespaceLab"),
        .target(name: "TestSupport", dependencies: ["Engine", "Transport", "Crypto", "CLinux", "NamespaceLab"]),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "Crypto", "TestSupport"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing"]),
        .testTarget(
            name: "EngineTests",
            dependencies: [
                "Engine", "Transport", "Crypto", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "PlatformTests", dependencies: ["Platform", "Engine", "Routing", "Transport", "CLinux", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "Control", "Crypto", "Transport"]),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "tunvpn", "Control", "TunnelDemo", "TestSupport", "Crypto", "Platform", "Engine", "Transport", "Routing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "ControlTests",
            dependencies: [
                "Control", "Crypto", "Engine", "Platform", "Routing", "Transport", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
    ]
)

// libFuzzer targets (Fuzz/README.md), one executable per parser of untrusted input. They exist only when
// TUNVPN_FUZZ=1, so the ordinary `swift build` and `swift test` neither build nor resolve them; Fuzz/run.sh
// sets it and adds `-sanitize=fuzzer,address` for the whole graph, so the code under test is instrumented
// too. (A separate package under Fuzz/ would need library products for every room; this keeps the rooms'
// visibility as it is.)
if Context.environment["TUNVPN_FUZZ"] == "1" {
    let fuzzFlags: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
    package.targets.append(
        .target(name: "FuzzSupport", dependencies: ["Crypto", "Transport"], path: "Fuzz/Sources/FuzzSupport"))
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzDataFrame", ["Transport", "Crypto"]),
        ("FuzzHandshake", ["Transport", "Crypto"]),
        ("FuzzTunnelState", ["Transport", "Crypto"]),
        ("FuzzKeys", ["Crypto"]),
        ("FuzzAllowList", ["Transport", "Crypto"]),
        ("FuzzJournal", ["Routing"]),
        ("FuzzTCPOffload", ["Platform"]),
        ("FuzzUDPGRO", ["Platform", "Engine", "Transport", "CLinux"]),
        ("FuzzCookie", ["Transport", "Crypto"]),
        ("FuzzConfig", ["Control"]),
        ("FuzzWireGuard", ["Transport", "Crypto"]),
    ]
    for t in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: t.name, dependencies: t.dependencies + ["FuzzSupport"], path: "Fuzz/Sources/\(t.name)",
                swiftSettings: fuzzFlags))
        package.products.append(.executable(name: t.name, targets: [t.name]))
    }
}

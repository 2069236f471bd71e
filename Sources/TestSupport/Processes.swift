// Running the built `tunvpn` binary (and other commands) from tests, with captured output.
//
// Tests find the binary next to the test bundle (`swift test` builds every product into the same
// directory). Foundation is fine here: TestSupport is never linked into the daemon.

import Foundation

/// The output of a finished command.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

public enum TestBinaries {
    /// The build products directory (where `tunvpn` was built).
    public static var productsDirectory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // On Linux the runner is `<products>/<package>PackageTests.xctest`; elsewhere it may be nested.
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("tunvpn").path) { return url }
        }
        return URL(fileURLWithPath: ".build/debug")
    }

    /// Absolute path of the built `tunvpn`.
    public static var tunvpn: String { productsDirectory.appendingPathComponent("tunvpn").path }

    /// Absolute path of the built `tunvpn-loadgen` (the load generator of the scale tests).
    public static var loadgen: String { productsDirectory.appendingPathComponent("tunvpn-loadgen").path }

    /// Absolute path of the built `tunvpn-wgprobe` (tunvpn's WireGuard-mode core against a WireGuard peer).
    public static var wgprobe: String { productsDirectory.appendingPathComponent("tunvpn-wgprobe").path }
}

/// Runs `executable` with `arguments`, feeding `stdin`, and waits (at most `timeout` seconds, after which
/// the process is killed and the status is -9). Children start with an empty signal mask (see
/// `ChildProcess`: Foundation's `Process` would pass on the test thread's blocked signals).
@discardableResult
public func runCommand(_ executable: String, _ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws
    -> CommandResult
{
    try runChild([executable] + arguments, stdin: stdin, timeout: timeout)
}

/// A fresh temporary directory, removed by `remove()`.
public struct TemporaryDirectory {
    public let path: String
    public init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tunvpn-test-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.path
    }
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

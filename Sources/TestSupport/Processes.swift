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
}

/// Runs `executable` with `arguments`, feeding `stdin`, and waits (at most `timeout` seconds, after which
/// the process is killed and the status is -9).
@discardableResult
public func runCommand(
    _ executable: String, _ arguments: [String], stdin: String? = nil, workingDirectory: String? = nil,
    timeout: Double = 60
) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes on their own threads so a chatty child cannot block on a full pipe.
    let outData = LockedData()
    let errData = LockedData()
    let group = DispatchGroup()
    for (pipe, sink) in [(out, outData), (err, errData)] {
        group.enter()
        DispatchQueue.global().async {
            sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    var status: Int32
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        status = -9
    } else {
        status = process.terminationStatus
    }
    group.wait()
    return CommandResult(
        status: status, stdout: String(decoding: outData.get(), as: UTF8.self),
        stderr: String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
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

// Commands that end-to-end tests run, each printed as it runs (as `set -x` does in
// `WireGuard/wireguard-linux-compat:src/tests/netns.sh`), and the bounded polling they wait with.
//
// Every command is started by `ChildProcess` (looked up on PATH, with a clean signal mask). A command that fails prints its status and stderr under its `+` line, so a test log reads as a
// transcript of what the test did.

import Foundation

/// A command that exited with a non-zero status where success was required.
public struct CommandFailure: Error, CustomStringConvertible {
    public var command: [String]
    public var result: CommandResult
    public var description: String {
        "`\(shellQuoted(command))` exited with status \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}

/// Runs `arguments` (the first is looked up on PATH), printing `+ command` first and, on failure, the
/// status and stderr. Throws only if the command cannot be started; see `runLoggedChecked` to throw on
/// a non-zero status.
@discardableResult
public func runLogged(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> CommandResult {
    print("+ \(shellQuoted(arguments))")
    let result = try runChild(arguments, stdin: stdin, timeout: timeout)
    if result.status != 0 {
        let err = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        print("  (exit status \(result.status)\(err.isEmpty ? "" : ": " + err))")
    }
    return result
}

/// Runs `arguments` as `runLogged` does and throws `CommandFailure` unless it exits with status 0.
@discardableResult
public func runLoggedChecked(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> CommandResult {
    let result = try runLogged(arguments, stdin: stdin, timeout: timeout)
    guard result.status == 0 else { throw CommandFailure(command: arguments, result: result) }
    return result
}

/// Polls `condition` every `interval` seconds until it holds or `timeout` seconds pass; returns whether
/// it held. The condition is always tried at least once, and once more at the deadline.
public func waitUntil(timeout: Double, interval: Double = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(useconds_t(interval * 1_000_000))
    }
}

/// The command as a shell would need it typed (arguments with spaces or quotes in single quotes).
public func shellQuoted(_ arguments: [String]) -> String {
    arguments.map { argument in
        let plain = !argument.isEmpty
            && argument.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,+@%".contains($0) }
        return plain ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }.joined(separator: " ")
}

// One named network namespace (`ip netns add`) that an end-to-end test creates, runs commands in and
// deletes.
//
// Commands run as `ip netns exec NAME …` in a child process: the test process itself never calls
// setns(), which is per thread (setns(2)), and test threads are shared. Deleting the
// namespace first stops every process this object spawned, then any other process still inside it
// (all of them were started by the test, as nobody else knows the name), then removes it; its veth
// ends go with it.

import Foundation
import NamespaceLab

/// A named network namespace owned by a test.
///
/// Lifetime: `delete()` is idempotent and also runs when the object is released. Keep the object (or
/// the `Topology` holding it) alive for as long as it is used, e.g. with `defer { ns.delete() }`.
public final class NetworkNamespace: CustomStringConvertible, @unchecked Sendable {
    /// The name given to `ip netns add` (unique per test: see `Topology`).
    public let name: String
    private let lock = NSLock()
    private var spawned: [BackgroundProcess] = []
    private var deleted = false

    /// Creates the namespace and brings its loopback up.
    public init(name: String) throws {
        self.name = name
        let commands = LabPlan(prefix: "", hosts: [name], links: []).creationCommands(name)
        try runLoggedChecked(commands[0])
        do {
            for command in commands.dropFirst() { try runLoggedChecked(command) }
        } catch {
            delete()
            throw error
        }
    }

    deinit { delete() }

    /// Runs `arguments` inside the namespace (`ip netns exec NAME arguments…`), printed as it runs.
    /// Throws only if it cannot be started; the result carries the status.
    @discardableResult
    public func exec(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> CommandResult {
        try runLogged(["ip", "netns", "exec", name] + arguments, stdin: stdin, timeout: timeout)
    }

    /// Runs `arguments` inside the namespace and throws `CommandFailure` unless it exits with status 0.
    @discardableResult
    public func run(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> CommandResult {
        try runLoggedChecked(["ip", "netns", "exec", name] + arguments, stdin: stdin, timeout: timeout)
    }

    /// Runs `ip -n NAME arguments…` and throws unless it succeeds.
    @discardableResult
    public func ip(_ arguments: String...) throws -> CommandResult {
        try runLoggedChecked(["ip", "-n", name] + arguments)
    }

    /// Sets a sysctl of this namespace only (`net.*` keys are per namespace).
    public func sysctl(_ key: String, _ value: String) throws {
        try run(["sysctl", "-q", "-w", "\(key)=\(value)"])
    }

    /// Starts `arguments` in the background inside the namespace, its stdout and stderr going to
    /// `logFile`. The process is stopped by `delete()` at the latest.
    public func spawn(_ arguments: [String], logFile: String) throws -> BackgroundProcess {
        let process = try BackgroundProcess(["ip", "netns", "exec", name] + arguments, logFile: logFile)
        lock.withLock { spawned.append(process) }
        return process
    }

    /// Whether something listens on `port` here (`ss` for TCP listeners or bound UDP sockets).
    public func isListening(port: Int, udp: Bool = false) throws -> Bool {
        let result = try runChild(
            ["ip", "netns", "exec", name, "ss", "-Hn", udp ? "-lu" : "-lt", "sport = :\(port)"], timeout: 10)
        return result.status == 0 && !result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }

    /// Waits (polling, at most `timeout` seconds) until something listens on `port`.
    public func waitForListener(port: Int, udp: Bool = false, timeout: Double = 10) throws -> Bool {
        print("+ # waiting for a \(udp ? "UDP" : "TCP") socket on port \(port) in \(name)")
        return try waitUntil(timeout: timeout) { try isListening(port: port, udp: udp) }
    }

    /// Pings `address` from here: `count` echo requests, `interval` seconds apart, each waiting at most
    /// `wait` seconds. Extra arguments (such as `-p PATTERN` or `-s SIZE`) go before the address.
    @discardableResult
    public func ping(_ address: String, count: Int = 3, interval: Double = 0.2, wait: Int = 1, extra: [String] = [])
        throws -> CommandResult
    {
        try exec(
            ["ping", "-n", "-q", "-c", "\(count)", "-i", "\(interval)", "-W", "\(wait)"] + extra + [address],
            timeout: Double(count) * (interval + Double(wait)) + 5)
    }

    /// Pings `address` once a round until a reply comes or `timeout` seconds pass; returns whether one
    /// came. For readiness checks, where the first echo requests may be lost.
    public func waitForPing(_ address: String, timeout: Double = 10) throws -> Bool {
        try waitUntil(timeout: timeout, interval: 0.1) { try ping(address, count: 1).status == 0 }
    }

    /// The pids of every process inside the namespace (`ip netns pids`).
    public func pids() -> [pid_t] {
        let result = try? runChild(["ip", "netns", "pids", name], timeout: 10)
        return (result?.stdout ?? "").split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
    }

    /// Stops every process in the namespace (SIGTERM, then SIGKILL after 5 s) and deletes it.
    public func delete() {
        let processes: [BackgroundProcess]? = lock.withLock {
            guard !deleted else { return nil }
            deleted = true
            defer { spawned = [] }
            return spawned
        }
        guard let processes else { return }
        for process in processes { process.terminate() }
        // Anything left was started by this test inside this namespace (a child of a spawned process, or
        // a command whose `ip netns exec` timed out).
        var leftovers = pids()
        if !leftovers.isEmpty {
            print("+ kill -TERM \(leftovers.map(String.init).joined(separator: " "))  # left in \(name)")
            for pid in leftovers { kill(pid, SIGTERM) }
            _ = waitUntil(timeout: 5) { pids().isEmpty }
            leftovers = pids()
            if !leftovers.isEmpty {
                print("+ kill -KILL \(leftovers.map(String.init).joined(separator: " "))  # left in \(name)")
                for pid in leftovers { kill(pid, SIGKILL) }
                _ = waitUntil(timeout: 5) { pids().isEmpty }
            }
        }
        _ = try? runLogged(["ip", "netns", "delete", name])
    }

    public var description: String { name }
}

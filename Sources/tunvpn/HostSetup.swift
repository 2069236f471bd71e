// Applying and removing routing plans from the CLI, and `tunvpn down`.

import ArgumentParser
import Engine
import Glibc
import Logging
import Platform
import Routing

extension RoutingError: KeyFileErrorConvertible { var oneLine: String { description } }

/// Options about host changes, shared by server and client.
struct HostOptions: ParsableArguments {
    @Flag(help: "Print the host changes as ip, nft and sysctl commands, and exit without making them.")
    var dryRun = false

    @Option(help: "Firewall backend: nftables or iptables (default: nftables when nft is installed).")
    var firewall: String?

    func backend() throws -> FirewallBackend {
        if let firewall {
            guard let b = FirewallBackend(rawValue: firewall) else {
                throw CLIError("--firewall must be nftables or iptables, not '\(firewall)'")
            }
            return b
        }
        if CommandRunner.exists("nft") { return .nftables }
        if CommandRunner.exists("iptables") { return .iptables }
        throw CLIError("neither nft nor iptables is installed: install nftables (apt-get install nftables)")
    }
}

enum HostSetup {
    /// Undoes what a previous run left behind in this namespace for `device` (after kill -9).
    static func removeLeftovers(device: String, logger: Logger?) throws {
        // An unprivileged instance can neither have left a journal nor read root's.
        guard HostNetwork.stateDirectoryUsable else { return }
        let executor = PlanExecutor(executor: SystemCommandExecutor(), journal: try HostNetwork.journal(device: device))
        let pending = try executor.journal.entries()
        guard !pending.isEmpty else {
            try executor.journal.remove()
            return
        }
        let (undone, failures) = try executor.tearDown()
        logger?.notice("removed \(undone) change(s) left by a previous run on \(device)")
        for f in failures { logger?.warning("could not undo \(f)") }
    }

    /// Checks the plan can be applied, then applies it (rolling back on failure).
    static func apply(_ plan: Plan, device: String, logger: Logger) throws {
        guard !plan.changes.isEmpty else { return }
        try HostNetwork.preflight(plan)
        let executor = PlanExecutor(executor: SystemCommandExecutor(), journal: try HostNetwork.journal(device: device))
        try executor.apply(plan)
        logger.info("applied \(plan.changes.count) host change(s): \(plan.changes.map { $0.summary }.joined(separator: "; "))")
    }

    /// Removes the pid file of a killed instance on `device` (one that names no running tunvpn). A running
    /// instance removes its own at exit; a killed one leaves it, under a namespace id that is never reused.
    static func removeStalePidFile(device: String) {
        guard let path = try? HostNetwork.runtimePath(device: device, suffix: "pid"), KeyFiles.exists(path) else {
            return
        }
        let pid = (try? KeyFiles.readSmallFile(path, what: "pid file").text)
            .flatMap { Int32(String(decoding: $0, as: UTF8.self).split(separator: "\n").first ?? "") }
        let comm = pid.flatMap { try? KeyFiles.readSmallFile("/proc/\($0)/comm", what: "process").text }
        if comm.map({ String(decoding: $0, as: UTF8.self).hasPrefix("tunvpn") }) != true { unlink(path) }
    }

    /// Removes everything the journal for `device` records.
    static func tearDown(device: String, logger: Logger) {
        guard HostNetwork.stateDirectoryUsable else { return }
        do {
            let executor = PlanExecutor(executor: SystemCommandExecutor(), journal: try HostNetwork.journal(device: device))
            let (undone, failures) = try executor.tearDown()
            if undone > 0 { logger.info("removed \(undone) host change(s)") }
            for f in failures { logger.error("could not undo \(f)") }
        } catch {
            logger.error("teardown: \(error)")
        }
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the routes, rules and sysctl changes a killed tunvpn left behind.",
        discussion: """
            tunvpn records every host change in a journal under /run/tunvpn before making it, keyed by network
            namespace and device. A clean exit removes them itself; after kill -9 run this (the next start does
            it too).
            Example:
              tunvpn down --dev tun0
            """)

    @Option(help: "TUN device name of the instance to clean up after.")
    var dev: String = "tun0"

    @Flag(help: ArgumentHelp("Print the journal's path in this network namespace and exit.", visibility: .hidden))
    var printJournalPath = false

    func run() throws {
        try reportingErrors {
            if printJournalPath {
                print(try HostNetwork.journal(device: dev).path)
                return
            }
            let executor = PlanExecutor(executor: SystemCommandExecutor(), journal: try HostNetwork.journal(device: dev))
            let (undone, failures) = try executor.tearDown()
            HostSetup.removeStalePidFile(device: dev)
            try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: dev))  // a live one stays
            print(undone == 0 ? "nothing to remove for \(dev)" : "removed \(undone) change(s) for \(dev)")
            if !failures.isEmpty { throw CLIError("could not undo: " + failures.joined(separator: "; ")) }
        }
    }
}

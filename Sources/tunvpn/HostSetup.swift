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

/// What a running server or client owns in the state directory: the instance lock, held from before the
/// first host change until after the last undo, and its journal, opened once while the process is root.
/// Both are nil for an unprivileged run, which can neither journal host changes nor have left any.
final class InstanceFiles: Sendable {
    let device: String
    let lock: InstanceLock?
    let journal: FileJournal?

    init(device: String, lock: InstanceLock?, journal: FileJournal?) {
        self.device = device
        self.lock = lock
        self.journal = journal
    }

    /// Gives the instance up, after its teardown or a setup that failed: deletes the journal if it is
    /// empty and the lock file (where this process still may), and releases the lock.
    func finish() {
        journal?.unlinkIfEmpty()
        lock?.release()
    }
}

enum HostSetup {
    /// Takes ownership of `device` in this network namespace: the first thing a start does, before it
    /// removes leftovers, checks or changes anything. A start that finds a running owner changes nothing.
    ///
    /// - Throws: `CLIError` naming the running owner; `RoutingError` if the state directory, the lock or
    ///   the journal fails its checks.
    static func claim(device: String) throws -> InstanceFiles {
        // An unprivileged instance can neither have left a journal nor read root's.
        guard HostNetwork.stateDirectoryUsable else { return InstanceFiles(device: device, lock: nil, journal: nil) }
        switch try InstanceLock.acquire(device: device) {
        case .held(let pid):
            throw CLIError(inUse(device: device, pid: pid))
        case .acquired(let lock):
            return InstanceFiles(device: device, lock: lock, journal: try HostNetwork.journal(device: device))
        }
    }

    /// Deletes the lock files, empty journals and stale status sockets of this namespace's idle devices
    /// (no running owner, nothing to undo), which instances that gave up root could not delete themselves;
    /// each under its lock. Best effort: a device that cannot be locked or checked is left as it is.
    static func sweepIdleFiles() {
        for device in (try? HostNetwork.devicesWithFiles()) ?? [] where InstanceLock.owner(device: device) == nil {
            guard case .acquired(let lock)? = try? InstanceLock.acquire(device: device) else { continue }
            (try? HostNetwork.journal(device: device))?.unlinkIfEmpty()
            try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: device))
            lock.release()
        }
    }

    /// The refusal for a device a running instance owns.
    static func inUse(device: String, pid: Int32?) -> String {
        guard let pid, pid > 0 else {
            return "\(device) is in use by another tunvpn in this network namespace; stop it first (systemctl stop its unit)"
        }
        return "\(device) is in use by tunvpn pid \(pid) in this network namespace; stop it first (kill \(pid), or systemctl stop its unit)"
    }

    /// Undoes what a previous run left behind for the claimed device (after kill -9), and removes its
    /// stale status socket. Entries whose undo is in `keeping` stay (see `PlanExecutor.tearDown(keeping:)`).
    static func removeLeftovers(
        _ instance: InstanceFiles, keeping: [[String]] = [], executor: any CommandExecutor = SystemCommandExecutor(),
        logger: Logger?
    ) throws {
        try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: instance.device))
        guard let journal = instance.journal else { return }
        let pending = try journal.entries()
        guard !pending.isEmpty else { return }
        let (undone, failures) = try PlanExecutor(executor: executor, journal: journal).tearDown(keeping: keeping)
        if undone > 0 { logger?.notice("removed \(undone) change(s) left by a previous run on \(instance.device)") }
        if pending.count > undone {
            logger?.notice("kept the kill switch left by a previous run on \(instance.device) until the new one replaces it")
        }
        for f in failures { logger?.warning("could not undo \(f)") }
    }

    /// Checks the plan can be applied (unless `preflight` is false), then applies it (rolling back on failure).
    static func apply(
        _ plan: Plan, to instance: InstanceFiles, executor: any CommandExecutor = SystemCommandExecutor(),
        preflight: Bool = true, logger: Logger
    ) throws {
        guard !plan.changes.isEmpty else { return }
        guard let journal = instance.journal else {
            throw CLIError(
                "cannot journal host changes: \(HostNetwork.stateDirectory) is not usable by uid \(geteuid()); run as root, or leave routing to the operator (--no-routes, --no-nat)")
        }
        if preflight { try HostNetwork.preflight(plan) }
        try PlanExecutor(executor: executor, journal: journal).apply(plan)
        logger.info("applied \(plan.changes.count) host change(s): \(plan.changes.map { $0.summary }.joined(separator: "; "))")
    }

    /// Removes everything the instance's journal records, and deletes the emptied journal where this
    /// process still may (`InstanceFiles.finish()` then gives the instance up).
    static func tearDown(_ instance: InstanceFiles, logger: Logger) {
        guard let journal = instance.journal else { return }
        do {
            let (undone, failures) = try PlanExecutor(executor: SystemCommandExecutor(), journal: journal).tearDown()
            if undone > 0 { logger.info("removed \(undone) host change(s)") }
            for f in failures { logger.error("could not undo \(f)") }
        } catch {
            logger.error("teardown: \(error)")
        }
        journal.unlinkIfEmpty()
    }
}

/// Checks a network interface name from the command line (`--dev`, `--egress`): 1 to 15 bytes of ASCII
/// letters, digits, `_`, `.` and `-` (not `.` or `..`), so it is safe in nft rulesets and file names.
func validateInterfaceName(_ name: String, option: String) throws {
    let allowed = name.unicodeScalars.allSatisfy { c in
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "." || c == "-")
    }
    guard allowed, !name.isEmpty, name.utf8.count <= 15, name != ".", name != ".." else {
        throw ValidationError(
            "\(option) '\(name)' is not an interface name: use 1 to 15 of the characters A-Z a-z 0-9 _ . -")
    }
}

/// The one instance a command without `--dev` means, from the `found` instances of this network
/// namespace.
///
/// - Throws: `CLIError` when there is none or several (naming them, and asking for `--dev` to choose `what`).
func soleInstance(of found: [InstanceRecord], _ what: String) throws -> InstanceRecord {
    if found.count == 1 { return found[0] }
    if found.isEmpty { throw CLIError("no tunvpn server or client is running in this network namespace") }
    let list = found.map { r in r.device + (r.owner.map { " (pid \($0))" } ?? " (left by a killed instance)") }
    throw CLIError("\(found.count) tunvpn instances in this network namespace: \(list.joined(separator: ", ")); pass --dev to choose \(what)")
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the routes, rules and sysctl changes a killed tunvpn left behind.",
        discussion: """
            tunvpn records every host change in a journal under /run/tunvpn before making it, keyed by network
            namespace and device. A clean exit removes them itself; after kill -9 run this (the next start does
            it too). It leaves a running instance alone unless --stop is given. Without --dev it finds the
            instance of this network namespace.
            Examples:
              tunvpn down
              tunvpn down --dev tun0 --stop
            """)

    @Option(help: "TUN device name of the instance (default: the only one in this network namespace).")
    var dev: String?

    @Flag(help: "If the instance is running, stop it (SIGTERM) and wait up to 10 s for it to exit, then remove what is left.")
    var stop = false

    @Flag(help: "Keep the kill switch (the --lockdown table) up; the next start with --lockdown replaces it.")
    var keepLockdown = false

    @Flag(help: ArgumentHelp("Print the journal's path in this network namespace and exit.", visibility: .hidden))
    var printJournalPath = false

    func validate() throws {
        if let dev { try validateInterfaceName(dev, option: "--dev") }
    }

    func run() throws {
        try reportingErrors {
            if printJournalPath {
                print(HostNetwork.runtimeName(device: dev ?? "tun0", suffix: "journal"))
                return
            }
            let device: String
            if let dev {
                device = dev
            } else {
                let found = try HostNetwork.instances()
                guard !found.isEmpty else {
                    HostSetup.sweepIdleFiles()
                    print("nothing to remove: no tunvpn instance or leftovers in this network namespace")
                    return
                }
                device = try soleInstance(of: found, "the one to clean up after").device
            }
            var stopped: Int32? = nil
            var lock: InstanceLock
            switch try InstanceLock.acquire(device: device) {
            case .acquired(let acquired): lock = acquired
            case .held(let pid):
                guard stop, let pid, pid > 0 else {
                    throw CLIError(
                        HostSetup.inUse(device: device, pid: pid) + "; or run `tunvpn down --dev \(device) --stop` to stop it and clean up")
                }
                lock = try Self.stopOwner(pid, device: device)
                stopped = pid
            }
            defer { lock.release() }
            let journal = try HostNetwork.journal(device: device)
            let keeping = keepLockdown ? [Planner.lockdownUndo(device: device)] : []
            let pending = try journal.entries().count
            let (undone, failures) = try PlanExecutor(executor: SystemCommandExecutor(), journal: journal).tearDown(keeping: keeping)
            journal.unlinkIfEmpty()
            try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: device))  // a live one stays
            lock.release()
            HostSetup.sweepIdleFiles()
            if let stopped { print("stopped tunvpn pid \(stopped) on \(device)") }
            print(undone == 0 ? "nothing to remove for \(device)" : "removed \(undone) change(s) for \(device)")
            if pending > undone { print("kept the kill switch of \(device) (--keep-lockdown); the next start replaces it") }
            if !failures.isEmpty { throw CLIError("could not undo: " + failures.joined(separator: "; ")) }
        }
    }

    /// Sends SIGTERM to `pid` and waits up to 10 s for its lock to be released; returns the lock, taken.
    static func stopOwner(_ pid: Int32, device: String) throws -> InstanceLock {
        guard kill(pid, SIGTERM) == 0 else {
            throw CLIError("cannot stop tunvpn pid \(pid): \(String(cString: strerror(errno)))")
        }
        let deadline = SystemClock().monotonicNow() + 10_000_000_000
        while SystemClock().monotonicNow() < deadline {
            if case .acquired(let lock) = try InstanceLock.acquire(device: device) { return lock }
            var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            _ = nanosleep(&pause, nil)
        }
        throw CLIError("tunvpn pid \(pid) on \(device) did not exit within 10 s of SIGTERM; check its log, or kill -9 \(pid) and run tunvpn down again")
    }
}

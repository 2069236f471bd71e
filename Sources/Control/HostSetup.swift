// Host changes of a running server or client: owning a device in this network namespace (the instance
// lock and journal), removing a killed run's leftovers, applying plans and tearing them down, and finding
// the instances of this namespace.

import Engine
import Glibc
import Logging
import Platform
import Routing

/// The firewall backend `--firewall NAME` asks for, or the one this host has (nftables first).
///
/// - Throws: `ControlError` for an unknown name, or when neither nft nor iptables is installed.
public func firewallBackend(named firewall: String?) throws(ControlError) -> FirewallBackend {
    if let firewall {
        guard let b = FirewallBackend(rawValue: firewall) else {
            throw ControlError("--firewall must be nftables or iptables, not '\(firewall)'")
        }
        return b
    }
    if CommandRunner.exists("nft") { return .nftables }
    if CommandRunner.exists("iptables") { return .iptables }
    throw ControlError("neither nft nor iptables is installed: install nftables (apt-get install nftables)")
}

/// What a running server or client owns in the state directory: the instance lock, held from before the
/// first host change until after the last undo, and its journal, opened once while the process is root.
/// Both are nil for an unprivileged run, which can neither journal host changes nor have left any.
public final class InstanceFiles: Sendable {
    public let device: String
    public let lock: InstanceLock?
    public let journal: FileJournal?

    public init(device: String, lock: InstanceLock?, journal: FileJournal?) {
        self.device = device
        self.lock = lock
        self.journal = journal
    }

    /// Gives the instance up, after its teardown or a setup that failed: deletes the journal if it is
    /// empty and the lock file (where this process still may), and releases the lock.
    public func finish() {
        journal?.unlinkIfEmpty()
        lock?.release()
    }
}

public enum HostSetup {
    /// Takes ownership of `device` in this network namespace: the first thing a start does, before it
    /// removes leftovers, checks or changes anything. A start that finds a running owner changes nothing.
    ///
    /// - Throws: `ControlError` naming the running owner; `RoutingError` if the state directory, the lock or
    ///   the journal fails its checks.
    public static func claim(device: String) throws -> InstanceFiles {
        // An unprivileged instance can neither have left a journal nor read root's.
        guard HostNetwork.stateDirectoryUsable else { return InstanceFiles(device: device, lock: nil, journal: nil) }
        switch try InstanceLock.acquire(device: device) {
        case .held(let pid):
            throw ControlError(inUse(device: device, pid: pid))
        case .acquired(let lock):
            return InstanceFiles(device: device, lock: lock, journal: try HostNetwork.journal(device: device))
        }
    }

    /// Deletes the lock files, empty journals and stale status sockets of this namespace's idle devices
    /// (no running owner, nothing to undo), which instances that gave up root could not delete themselves;
    /// each under its lock. Best effort: a device that cannot be locked or checked is left as it is.
    public static func sweepIdleFiles() {
        for device in (try? HostNetwork.devicesWithFiles()) ?? [] where InstanceLock.owner(device: device) == nil {
            guard case .acquired(let lock)? = try? InstanceLock.acquire(device: device) else { continue }
            (try? HostNetwork.journal(device: device))?.unlinkIfEmpty()
            (try? HostNetwork.dnsJournal(device: device))?.unlinkIfEmpty()
            try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: device))
            lock.release()
        }
    }

    /// The refusal for a device a running instance owns.
    public static func inUse(device: String, pid: Int32?) -> String {
        guard let pid, pid > 0 else {
            return "\(device) is in use by another tunvpn in this network namespace; stop it first (systemctl stop its unit)"
        }
        return "\(device) is in use by tunvpn pid \(pid) in this network namespace; stop it first (kill \(pid), or systemctl stop its unit)"
    }

    /// Undoes what a previous run left behind for the claimed device (after kill -9), and removes its
    /// stale status socket. Entries whose undo is in `keeping` stay (see `PlanExecutor.tearDown(keeping:)`).
    public static func removeLeftovers(
        _ instance: InstanceFiles, keeping: [[String]] = [], executor: any CommandExecutor = SystemCommandExecutor(),
        logger: Logger?
    ) throws {
        try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: instance.device))
        guard let journal = instance.journal else { return }
        let (dnsUndone, dnsFailures) = try restoreDNS(device: instance.device, executor: executor)
        if dnsUndone > 0 { logger?.notice("restored \(dnsUndone) DNS change(s) left by a previous run on \(instance.device)") }
        for f in dnsFailures { logger?.warning("could not undo \(f)") }
        let pending = try journal.entries()
        guard !pending.isEmpty else { return }
        let (undone, failures) = try PlanExecutor(executor: executor, journal: journal).tearDown(keeping: keeping)
        if undone > 0 { logger?.notice("removed \(undone) change(s) left by a previous run on \(instance.device)") }
        if pending.count > undone {
            logger?.notice("kept the kill switch left by a previous run on \(instance.device) until the new one replaces it")
        }
        for f in failures { logger?.warning("could not undo \(f)") }
    }

    /// Replays the DNS agent's journal of `device` (left when the client and its agent were both killed)
    /// and deletes it once empty; the caller holds the instance lock and is root.
    static func restoreDNS(
        device: String, executor: any CommandExecutor = SystemCommandExecutor()
    ) throws -> (undone: Int, failures: [String]) {
        let journal = try HostNetwork.dnsJournal(device: device)
        defer { journal.unlinkIfEmpty() }
        guard !(try journal.entries()).isEmpty else { return (0, []) }
        return try PlanExecutor(executor: executor, journal: journal).tearDown()
    }

    /// Applies `plan` in order: the host changes before its device steps (settings of the device that must
    /// precede its going up, `Planner.quietIPv6`), the device steps, by `device`, then the other host
    /// changes; host changes journaled, after checking they can be applied (unless `preflight` is false).
    /// A failed host change rolls back the others.
    ///
    /// - Precondition: the plan's device steps are together, and `device` is given when there are any
    ///   (the daemons build their plans so).
    public static func apply(
        _ plan: Plan, to instance: InstanceFiles, device: (any DeviceConfiguring)? = nil,
        executor: any CommandExecutor = SystemCommandExecutor(), preflight: Bool = true, logger: Logger
    ) throws {
        let isDevice = { (c: Change) -> Bool in if case .device = c { true } else { false } }
        let before = Array(plan.changes.prefix { !isDevice($0) })
        if before.count < plan.changes.count {
            try applyHost(Plan(before), to: instance, executor: executor, preflight: preflight, logger: logger)
        }
        let deviceSteps = plan.changes.dropFirst(before.count).prefix(while: isDevice)
        for case .device(let settings) in deviceSteps {
            guard let device else { preconditionFailure("a plan with a device step is applied with its device") }
            try device.apply(settings)
        }
        let rest = before.count == plan.changes.count ? before : Array(plan.changes.dropFirst(before.count + deviceSteps.count))
        try applyHost(Plan(rest), to: instance, executor: executor, preflight: preflight, logger: logger)
    }

    /// Applies host changes (no device step) through the instance's journal.
    static func applyHost(
        _ host: Plan, to instance: InstanceFiles, executor: any CommandExecutor, preflight: Bool, logger: Logger
    ) throws {
        guard !host.changes.isEmpty else { return }
        guard let journal = instance.journal else {
            throw ControlError(
                "cannot journal host changes: \(HostNetwork.stateDirectory) is not usable by uid \(geteuid()); run as root, or leave routing to the operator (--no-routes, --no-nat)")
        }
        if preflight { try HostNetwork.preflight(host) }
        try PlanExecutor(executor: executor, journal: journal).apply(host)
        logger.info("applied \(host.changes.count) host change(s): \(host.changes.map { $0.summary }.joined(separator: "; "))")
    }

    /// Removes everything the instance's journal records, and deletes the emptied journal where this
    /// process still may (`InstanceFiles.finish()` then gives the instance up).
    public static func tearDown(_ instance: InstanceFiles, logger: Logger) {
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

    /// `tunvpn down`: undoes what the journal of `device` (or of the only instance or leftovers in this
    /// network namespace) records, printing what it did; with `stop`, stops a running owner first.
    ///
    /// - Throws: `ControlError` when the device is in use (without `stop`), or an undo failed.
    public static func down(device dev: String?, stop: Bool, keepLockdown: Bool) throws {
        try InstanceRequests.requireStateDirectory("down", why: "the journals of the host changes to undo")
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
                throw ControlError(
                    HostSetup.inUse(device: device, pid: pid) + "; or run `tunvpn down --dev \(device) --stop` to stop it and clean up")
            }
            lock = try stopOwner(pid, device: device)
            stopped = pid
        }
        defer { lock.release() }
        let journal = try HostNetwork.journal(device: device)
        let keeping = keepLockdown ? [Planner.lockdownUndo(device: device)] : []
        // The DNS agent's journal first: its changes were made last.
        let (dnsUndone, dnsFailures) = try restoreDNS(device: device)
        let pending = try journal.entries().count + dnsUndone
        var (undone, failures) = try PlanExecutor(executor: SystemCommandExecutor(), journal: journal).tearDown(keeping: keeping)
        undone += dnsUndone
        failures = dnsFailures + failures
        journal.unlinkIfEmpty()
        try? UnixSocketServer.removeStale(HostNetwork.statusSocketPath(device: device))  // a live one stays
        lock.release()
        HostSetup.sweepIdleFiles()
        if let stopped { print("stopped tunvpn pid \(stopped) on \(device)") }
        print(undone == 0 ? "nothing to remove for \(device)" : "removed \(undone) change(s) for \(device)")
        if pending > undone { print("kept the kill switch of \(device) (--keep-lockdown); the next start replaces it") }
        if !failures.isEmpty { throw ControlError("could not undo: " + failures.joined(separator: "; ")) }
    }

    /// Sends SIGTERM to `pid` and waits up to 10 s for its lock to be released; returns the lock, taken.
    static func stopOwner(_ pid: Int32, device: String) throws -> InstanceLock {
        guard kill(pid, SIGTERM) == 0 else {
            throw ControlError("cannot stop tunvpn pid \(pid): \(String(cString: strerror(errno)))")
        }
        let deadline = SystemClock().monotonicNow() + 10_000_000_000
        while SystemClock().monotonicNow() < deadline {
            if case .acquired(let lock) = try InstanceLock.acquire(device: device) { return lock }
            var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            _ = nanosleep(&pause, nil)
        }
        throw ControlError("tunvpn pid \(pid) on \(device) did not exit within 10 s of SIGTERM; check its log, or kill -9 \(pid) and run tunvpn down again")
    }
}

/// The one instance a command without `--dev` means, from the `found` instances of this network
/// namespace.
///
/// - Throws: `ControlError` when there is none or several (naming them, and asking for `--dev` to choose `what`).
public func soleInstance(of found: [InstanceRecord], _ what: String) throws -> InstanceRecord {
    if found.count == 1 { return found[0] }
    if found.isEmpty { throw ControlError("no tunvpn server or client is running in this network namespace") }
    let list = found.map { r in r.device + (r.owner.map { " (pid \($0))" } ?? " (left by a killed instance)") }
    throw ControlError("\(found.count) tunvpn instances in this network namespace: \(list.joined(separator: ", ")); pass --dev to choose \(what)")
}


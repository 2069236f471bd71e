// The host options of `tunvpn server` and `tunvpn client`, and `tunvpn down`.

import ArgumentParser
import Control
import Engine
import Glibc
import Logging
import Platform
import Routing

/// Options about host changes, shared by server and client.
struct HostOptions: ParsableArguments {
    @Flag(help: "Print the host changes as ip, nft and sysctl commands, and exit without making them.")
    var dryRun = false

    @Option(help: "Firewall backend: nftables or iptables (default: nftables when nft is installed).")
    var firewall: String?

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
                    throw ControlError(
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
            if !failures.isEmpty { throw ControlError("could not undo: " + failures.joined(separator: "; ")) }
        }
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

// The host options of `tunvpn server` and `tunvpn client`, and `tunvpn down`.

import ArgumentParser
import Control
import Platform

/// Options about host changes, shared by server and client.
struct HostOptions: ParsableArguments {
    @Flag(help: "Print the host changes as ip, nft and sysctl commands, and exit without making them.")
    var dryRun = false

    @Option(help: ArgumentHelp("Firewall backend: nftables or iptables (default: nftables when nft is installed).", valueName: "BACKEND"))
    var firewall: String?

    func validate() throws {
        if let firewall, !["nftables", "iptables"].contains(firewall) {
            throw ValidationError("--firewall '\(firewall)' is not a backend: give nftables or iptables, e.g. --firewall nftables")
        }
    }
}

/// Checks a network interface name from the command line (`--dev`, `--egress`): 1 to 15 bytes of ASCII
/// letters, digits, `_`, `.` and `-` (not `.` or `..`), so it is safe in nft rulesets and file names.
func validateInterfaceName(_ name: String, option: String) throws {
    let allowed = name.unicodeScalars.allSatisfy { c in
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "." || c == "-")
    }
    let example = option == "--egress" ? "eth0" : "tun0"
    if name.isEmpty { throw ValidationError("\(option) is empty: give an interface name, e.g. \(option) \(example)") }
    if name.utf8.count > 15 {
        throw ValidationError(
            "\(option) '\(name)' is \(name.utf8.count) bytes long, the limit for an interface name is 15 (IFNAMSIZ - 1); e.g. \(option) \(example)")
    }
    guard allowed, name != ".", name != ".." else {
        throw ValidationError(
            "\(option) '\(name)' is not an interface name: use 1 to 15 of the characters A-Z a-z 0-9 _ . -, e.g. \(option) \(example)")
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the routes, rules and sysctl changes a killed tunvpn left behind.",
        discussion: """
            tunvpn records every host change in a journal under /run/tunvpn before making it, keyed by \
            network namespace and device. A clean exit removes them itself; after kill -9 run this (the next \
            start does it too). It leaves a running instance alone unless --stop is given. Without --dev it \
            finds the instance of this network namespace.

            Examples:
              tunvpn down
              tunvpn down --dev tun0 --stop
            """)

    @Option(help: ArgumentHelp("TUN device name of the instance (default: the only one in this network namespace).", valueName: "NAME"))
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
            try HostSetup.down(device: dev, stop: stop, keepLockdown: keepLockdown)
        }
    }
}

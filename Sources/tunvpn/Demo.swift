// `tunvpn demo`: the whole VPN on one machine, in throwaway network namespaces (Sources/TunnelDemo has
// the lab, its topology and the checks).

import ArgumentParser
import Control
import TunnelDemo

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Run a client, a server and three more hosts in throwaway network namespaces, and show the VPN working.",
        discussion: """
            Needs root, ip, ping, python3, tcpdump, sysctl, and nft or iptables. Everything lives in \
            network namespaces named tvdemo-PID-*; the root namespace never changes. All of it is removed at \
            the end, on any failure and on Ctrl-C. Exit status 0 when every check passed.

            Example:
              sudo tunvpn demo
            """)

    @Flag(help: "Print every command as it runs.")
    var verbose = false

    func run() throws {
        if let failure = DemoRun.run(verbose: verbose) {
            printError(failure)
            throw ExitCode(1)
        }
    }
}

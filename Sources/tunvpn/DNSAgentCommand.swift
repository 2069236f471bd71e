// `tunvpn dns-agent` (hidden): the DNS agent a root client starts before it drops privileges
// (Control/DNSAgent.swift, docs/ROUTING.md "DNS"); not meant to be run by hand.

import ArgumentParser
import Control

struct DNSAgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns-agent", abstract: "The DNS agent of a running client (started by tunvpn client).", shouldDisplay: false)

    @Option(help: "The descriptor of the client's socket.")
    var fd: Int32

    @Option(help: "The client's TUN device.")
    var dev: String

    func run() throws {
        let status = DNSAgent.run(fd: fd, device: dev)
        if status != 0 { throw ExitCode(status) }
    }
}

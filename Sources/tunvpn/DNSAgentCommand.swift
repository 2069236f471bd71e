// `tunvpn dns-agent` (hidden): the DNS agent a root client starts before it drops privileges
// (Control/DNSAgent.swift, docs/ROUTING.md "DNS"); not meant to be run by hand.

import ArgumentParser
import Control

struct DNSAgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns-agent", abstract: "The DNS agent of a running client (started by tunvpn client).", shouldDisplay: false)

    @Option(help: ArgumentHelp("The descriptor of the client's socket.", valueName: "FD"))
    var fd: Int32

    @Option(help: ArgumentHelp("The client's TUN device.", valueName: "NAME"))
    var dev: String

    func run() throws {
        let status = DNSAgent.run(fd: fd, device: dev)
        if status != 0 { throw ExitCode(status) }
    }
}

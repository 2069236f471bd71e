// `tunvpn uapi-cleanup` (hidden): the keeper a root server or client in WireGuard mode starts before it
// drops privileges, to remove wg(8)'s configuration socket when it ends (Control/UAPIService.swift); not
// meant to be run by hand.

import ArgumentParser
import Control

struct UAPICleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uapi-cleanup", abstract: "Removes a running instance's wg configuration socket when it ends.",
        shouldDisplay: false)

    @Option(help: ArgumentHelp("The descriptor of its end of the instance's socketpair.", valueName: "FD"))
    var fd: Int32

    @Option(help: ArgumentHelp("The instance's TUN device.", valueName: "NAME"))
    var dev: String

    @Option(help: ArgumentHelp("The socket file's device and inode.", valueName: "DEV:INODE"))
    var socketID: String

    func run() throws {
        let status = UAPICleanup.run(fd: fd, device: dev, socketID: socketID)
        if status != 0 { throw ExitCode(status) }
    }
}

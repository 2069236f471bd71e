// The tunvpn command line: parses arguments into Control's settings, and turns every error into one line
// on stderr and an exit status.

import ArgumentParser
import Control
import Glibc

@main
struct TunVPN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunvpn",
        abstract: "An encrypted layer-3 VPN for Linux.",
        discussion: """
            Quick start:
              tunvpn keygen --name server          # on the server
              tunvpn keygen --name client          # on the client
              tunvpn server --key keys/server.key --allow-any-client
              tunvpn client --peer-key keys/server.pub --endpoint vpn.example.com:51820
            """,
        version: BuildInfo.text.trimmingSuffix("\n"),
        subcommands: [
            Server.self, Client.self, Down.self, Reload.self, Show.self, Keygen.self, Pubkey.self, Demo.self, Bench.self,
            DNSAgentCommand.self,
            AddClient.self, RemoveClient.self, Genpsk.self, VersionCommand.self,
        ])

    /// Expands `--config FILE` (ConfigFile.swift) before ArgumentParser parses the command line.
    static func main() {
        let arguments: [String]
        do { arguments = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst())) } catch {
            printError(error.description)
            Glibc.exit(1)
        }
        main(arguments)
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print the version, the protocol version and the cipher suites compiled in (as --version).")

    func run() throws { print(BuildInfo.text, terminator: "") }
}

extension ParsableCommand {
    /// Runs `body`, printing any error as `tunvpn: error: …` and exiting with status 1.
    func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as any OneLineError {
            printError(e.oneLine)
            throw ExitCode(1)
        }
    }
}

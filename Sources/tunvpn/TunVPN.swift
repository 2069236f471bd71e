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
            Quick start (copy server.pub to the client, and client.pub to the server):
              tunvpn keygen --name server          # on the server
              tunvpn keygen --name client          # on the client
              cat client.pub >> keys/clients       # on the server: its allow-list
              tunvpn server --key keys/server.key --clients keys/clients
              tunvpn client --peer-key keys/server.pub --endpoint vpn.example.com:51820

            Errors: every error is one line on stderr, `tunvpn: error: WHAT: WHY; WHAT TO DO`, naming the \
            option or file at fault. Exit status: 0 success; 64 (EX_USAGE) the command line or its \
            --config file is wrong, and nothing was done; 1 a failure while running (a file, a key, \
            privileges, the host, the network).
            """,
        version: BuildInfo.text.trimmingSuffix("\n"),
        subcommands: [
            Server.self, Client.self, Down.self, Reload.self, Show.self, Keygen.self, Pubkey.self, Demo.self, Bench.self,
            DNSAgentCommand.self,
            UAPICleanupCommand.self,
            AddClient.self, RemoveClient.self, Genpsk.self, VersionCommand.self,
        ])

    /// Expands `--config FILE` (ConfigFile.swift) before ArgumentParser parses the command line; every
    /// error ends the program as `exit(reporting:)` says.
    static func main() {
        let arguments: [String]
        do { arguments = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst())) } catch {
            printError(error.description)
            Glibc.exit(ExitStatus.usage)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(reporting: error)
        }
    }

    /// Ends the program for `error` with the one error style and exit status of every command (the root
    /// command's help documents them): help and completion requests print as ArgumentParser prints them
    /// (status 0); an `ExitCode` was reported already; anything else is one `tunvpn: error: …` line, status
    /// 64 (EX_USAGE, sysexits.h) for the command line's mistakes and 1 for failures while running. The
    /// usage block ArgumentParser appends is left out: the one line says what is wrong, `--help` the rest.
    static func exit(reporting error: any Error) -> Never {
        let code = exitCode(for: error)
        if code == .success { exit(withError: error) }
        if let code = error as? ExitCode { Glibc.exit(code.rawValue) }
        let text = String(message(for: error).split(separator: "\n").joined(separator: " "))
        printError(text.isEmpty ? "\(error)" : text)
        Glibc.exit(code == .validationFailure ? ExitStatus.usage : ExitStatus.failure)
    }
}

/// The exit statuses of every command (see the root command's help).
enum ExitStatus {
    /// The command line or its --config file is wrong (EX_USAGE, sysexits.h); nothing was done.
    static let usage: Int32 = 64
    /// A failure while running: files, keys, privileges, the host, the network.
    static let failure: Int32 = 1
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

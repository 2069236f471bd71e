// The tunvpn command line: parses arguments, picks the real adapters, and turns every error into one
// line on stderr and an exit status.

import ArgumentParser
import Crypto
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
        subcommands: [
            Server.self, Client.self, Down.self, Reload.self, Show.self, Keygen.self, Pubkey.self, Demo.self, Bench.self,
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

/// A failure the user can act on: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension ParsableCommand {
    /// Runs `body`, printing any error as `tunvpn: error: …` and exiting with status 1.
    func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as CLIError {
            printError(e.message)
            throw ExitCode(1)
        } catch let e as KeyFileErrorConvertible {
            printError(e.oneLine)
            throw ExitCode(1)
        }
    }
}

/// Errors from other rooms that already describe themselves in one line.
protocol KeyFileErrorConvertible: Error { var oneLine: String { get } }

/// Writes one line to stderr.
func printError(_ message: String) {
    let line = "tunvpn: error: \(message)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}

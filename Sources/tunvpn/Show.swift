// `tunvpn show`: asks every server and client running in this network namespace for its status over
// its Unix socket (`/run/tunvpn/<netns id>-<dev>.sock`) and prints it as `wg show` does, or as JSON.

import ArgumentParser
import Control

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the servers and clients running in this network namespace, as `wg show` does.",
        discussion: """
            Each running server or client answers on a root-only socket in /run/tunvpn; a killed one's \
            leftovers are mentioned. Run inside a network namespace (ip netns exec NS tunvpn show), it \
            shows that namespace's instances only. --json prints one JSON object per line.

            Examples:
              tunvpn show
              tunvpn show --dev tun0 --json
            """)

    @Flag(help: "Print each instance's status as one JSON object per line.")
    var json = false

    @Option(help: ArgumentHelp("Only the instance using this TUN device.", valueName: "NAME"))
    var dev: String?

    func validate() throws {
        if let dev { try validateInterfaceName(dev, option: "--dev") }
    }

    func run() throws {
        try reportingErrors {
            let replies = try InstanceRequests.statusReplies(device: dev)
            if json {
                for reply in replies { printLine(String(decoding: reply.bytes, as: UTF8.self).trimmingSuffix("\n")) }
                return
            }
            print(try InstanceRequests.statusText(replies), terminator: "")
        }
    }
}

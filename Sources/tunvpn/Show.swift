// `tunvpn show`: asks every server and client running in this network namespace for its status over
// its Unix socket (`/run/tunvpn/<netns id>-<dev>.sock`) and prints it as `wg show` does, or as JSON.

import ArgumentParser
import Engine
import Glibc
import Platform

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the servers and clients running in this network namespace, as `wg show` does.",
        discussion: """
            Each running server or client answers on a root-only socket in /run/tunvpn; a killed one's
            leftovers are mentioned.
            Run inside a network namespace (ip netns exec NS tunvpn show), it shows
            that namespace's instances only. --json prints one JSON object per line.
            Examples:
              tunvpn show
              tunvpn show --dev tun0 --json
            """)

    @Flag(help: "Print each instance's status as one JSON object per line.")
    var json = false

    @Option(help: "Only the instance using this TUN device.")
    var dev: String?

    func validate() throws {
        if let dev { try validateInterfaceName(dev, option: "--dev") }
    }

    func run() throws {
        try reportingErrors {
            let sockets: [(device: String, path: String)]
            if let dev {
                sockets = [(dev, HostNetwork.statusSocketPath(device: dev))]
            } else {
                do throws(IOError) { sockets = try HostNetwork.statusSockets() } catch {
                    throw CLIError("cannot list \(HostNetwork.stateDirectory): \(Self.reason(error))")
                }
            }
            var replies: [(device: String, path: String, bytes: [UInt8])] = []
            for socket in sockets {
                do throws(IOError) {
                    replies.append((socket.device, socket.path, try UnixSocketClient.fetch(socket.path)))
                } catch  where error.errno == ECONNREFUSED || error.errno == ENOENT {
                    continue  // a socket left by an instance that was killed, or none for --dev
                } catch {
                    throw CLIError(
                        "cannot read the status of \(socket.device) from \(socket.path): \(Self.reason(error))")
                }
            }
            guard !replies.isEmpty else {
                // A killed instance's host changes (a kill switch, routes) are worth a word.
                let left = ((try? HostNetwork.instances()) ?? []).filter { $0.hasLeftovers && $0.owner == nil }
                    .filter { dev == nil || $0.device == dev }.map(\.device)
                let note = left.isEmpty
                    ? ""
                    : "; a killed instance left host changes on \(left.joined(separator: ", ")): `tunvpn down --dev \(left[0])` removes them"
                if let dev { throw CLIError("no tunvpn server or client uses \(dev) in this network namespace" + note) }
                throw CLIError("no tunvpn server or client is running in this network namespace" + note)
            }
            if json {
                for reply in replies {
                    printLine(String(decoding: reply.bytes, as: UTF8.self).trimmingSuffix("\n"))
                }
                return
            }
            let now = SystemClock().wallNow().seconds
            var blocks: [String] = []
            for reply in replies {
                let snapshot: EngineSnapshot
                do { snapshot = try StatusJSON.decode(JSONValue(parsing: reply.bytes)) } catch let e as JSONError {
                    throw CLIError("status of \(reply.device) (\(reply.path)): \(e)")
                }
                blocks.append(StatusText.render(snapshot, now: now))
            }
            print(blocks.joined(separator: "\n"), terminator: "")
        }
    }
}

extension Show {
    /// strerror(3)'s words for `error`, with what to do about a permission error.
    static func reason(_ error: IOError, command: String = "show") -> String {
        let text = String(cString: strerror(error.errno))
        return error.errno == EACCES || error.errno == EPERM ? "\(text); run tunvpn \(command) as root" : text
    }
}

extension String {
    /// The string without one trailing `suffix`, if it ends with it.
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

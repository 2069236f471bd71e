// End-to-end tests of `tunvpn show` and `--metrics` (README.md, "Status and metrics"): a real server and client in namespaces,
// traffic through the tunnel, then the status socket read with `ip netns exec S tunvpn show [--json]`
// and the metrics fetched over HTTP on 127.0.0.1 inside the server's namespace.
//
//     client ns (C)                 server ns (S)                   internet host ns (H)
//     c0 10.100.k.2/24 ──────────── s0 10.100.k.1/24
//     tun0 10.8.0.2/16              s1 10.200.k.1/24 ────────────── h0 10.200.k.2/24
//       ╰── UDP to 10.100.k.1:51820 ──╯ tun0 10.8.0.1/16            (no tunvpn here: `show` fails)
//                                       metrics on 127.0.0.1:9586
//
// Each test builds its own topology and keys and removes both on every way out (TunnelLab.use).

import Foundation
import TestSupport
import Testing

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct StatusEndToEndTests {
    static let metricsPort = 9586

    /// Keys, an allow-list with the client, the server (with `--metrics`) and the client started, the
    /// tunnel up and 5 pings through it; returns (server, client, client public key).
    func startTunnelWithTraffic(_ lab: TunnelLab) throws -> (
        server: BackgroundProcess, client: BackgroundProcess, clientKey: String
    ) {
        try lab.keygen("server")
        let clientKey = try lab.keygen("client")
        try lab.writeAllowList(["\(clientKey)  # client (the test's)"])
        let server = try lab.startServer(extra: ["--metrics", "127.0.0.1:\(Self.metricsPort)"])
        let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"), extra: ["--keepalive", "25"])
        #expect(try lab.waitForTunnelUp(client) == "10.8.0.2")
        #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 5).status == 0)
        return (server, client, clientKey)
    }

    @Test func showPrintsTheServerAndClientAsWgShowDoesAndAsJSON() throws {
        try TunnelLab.standard().use { lab in
            let (server, client, clientKey) = try startTunnelWithTraffic(lab)
            let serverKey = try String(contentsOfFile: lab.path("keys/server.pub"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let clientUnderlay = lab.topology.address("C", "c0")
            let serverUnderlay = lab.topology.address("S", "s0")

            // The server's view, as text.
            let shown = try lab["S"].run([TestBinaries.tunvpn, "show"])
            let text = shown.stdout
            print(text)
            #expect(shown.stderr == "")
            #expect(
                text.hasPrefix(
                    "interface: tun0\n  public key: \(serverKey)\n  listening port: 51820\n  role: server\n  suites: "))
            #expect(!text.contains("role: client"), "the client runs in another namespace")
            // The allow-list line's comment starts with "client": its name.
            #expect(text.contains("\npeer: \(clientKey)\n  name: client\n  endpoint: \(clientUnderlay):"))
            // wg's wording; the client's IPv6 address follows when the tunnel carries IPv6.
            #expect(text.contains("\n  allowed ips: 10.8.0.2/32"))
            #expect(text.contains("\n  latest handshake: "))
            #expect(text.firstMatch(of: /latest handshake: (Now|\d+ seconds? ago)\n/) != nil, "a handshake seconds ago")
            #expect(
                text.firstMatch(of: /\n  transfer: \d+(\.\d\d)? (B|KiB) received, \d+(\.\d\d)? (B|KiB) sent\n/) != nil)

            // The server's view, as JSON: one object per line.
            let json = try lab["S"].run([TestBinaries.tunvpn, "show", "--json", "--dev", "tun0"]).stdout
            #expect(json.hasSuffix("}\n") && json.split(separator: "\n").count == 1)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            #expect(object["interface"] as? String == "tun0")
            #expect(object["role"] as? String == "server")
            #expect(object["public_key"] as? String == serverKey)
            #expect(object["listen_port"] as? Int == 51820)
            let peers = try #require(object["peers"] as? [[String: Any]])
            #expect(peers.count == 1)
            let peer = try #require(peers.first)
            #expect(peer["public_key"] as? String == clientKey)
            #expect((peer["endpoint"] as? String)?.hasPrefix("\(clientUnderlay):") == true)
            #expect(peer["tunnel_address"] as? String == "10.8.0.2")
            #expect((peer["rx_bytes"] as? Int ?? 0) >= 5 * 84, "5 pings of 84 bytes at least")
            #expect((peer["tx_bytes"] as? Int ?? 0) >= 5 * 84)
            #expect((peer["rx_packets"] as? Int ?? 0) >= 5)
            let handshake = try #require(peer["latest_handshake"] as? Int)
            #expect(abs(Double(handshake) - Date().timeIntervalSince1970) < 60)
            let counters = try #require(object["counters"] as? [String: Int])
            #expect(counters["handshakes.completed"] == 1)
            #expect(counters["drop.authentication"] == 0)

            // The client's view, in its own namespace: the server as its peer, with the keepalive.
            let clientText = try lab["C"].run([TestBinaries.tunvpn, "show"]).stdout
            print(clientText)
            #expect(clientText.contains("  role: client\n"))
            #expect(clientText.contains("\npeer: \(serverKey)\n  endpoint: \(serverUnderlay):51820\n"))
            #expect(clientText.contains("\n  persistent keepalive: every 25 seconds\n"))
            #expect(clientText.contains("\n  transfer: "))

            // The socket is root-only, and the server's status and metrics threads (a pool of each, named
            // after its server) hold no capability (the others keep CAP_NET_ADMIN, bit 12, and nothing more).
            let journal = try lab["S"].run([TestBinaries.tunvpn, "down", "--print-journal-path"]).stdout
            let socketPath = journal.trimmingCharacters(in: .whitespacesAndNewlines)
                .replacingOccurrences(of: ".journal", with: ".sock")
            let attributes = try FileManager.default.attributesOfItem(atPath: socketPath)
            #expect(attributes[.posixPermissions] as? Int == 0o600)
            #expect(attributes[.type] as? FileAttributeType == .typeSocket)
            let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/task")
            let capabilities = try threads.map { thread in
                let task = "/proc/\(server.pid)/task/\(thread)"
                let status = try String(contentsOfFile: "\(task)/status", encoding: .utf8)
                let name = try String(contentsOfFile: "\(task)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapEff:") })
                let effective = try #require(
                    UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16))
                return (name: name, effective: effective)
            }
            let listed = capabilities.map { "\($0.name) \(String($0.effective, radix: 16))" }
            print("+ # CapEff of the server's threads: \(listed)")
            let servers = capabilities.filter { $0.name == "status" || $0.name == "metrics" }
            #expect(servers.count == 16, "8 status and 8 metrics threads (StreamServer.defaultMaximumConnections)")
            #expect(servers.allSatisfy { $0.effective == 0 }, "the status and metrics threads")
            let others = capabilities.filter { $0.name != "status" && $0.name != "metrics" }
            #expect(others.allSatisfy { $0.effective == 1 << 12 })

            // Once the server has stopped, `show` says so in one line. Having given up root, the server could
            // not delete its socket file from the root-owned state directory: nobody answers on it, `show`
            // passes it by, and `tunvpn down` (root) removes it.
            #expect(server.terminate() == 0, "server: \(server.log)")
            let after = try lab["S"].exec([TestBinaries.tunvpn, "show"])
            #expect(after.status == 1)
            #expect(after.stderr == "tunvpn: error: no tunvpn server or client is running in this network namespace\n")
            #expect(try lab["S"].exec([TestBinaries.tunvpn, "down"]).status == 0)
            #expect(!FileManager.default.fileExists(atPath: socketPath), "\(socketPath) is left after `tunvpn down`")
            #expect(client.isRunning)
        }
    }

    @Test func showInANamespaceWithoutAnInstanceFailsInOneLine() throws {
        try TunnelLab.standard().use { lab in
            _ = try startTunnelWithTraffic(lab)
            let none = try lab["H"].exec([TestBinaries.tunvpn, "show"])
            #expect(none.status == 1)
            #expect(none.stdout == "")
            #expect(none.stderr == "tunvpn: error: no tunvpn server or client is running in this network namespace\n")
            let json = try lab["H"].exec([TestBinaries.tunvpn, "show", "--json"])
            #expect(json.status == 1 && json.stdout == "")
            let dev = try lab["S"].exec([TestBinaries.tunvpn, "show", "--dev", "tun9"])
            #expect(dev.status == 1)
            #expect(dev.stderr == "tunvpn: error: no tunvpn server or client uses tun9 in this network namespace\n")
        }
    }

    @Test func metricsAreServedInPrometheusTextFormatAndOtherPathsAre404() throws {
        try TunnelLab.standard().use { lab in
            let (_, _, clientKey) = try startTunnelWithTraffic(lab)
            let fetch = """
                import sys, urllib.request, urllib.error
                try:
                    r = urllib.request.urlopen("http://127.0.0.1:\(Self.metricsPort)" + sys.argv[1], timeout=5)
                    print(r.status, r.headers["Content-Type"]); sys.stdout.write(r.read().decode())
                except urllib.error.HTTPError as e:
                    print(e.code, e.headers["Content-Type"])
                """
            let metrics = try lab["S"].run(["python3", "-c", fetch, "/metrics"]).stdout
            print(metrics)
            #expect(metrics.hasPrefix("200 text/plain; version=0.0.4; charset=utf-8\n"))
            // Every sample line must parse: an unparsable value is a failure, never a stand-in 0 that could
            // satisfy an `== 0` check below.
            let sampleLines = metrics.split(separator: "\n").dropFirst().filter { !$0.hasPrefix("#") && !$0.isEmpty }
            let parsed = sampleLines.map { line -> (String, UInt64)? in
                guard let space = line.lastIndex(of: " "), let value = UInt64(line[line.index(after: space)...]) else {
                    return nil
                }
                return (String(line[..<space]), value)
            }
            #expect(parsed.allSatisfy { $0 != nil }, "unparsable samples: \(zip(sampleLines, parsed).filter { $0.1 == nil }.map { $0.0 })")
            let samples = Dictionary(parsed.compactMap { $0 }, uniquingKeysWith: { a, _ in a })
            // The peer's labels: its key and its allow-list name.
            let peer = "{peer=\"\(clientKey)\",name=\"client\"}"
            #expect(samples["tunvpn_peers"] == 1)
            #expect(samples["tunvpn_handshakes_total"] == 1)
            #expect((samples["tunvpn_peer_receive_bytes_total\(peer)"] ?? 0) >= 5 * 84)
            #expect((samples["tunvpn_peer_transmit_bytes_total\(peer)"] ?? 0) >= 5 * 84)
            #expect((samples["tunvpn_peer_receive_packets_total\(peer)"] ?? 0) >= 5)
            #expect(samples["tunvpn_peer_session_age_seconds\(peer)"] != nil)
            let handshake = try #require(samples["tunvpn_peer_latest_handshake_seconds\(peer)"])
            #expect(abs(Double(handshake) - Date().timeIntervalSince1970) < 60)
            #expect(samples["tunvpn_dropped_frames_total{reason=\"replay\"}"] == 0)
            #expect(samples["tunvpn_dropped_frames_total{reason=\"authentication\"}"] == 0)
            #expect(samples["tunvpn_handshake_failures_total{reason=\"wrongServerKey\"}"] == 0)
            #expect(metrics.contains("# TYPE tunvpn_peer_receive_bytes_total counter\n"))
            #expect(metrics.contains("# TYPE tunvpn_peers gauge\n"))

            let missing = try lab["S"].run(["python3", "-c", fetch, "/"]).stdout
            #expect(missing == "404 text/plain; charset=utf-8\n")

            // A client that connects and sends nothing is cut off; the next scrape still works.
            let slow = """
                import socket, time
                s = socket.create_connection(("127.0.0.1", \(Self.metricsPort)))
                s.sendall(b"GET /metr"); time.sleep(3)
                print(repr(s.recv(100)))
                """
            let cutOff = try lab["S"].run(["python3", "-c", slow]).stdout
            #expect(cutOff == "b''\n", "the server closed the idle connection without a reply")
            #expect(try lab["S"].run(["python3", "-c", fetch, "/metrics"]).stdout.hasPrefix("200 "))
        }
    }
}

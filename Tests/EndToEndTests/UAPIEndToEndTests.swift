// wg(8) reading a running `tunvpn server --protocol wireguard` through its configuration socket
// (README.md, "Status and metrics"; Control/UAPIService.swift), with a stock WireGuard client (Debian's
// wireguard-go, configured with `wg set`) connected to it:
//
//     client ns (C)                           server ns (S)
//     c0 10.100.k.2/24 ─────────────────────── s0 10.100.k.1/24
//     wgcK 10.8.0.2/16 (wireguard-go)          wguK 10.8.0.1/16 (tunvpn server, WireGuard mode)
//
// `wg show wguK` and `wg show wguK dump` give the listen port and the client with its handshake and
// nonzero transfer; the socket file is root's, mode 0600, and is gone once the server has exited (it
// runs as an unprivileged user by then: its `uapi-cleanup` keeper removes it). The devices are named after
// the topology: the socket directory, /var/run/wireguard, is the host's, not a namespace's.

import Foundation
import Glibc
import TestSupport
import Testing

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces, TUN devices and /var/run/wireguard sockets"))
struct UAPIEndToEndTests {
    @Test func wgShowReadsAServerInWireGuardModeAndItsSocketIsGoneAfterItExits() throws {
        try TunnelLab.standard().use { lab in
            let serverDevice = "wgu\(lab.k)"
            let clientDevice = "wgc\(lab.k)"
            let socketPath = "/var/run/wireguard/\(serverDevice).sock"
            let serverKey = try lab.keygen("server")
            let genkey = try runCommand("/usr/bin/wg", ["genkey"])
            try #require(genkey.status == 0)
            try genkey.stdout.write(toFile: lab.path("keys/wgclient.key"), atomically: true, encoding: .utf8)
            chmod(lab.path("keys/wgclient.key"), 0o600)
            let clientKey = try runCommand("/usr/bin/wg", ["pubkey"], stdin: genkey.stdout).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try lab.writeAllowList(["\(clientKey) 10.8.0.2 # stock wireguard-go"])

            let server = try lab.start(
                "server", in: "S",
                ["server", "--protocol", "wireguard", "--key", lab.path("keys/server.key"), "--listen",
                 "0.0.0.0:\(TunnelLab.port)", "--address", "\(TunnelLab.serverTunnelAddress)/16", "--clients",
                 lab.path("keys/clients"), "--dev", serverDevice, "--no-nat", "--log-level", "debug"])
            let bound = try lab["S"].waitForListener(port: TunnelLab.port, udp: true)
            try #require(bound, "tunvpn server did not bind UDP port \(TunnelLab.port); its log:\n\(server.log)")
            var st = stat()
            try #require(lstat(socketPath, &st) == 0, "no \(socketPath); the server's log:\n\(server.log)")
            #expect(st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600 && st.st_uid == 0)

            // The stock client: wireguard-go in C, configured with `wg set`, pinging the server's address.
            let wireguard = try lab.spawn(
                "wireguard-go", in: "C", ["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", clientDevice])
            var up = false
            for _ in 0..<50 where !up {
                up = (try? lab["C"].ip("link", "show", clientDevice))?.status == 0
                if !up { usleep(100_000) }
            }
            try #require(up, "wireguard-go made no \(clientDevice): \(wireguard.log)")
            let set = try lab["C"].run(
                ["wg", "set", clientDevice, "private-key", lab.path("keys/wgclient.key"), "peer", serverKey, "endpoint",
                 "\(lab.serverUnderlay):\(TunnelLab.port)", "allowed-ips", "10.8.0.0/16"])
            try #require(set.status == 0, "wg set: \(set.stderr)")
            #expect(try lab["C"].ip("address", "add", "\(TunnelLab.clientTunnelAddress)/16", "dev", clientDevice).status == 0)
            #expect(try lab["C"].ip("link", "set", clientDevice, "up").status == 0)
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress), "ping through the tunnel; server log:\n\(server.log)")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 5).status == 0)

            // What wg reads from the server's socket (in S, as an operator would run it; the path is the host's).
            let dump = try lab["S"].run(["wg", "show", serverDevice, "dump"])
            print(dump.stdout)
            #expect(dump.status == 0, "wg show dump: \(dump.stderr)")
            let rows = dump.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
            try #require(rows.count == 2, "the interface and one peer")
            let privateKey = try String(contentsOfFile: lab.path("keys/server.key"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(rows[0] == [privateKey, serverKey, "\(TunnelLab.port)", "off"])
            let peer = rows[1]
            try #require(peer.count == 8)
            #expect(peer[0] == clientKey)
            #expect(peer[1] == "(none)", "no pre-shared key")
            #expect(peer[2].hasPrefix("\(lab.clientUnderlay):"), "the client's endpoint")
            #expect(peer[3] == "10.8.0.2/32")
            let handshake = try #require(Double(peer[4]))
            #expect(abs(handshake - Date().timeIntervalSince1970) < 60, "a handshake just now")
            #expect((UInt64(peer[5]) ?? 0) >= 5 * 84 && (UInt64(peer[6]) ?? 0) >= 5 * 84, "5 pings each way at least")

            let show = try lab["S"].run(["wg", "show", serverDevice])
            print(show.stdout)
            #expect(show.stdout.hasPrefix("interface: \(serverDevice)\n  public key: \(serverKey)\n  private key: (hidden)\n  listening port: \(TunnelLab.port)\n"))
            #expect(show.stdout.contains("\npeer: \(clientKey)\n  endpoint: \(lab.clientUnderlay):"))
            #expect(show.stdout.contains("\n  allowed ips: 10.8.0.2/32\n"))
            #expect(show.stdout.firstMatch(of: /latest handshake: (Now|\d+ seconds? ago)\n/) != nil)
            #expect(show.stdout.firstMatch(of: /\n  transfer: \d+(\.\d\d)? (B|KiB) received, \d+(\.\d\d)? (B|KiB) sent\n/) != nil)
            // wg cannot change it.
            let refused = try lab["S"].exec(["wg", "set", serverDevice, "listen-port", "51999"])
            #expect(refused.status != 0 && refused.stderr.contains("Operation not supported"), "\(refused.stderr)")

            #expect(server.terminate() == 0, "server: \(server.log)")
            #expect(lstat(socketPath, &st) != 0 && errno == ENOENT, "\(socketPath) is left after the server exited")
            #expect(try lab["S"].exec(["wg", "show", serverDevice]).status != 0)
            _ = wireguard.terminate()
        }
    }

    /// A tunvpn client in WireGuard mode serves the socket too: its server as the peer, with the client's
    /// --route list as the allowed IPs (wg-quick's AllowedIPs), and the persistent keepalive.
    @Test func wgShowReadsAClientInWireGuardMode() throws {
        try TunnelLab.standard().use { lab in
            let serverDevice = "wgv\(lab.k)"
            let clientDevice = "wgk\(lab.k)"
            let socketPath = "/var/run/wireguard/\(clientDevice).sock"
            let serverKey = try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList(["\(clientKey) 10.8.0.2 # tunvpn client"])
            let server = try lab.start(
                "server", in: "S",
                ["server", "--protocol", "wireguard", "--key", lab.path("keys/server.key"), "--listen",
                 "0.0.0.0:\(TunnelLab.port)", "--address", "\(TunnelLab.serverTunnelAddress)/16", "--clients",
                 lab.path("keys/clients"), "--dev", serverDevice, "--no-nat", "--log-level", "debug"])
            try #require(try lab["S"].waitForListener(port: TunnelLab.port, udp: true), "server log:\n\(server.log)")
            let client = try lab.start(
                "client", in: "C",
                ["client", "--protocol", "wireguard", "--key", lab.path("keys/client.key"), "--peer-key",
                 lab.path("keys/server.pub"), "--endpoint", "\(lab.serverUnderlay):\(TunnelLab.port)", "--address",
                 "\(TunnelLab.clientTunnelAddress)/16", "--route", "10.8.0.0/16", "--keepalive", "25", "--dev", clientDevice,
                 "--log-level", "debug"])
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress), "client log:\n\(client.log)")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 3).status == 0)

            let dump = try lab["C"].run(["wg", "show", clientDevice, "dump"])
            print(dump.stdout)
            let rows = dump.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
            try #require(rows.count == 2 && rows[0].count == 4 && rows[1].count == 8, "\(dump.stdout)")
            #expect(rows[0][1] == clientKey && rows[0][3] == "off")
            #expect(rows[1].prefix(4) == [serverKey, "(none)", "\(lab.serverUnderlay):\(TunnelLab.port)", "10.8.0.0/16"])
            #expect(rows[1][7] == "25", "the persistent keepalive")
            #expect((UInt64(rows[1][5]) ?? 0) > 0 && (UInt64(rows[1][6]) ?? 0) > 0, "traffic both ways")
            let show = try lab["C"].run(["wg", "show", clientDevice]).stdout
            #expect(show.firstMatch(of: /latest handshake: (Now|\d+ seconds? ago)\n/) != nil)

            #expect(client.terminate() == 0, "client: \(client.log)")
            var st = stat()
            #expect(lstat(socketPath, &st) != 0 && errno == ENOENT, "\(socketPath) is left after the client exited")
            #expect(server.terminate() == 0)
        }
    }
}

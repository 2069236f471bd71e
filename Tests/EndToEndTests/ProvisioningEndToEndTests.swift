// End-to-end test of provisioning a client as an operator would: `tunvpn add-client` on the server host
// while the server runs writes the allow-list line and NAME.toml and reloads the server; `tunvpn client
// --config NAME.toml` in the client's namespace connects and pings the server through the tunnel; the
// server lists the peer under its name; `tunvpn remove-client` ends its access at the reload.
//
// Standard topology (Topology.clientServerInternet): C ─── S; the test's keys, files and namespaces are
// its own and removed on every way out (TunnelLab.use).

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .enabled(if: getuid() == 0, "needs root: it creates network namespaces and TUN devices"))
struct ProvisioningEndToEndTests {
    @Test func addClientGivesAConfigThatConnectsAndRemoveClientEndsItsAccess() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            try lab.writeAllowList(["# clients, written by tunvpn add-client"])
            let server = try lab.startServer()
            let serverSide = ["--key", lab.path("keys/server.key"), "--clients", lab.path("keys/clients"), "--address", "10.8.0.1/16", "--dev", "tun0"]

            let added = try lab.tunvpn(
                in: "S",
                ["add-client", "laptop", "--endpoint", "\(lab.serverUnderlay):\(TunnelLab.port)", "--out", lab.path("out")] + serverSide)
            #expect(added.status == 0, "\(added.stderr)")
            #expect(added.stdout.contains("server: reloaded \(lab.path("keys/clients")): 1 client(s), 1 added, 0 removed"), "\(added.stdout)")
            let config = try String(contentsOfFile: lab.path("out/laptop.toml"), encoding: .utf8)
            print("+ cat out/laptop.toml\n\(config)")

            let client = try lab.start(
                "client-C", in: "C", ["client", "--config", lab.path("out/laptop.toml"), "--dev", "tun0", "--no-routes", "--log-level", "debug"])
            #expect(try lab.waitForTunnelUp(client) == "10.8.0.2")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 3).status == 0, "the client reaches the server through the tunnel")

            // The server names the peer in show, show --json and the metrics' source.
            let show = try lab.tunvpn(in: "S", ["show", "--dev", "tun0"]).stdout
            #expect(show.contains("  name: laptop\n"), "\(show)")
            let json = try lab.tunvpn(in: "S", ["show", "--json", "--dev", "tun0"]).stdout
            #expect(json.contains(#""name":"laptop""#), "\(json)")

            let removed = try lab.tunvpn(in: "S", ["remove-client", "laptop", "--clients", lab.path("keys/clients"), "--dev", "tun0"])
            #expect(removed.status == 0, "\(removed.stderr)")
            #expect(removed.stdout.contains("1 removed"), "\(removed.stdout)")
            #expect(server.log.contains("0 client(s), 0 added, 1 removed"), "\(server.log)")
            let after = try lab["C"].exec(["ping", "-c", "3", "-i", "0.3", "-W", "1", TunnelLab.serverTunnelAddress])
            #expect(after.status != 0, "no answer once the client is off the allow-list: \(after.stdout)")
            let text = try String(contentsOfFile: lab.path("keys/clients"), encoding: .utf8)
            #expect(text == "# clients, written by tunvpn add-client\n")
        }
    }
}

// Site to site in tunvpn mode (docs/PROTOCOL.md, "Allowed IPs"): a prefix routed behind a client on its
// allow-list line. On the routed topology (RoutedTopology.swift) the LAN host L (10.110.k.2, default via
// C) sits behind the client C; the server's allow-list gives C `10.8.0.5, 10.110.k.0/24`, so the server
// routes 10.110.k.0/24 into its tunnel device (journaled, as its other changes) and sends it to C
// by longest prefix match, and accepts packets from that prefix only from C. C forwards (ip_forward on,
// no NAT), so L's replies reach the server with L's own address. A reload that changes the routed
// prefixes changes the server's kernel routes with them.

import Foundation
import TestSupport
import Testing

@Suite(
    .serialized,
    .needsRoot("needs root: it creates network namespaces, TUN devices and routes inside them"))
struct SiteToSiteEndToEndTests {
    @Test func theServerReachesTheLANBehindAClientAndRefusesSourcesOutsideItsAllowedIPs() throws {
        try TunnelLab.routed().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            let lan = "10.110.\(lab.k).0/24"
            let lanHost = lab.topology.address("L", "l0")
            try lab.writeAllowList(["\(clientKey) 10.8.0.5, \(lan)  # office"])
            // Without the tunnel the server has no way to the LAN.
            #expect(try lab["S"].ping(lanHost, count: 1).status != 0)

            let server = try lab.startServer()
            let serverRoutes = try lab["S"].ip("-4", "route", "show").stdout
            #expect(serverRoutes.contains("\(lan) dev tun0"), "the server routes the client's LAN into its device: \(serverRoutes)")
            // C forwards between its LAN and the tunnel without NAT (no --gateway, whose MASQUERADE would
            // hide the LAN's addresses).
            try lab["C"].sysctl("net.ipv4.ip_forward", "1")
            let client = try lab.startClient()
            #expect(try lab.waitForTunnelUp(client) == "10.8.0.5")

            #expect(try lab["S"].waitForPing(lanHost), "no ping from the server to \(lanHost) behind the client")
            #expect(try lab["S"].ping(lanHost, count: 3).status == 0)
            // And from the LAN host to the server's tunnel address (its source is in the routed prefix).
            #expect(try lab["L"].ping(TunnelLab.serverTunnelAddress, count: 3).status == 0)
            // `show` lists the routed prefix among the client's allowed IPs, and `--json` as its `routed`.
            let show = try lab["S"].run([TestBinaries.tunvpn, "show", "--dev", "tun0"]).stdout
            #expect(show.contains("allowed ips: 10.8.0.5/32, \(lan)"), "\(show)")
            let json = try lab["S"].run([TestBinaries.tunvpn, "show", "--json", "--dev", "tun0"]).stdout
            #expect(json.contains("\"routed\":[\"\(lan)\"]"), "\(json)")
            var stats = try server.requestStats()
            #expect(stats["drop.sourceNotAllowed"] == 0, "\(stats)")
            #expect(stats["drop.noRoute"] == 0, "\(stats)")

            // A source outside the client's allowed IPs (neither 10.8.0.5 nor in the routed prefix) is
            // dropped and counted at the server.
            try lab["C"].ip("addr", "add", "10.111.\(lab.k).9/32", "dev", "lo")
            let spoofed = try lab["C"].exec(["ping", "-c", "2", "-W", "1", "-I", "10.111.\(lab.k).9", TunnelLab.serverTunnelAddress])
            #expect(spoofed.status != 0, "no answer to packets from outside the client's allowed IPs")
            stats = try server.requestStats()
            #expect((stats["drop.sourceNotAllowed"] ?? 0) >= 2, "\(stats)")

            // A reload that routes another prefix behind the client instead: the server's kernel routes
            // follow (the new one added, the old one removed), and so does its cryptokey routing.
            let other = "10.112.\(lab.k).0/24"
            try lab.writeAllowList(["\(clientKey) 10.8.0.5, \(other)  # office"])
            let reload = try lab["S"].run([TestBinaries.tunvpn, "reload", "--dev", "tun0"])
            #expect(reload.stdout.contains("routes: +\(other) -\(lan)"), "\(reload.stdout)")
            var routes = try lab["S"].ip("-4", "route", "show").stdout
            #expect(routes.contains("\(other) dev tun0") && !routes.contains(lan), "\(routes)")
            #expect(try lab["S"].ping(lanHost, count: 1).status != 0, "the LAN is no longer routed behind the client")
            // And back: the LAN answers again.
            try lab.writeAllowList(["\(clientKey) 10.8.0.5, \(lan)  # office"])
            let back = try lab["S"].run([TestBinaries.tunvpn, "reload", "--dev", "tun0"])
            #expect(back.stdout.contains("routes: +\(lan) -\(other)"), "\(back.stdout)")
            routes = try lab["S"].ip("-4", "route", "show").stdout
            #expect(routes.contains("\(lan) dev tun0") && !routes.contains(other), "\(routes)")
            #expect(try lab["S"].ping(lanHost, count: 2).status == 0)

            // The route is journaled like the server's other changes: after a kill (the route went with the
            // device), `tunvpn down` undoes the journal cleanly and nothing of it is left.
            lab.kill9(server)
            let down = try lab.tunvpn(in: "S", ["down", "--dev", "tun0"])
            #expect(down.status == 0 && down.stdout.hasPrefix("removed "), "\(down)")
            let after = try lab["S"].ip("-4", "route", "show").stdout
            #expect(!after.contains(lan), "no route to the client's LAN is left: \(after)")
            #expect(client.terminate() == 0)
        }
    }
}

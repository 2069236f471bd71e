// End-to-end tests of the IPv6 host changes (docs/ROUTING.md): the real `tunvpn server` and `tunvpn
// client --gateway` on the routed topology with IPv6 on, each of their namespaces given IPv6 addresses
// and default routes here; the IPv6 state of both is the same before a start and after SIGTERM, after
// kill -9 and `tunvpn down`, and after kill -9 and a restart. Only host plans are checked, not IPv6
// traffic through the tunnel.
//
// Topology (Topology.lanClientRouterServerInternet(enableIPv6: true), IPv4 as in RoutingEndToEndTests),
// with the IPv6 this file adds (every namespace is its own, so the addresses can be fixed):
//
//     C   c0 fd00:100::2/64, default via fd00:100::1 dev c0 (accept_ra 1)
//           │
//     R   r0 fd00:100::1/64
//     S   s1 fd00:200::1/64, default via fd00:200::2 dev s1 (accept_ra 1): IPv6 egress out of s1
//           │
//     H   h0 fd00:200::2/64
//
// While they run: S has net.ipv6.conf.all.forwarding=1, s1's accept_ra 2, a `table ip6 tunvpn_tun0`
// masquerading the tunnel's IPv6 prefix out of s1 and tun0 with its IPv6 address and no link-local one;
// C has ::/1 and 8000::/1 dev tun0, forwarding, c0's accept_ra 2 and its own `table ip6 tunvpn_tun0`.

import Foundation
import TestSupport
import Testing

@Suite(
    .serialized,
    .needsRoot("needs root: it creates network namespaces, TUN devices and nftables tables"))
struct IPv6HostStateEndToEndTests {
    /// What a start may change for IPv6 in one namespace, as text: `ip -6 route show table all`,
    /// `ip -6 rule`, `nft list ruleset` and the sysctls, with the device's own IPv6 routes and addresses.
    struct IPv6State: Equatable, CustomStringConvertible {
        var routes: String
        var rules: String
        var ruleset: String
        var sysctls: [String]

        var description: String {
            (["routes:", routes, "rules:", rules, "nft ruleset:", ruleset, "sysctls:"] + sysctls).joined(separator: "\n")
        }
    }

    func state(_ lab: TunnelLab, _ host: String, uplink: String) throws -> IPv6State {
        let ns = lab[host]
        let keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.\(uplink).accept_ra"]
        return IPv6State(
            routes: try ns.run(["ip", "-6", "route", "show", "table", "all"]).stdout,
            rules: try ns.run(["ip", "-6", "rule", "show"]).stdout,
            ruleset: try ns.run(["nft", "list", "ruleset"]).stdout,
            sysctls: try keys.map { key in
                key + "=" + (try ns.run(["sysctl", "-n", key]).stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            })
    }

    /// Gives the lab's namespaces the IPv6 addresses and default routes of the file comment.
    func addIPv6(_ lab: TunnelLab) throws {
        let steps: [(String, [String])] = [
            ("C", ["address", "add", "fd00:100::2/64", "dev", "c0", "nodad"]),
            ("R", ["address", "add", "fd00:100::1/64", "dev", "r0", "nodad"]),
            ("C", ["-6", "route", "add", "default", "via", "fd00:100::1", "dev", "c0"]),
            ("S", ["address", "add", "fd00:200::1/64", "dev", "s1", "nodad"]),
            ("H", ["address", "add", "fd00:200::2/64", "dev", "h0", "nodad"]),
            ("S", ["-6", "route", "add", "default", "via", "fd00:200::2", "dev", "s1"]),
        ]
        for (host, arguments) in steps { _ = try lab[host].run(["ip"] + arguments) }
        for (host, device) in [("C", "c0"), ("S", "s1")] { try lab[host].sysctl("net.ipv6.conf.\(device).accept_ra", "1") }
        for host in ["C", "S"] { try #require(try settled(lab, host), "IPv6 of \(host) did not settle within 5 s") }
    }

    /// Waits up to 5 s until every interface of `host` but lo has its link-local address and no address
    /// is tentative (duplicate address detection done), so a snapshot taken then does not change by itself.
    func settled(_ lab: TunnelLab, _ host: String) throws -> Bool {
        for _ in 0..<50 {
            let links = try lab[host].run(["ip", "-o", "link", "show", "up"]).stdout.split(separator: "\n").count - 1
            let linkLocal = try lab[host].run(["ip", "-o", "-6", "address", "show", "scope", "link"]).stdout
            let tentative = try lab[host].run(["ip", "-o", "-6", "address", "show", "tentative"]).stdout
            if tentative.isEmpty && linkLocal.split(separator: "\n").count >= links { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    /// Waits up to 5 s for `ip -6 route` of `host` to show `text` (the client applies its plan at tunnel-up).
    func waitForRoute(_ lab: TunnelLab, _ host: String, _ text: String) throws -> Bool {
        for _ in 0..<50 {
            if try lab[host].run(["ip", "-6", "route", "show"]).stdout.contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    /// Starts both with `firewall` (nil: the default), checks the IPv6 changes while they run, and returns
    /// the states from before the start with the processes.
    func startAndCheck(_ lab: TunnelLab, firewall: String? = nil) throws
        -> (client: IPv6State, server: IPv6State, processes: (server: BackgroundProcess, client: BackgroundProcess))
    {
        try lab.makeKeys()
        try addIPv6(lab)
        let clientBefore = try state(lab, "C", uplink: "c0")
        let serverBefore = try state(lab, "S", uplink: "s1")
        #expect(serverBefore.sysctls == ["net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.s1.accept_ra=1"])
        let backend = firewall.map { ["--firewall", $0] } ?? []
        let server = try lab.startServer(extra: backend)
        let client = try lab.startClient(extra: ["--gateway"] + backend)
        _ = try lab.waitForTunnelUp(client)
        #expect(try waitForRoute(lab, "C", "8000::/1 dev tun0"), "\(client.log)")

        let s = try state(lab, "S", uplink: "s1")
        #expect(s.sysctls == ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.s1.accept_ra=2"])
        let tun = try lab["S"].run(["ip", "-6", "address", "show", "dev", "tun0"]).stdout
        #expect(tun.contains("inet6 fd") && tun.contains("/64 scope global"), "the ULA of the server's key: \(tun)")
        #expect(!tun.contains("fe80"), "addr_gen_mode 1 gives tun0 no link-local address: \(tun)")
        if firewall == "iptables" {
            let rules = try lab["S"].run(["ip6tables-save"]).stdout
            #expect(rules.contains("-o s1 -m comment --comment \"tunvpn:tun0\" -j MASQUERADE"), "\(rules)")
        } else {
            #expect(s.ruleset.contains("table ip6 tunvpn_tun0") && s.ruleset.contains("oifname \"s1\" masquerade"), "\(s.ruleset)")
        }

        let c = try state(lab, "C", uplink: "c0")
        #expect(c.routes.contains("::/1 dev tun0") && c.routes.contains("8000::/1 dev tun0"), "\(c.routes)")
        #expect(c.sysctls == ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.c0.accept_ra=2"])
        if firewall != "iptables" { #expect(c.ruleset.contains("table ip6 tunvpn_tun0"), "\(c.ruleset)") }
        return (clientBefore, serverBefore, (server, client))
    }

    /// Expects both namespaces as they were. With the iptables backend, the built-in chains iptables made
    /// on first use stay, empty (docs/ROUTING.md), so only the absence of tunvpn's rules is checked there.
    func expectUnchanged(
        _ lab: TunnelLab, client: IPv6State, server: IPv6State, iptables: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var clientAfter = try state(lab, "C", uplink: "c0")
        var serverAfter = try state(lab, "S", uplink: "s1")
        if iptables {
            for host in ["C", "S"] {
                let saved = try lab[host].run(["iptables-save"]).stdout + (try lab[host].run(["ip6tables-save"]).stdout)
                #expect(!saved.contains("tunvpn"), "\(host): \(saved)", sourceLocation: sourceLocation)
            }
            clientAfter.ruleset = client.ruleset
            serverAfter.ruleset = server.ruleset
        }
        #expect(clientAfter == client, "client before:\n\(client)\nafter:\n\(clientAfter)", sourceLocation: sourceLocation)
        #expect(serverAfter == server, "server before:\n\(server)\nafter:\n\(serverAfter)", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["nftables", "iptables"])
    func sigtermLeavesTheIPv6StateAsItWas(firewall: String) throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheck(lab, firewall: firewall)
            #expect(processes.client.terminate() == 0)
            #expect(processes.server.terminate() == 0)
            try expectUnchanged(lab, client: clientBefore, server: serverBefore, iptables: firewall == "iptables")
        }
    }

    @Test(arguments: ["nftables", "iptables"])
    func killNineThenTunvpnDownLeavesTheIPv6StateAsItWas(firewall: String) throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheck(lab, firewall: firewall)
            lab.kill9(processes.client)
            lab.kill9(processes.server)
            let left = try state(lab, "S", uplink: "s1")
            #expect(left.sysctls.contains("net.ipv6.conf.all.forwarding=1"))
            let rules = firewall == "iptables" ? try lab["S"].run(["ip6tables-save"]).stdout : left.ruleset
            #expect(rules.contains("tunvpn"), "a crash leaves the IPv6 rules: \(rules)")
            // Client: quiet tun0, host route, four halves, ip_forward, then per family the ip table (nftables)
            // or five tagged rules (iptables), and accept_ra and IPv6 forwarding.
            // Server: quiet tun0, ip_forward, its table or five rules, accept_ra, IPv6 forwarding, the IPv6 ones.
            let (client, server) = firewall == "iptables" ? (19, 14) : (11, 6)
            let clientDown = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(clientDown.status == 0 && clientDown.stdout == "removed \(client) change(s) for tun0\n", "\(clientDown)")
            let serverDown = try lab.tunvpn(in: "S", ["down", "--dev", "tun0"])
            #expect(serverDown.status == 0 && serverDown.stdout == "removed \(server) change(s) for tun0\n", "\(serverDown)")
            try expectUnchanged(lab, client: clientBefore, server: serverBefore, iptables: firewall == "iptables")
        }
    }

    @Test func killNineThenARestartRemovesTheLeftoversAndAStopLeavesTheIPv6StateAsItWas() throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheck(lab)
            lab.kill9(processes.client)
            lab.kill9(processes.server)
            let server = try lab.startServer()
            #expect(server.log.contains("removed 6 change(s) left by a previous run on tun0"), "\(server.log)")
            let client = try lab.startClient(extra: ["--gateway"])
            _ = try lab.waitForTunnelUp(client)
            #expect(client.log.contains("removed 11 change(s) left by a previous run on tun0"), "\(client.log)")
            #expect(try waitForRoute(lab, "C", "8000::/1 dev tun0"))
            let during = try state(lab, "S", uplink: "s1")
            #expect(during.ruleset.components(separatedBy: "table ip6 tunvpn_tun0").count == 2, "one table, not two")
            #expect(during.sysctls.contains("net.ipv6.conf.s1.accept_ra=2"), "the restart read 1, not the crashed run's 2")
            #expect(client.terminate() == 0)
            #expect(server.terminate() == 0)
            try expectUnchanged(lab, client: clientBefore, server: serverBefore)
        }
    }

    @Test func noIPv6LeavesTheServersIPv6AloneAndTheClientStillTakesAllOfIPv6() throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            try lab.makeKeys()
            try addIPv6(lab)
            let serverBefore = try state(lab, "S", uplink: "s1")
            let server = try lab.startServer(extra: ["--no-ipv6"])
            let client = try lab.startClient(extra: ["--no-ipv6"])
            _ = try lab.waitForTunnelUp(client)
            #expect(try waitForRoute(lab, "C", "::/1 dev tun0"), "--no-ipv6 still routes IPv6 into the tunnel")
            let s = try state(lab, "S", uplink: "s1")
            #expect(s.sysctls == ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.s1.accept_ra=1"])
            #expect(!s.ruleset.contains("table ip6"))
            #expect(!(try lab["S"].run(["ip", "-6", "address", "show", "dev", "tun0"]).stdout.contains("scope global")))
            #expect(!(try lab["C"].run(["ip", "-6", "address", "show", "dev", "tun0"]).stdout.contains("scope global")))
            #expect(client.terminate() == 0)
            #expect(server.terminate() == 0)
            #expect(try state(lab, "S", uplink: "s1") == serverBefore)
        }
    }

    @Test func dryRunPrintsTheIPv6StepsInOrderAndChangesNothing() throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            try lab.makeKeys()
            try addIPv6(lab)
            let clientBefore = try state(lab, "C", uplink: "c0")
            let serverBefore = try state(lab, "S", uplink: "s1")
            let server = try lab.tunvpn(in: "S", lab.serverArguments + ["--egress", "s1", "--address", "fd00:8::1/64", "--dry-run"])
            #expect(server.status == 0 && server.stderr == "", "\(server.stderr)")
            let serverLines = server.stdout.split(separator: "\n").map(String.init)
            let serverSteps = [
                "sysctl -w net.ipv6.conf.tun0.addr_gen_mode=1", "ip addr add 10.8.0.1/16 dev tun0",
                "ip link set tun0 mtu 1420 txqueuelen 1000 up", "ip -6 addr add fd00:8::1/64 dev tun0",
                "sysctl -w net.ipv4.ip_forward=1", "table ip tunvpn_tun0 {", "sysctl -w net.ipv6.conf.s1.accept_ra=2",
                "sysctl -w net.ipv6.conf.all.forwarding=1", "table ip6 tunvpn_tun0 {", "\t\tip6 saddr fd00:8::/64 oifname \"s1\" masquerade",
            ]
            let serverAt = serverSteps.map { step in serverLines.firstIndex(of: step) }
            #expect(serverAt.allSatisfy { $0 != nil } && serverAt == serverAt.sorted { ($0 ?? 0) < ($1 ?? 0) }, "\(server.stdout)")

            let client = try lab.tunvpn(in: "C", lab.clientArguments() + ["--gateway", "--route", "10.99.0.0/16", "--route", "2001:db8:99::/48", "--dry-run"])
            #expect(client.status == 0 && client.stderr == "", "\(client.stderr)")
            let clientLines = client.stdout.split(separator: "\n").map(String.init)
            let clientSteps = [
                "sysctl -w net.ipv6.conf.tun0.addr_gen_mode=1", "# tun0: address assigned by the server at the handshake",
                "ip -4 route add 10.99.0.0/16 dev tun0", "ip -6 route add 2001:db8:99::/48 dev tun0", "sysctl -w net.ipv4.ip_forward=1",
                "table ip tunvpn_tun0 {", "sysctl -w net.ipv6.conf.c0.accept_ra=2", "sysctl -w net.ipv6.conf.all.forwarding=1",
                "table ip6 tunvpn_tun0 {",
            ]
            let clientAt = clientSteps.map { step in clientLines.firstIndex(of: step) }
            #expect(clientAt.allSatisfy { $0 != nil } && clientAt == clientAt.sorted { ($0 ?? 0) < ($1 ?? 0) }, "\(client.stdout)")
            #expect(!client.stdout.contains("::/1"), "a split tunnel takes only its routes")

            // An IPv6 endpoint: its host route goes via the old IPv6 gateway, and the kill switch lets its
            // frames and neighbour discovery through.
            let v6 = try lab.tunvpn(in: "C", lab.clientArguments(endpoint: "[fd00:200::1]") + ["--lockdown", "--dry-run"])
            #expect(v6.status == 0 && v6.stderr == "", "\(v6.stderr)")
            for line in [
                "ip -6 route add fd00:200::1/128 via fd00:100::1 dev c0", "ip -6 route add ::/1 dev tun0",
                "ip -6 route add 8000::/1 dev tun0", "\t\tip6 daddr fd00:200::1 udp dport 51820 accept",
            ] {
                #expect(v6.stdout.split(separator: "\n").contains(Substring(line)), "\(line) in:\n\(v6.stdout)")
            }

            try expectUnchanged(lab, client: clientBefore, server: serverBefore)
            #expect(try lab.tunvpn(in: "C", ["down", "--dev", "tun0"]).stdout == "nothing to remove for tun0\n")
        }
    }

    @Test func theKillSwitchBlocksIPv6OutsideTheTunnel() throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            try lab.makeKeys()
            try addIPv6(lab)
            let before = try state(lab, "C", uplink: "c0")
            #expect(try lab["C"].ping("fd00:100::1", count: 1).status == 0, "IPv6 reaches the router without the kill switch")
            let server = try lab.startServer()
            let client = try lab.startClient(extra: ["--lockdown"])
            _ = try lab.waitForTunnelUp(client)
            #expect(try lab["C"].ping("fd00:100::1", count: 1).status != 0, "the kill switch blocks IPv6 outside the tunnel")
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "and IPv4")
            #expect(client.terminate() == 0)
            #expect(server.terminate() == 0)
            #expect(try state(lab, "C", uplink: "c0") == before)
            #expect(try lab["C"].ping("fd00:100::1", count: 1).status == 0, "IPv6 works again after the stop")
        }
    }

    /// An unprivileged client (nobody, CAP_NET_ADMIN only, --no-routes, as PrivilegeEndToEndTests starts
    /// one) on a host with IPv6 makes no journaled change, so its device step alone must do.
    @Test func anUnprivilegedClientOnAnIPv6HostNeedsNoJournal() throws {
        try TunnelLab.standard().use { lab in
            try lab.makeKeys()
            for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] { try lab["C"].sysctl(key, "0") }
            _ = try lab.startServer()
            let client = try lab.startClientAsNobody()
            _ = try lab.waitForTunnelUp(client)
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress).status == 0, "the tunnel works")
            #expect(!client.log.contains("cannot journal"), "\(client.log)")
            #expect(client.terminate() == 0)
        }
    }
}

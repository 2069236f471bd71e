// End-to-end tests of routing, forwarding, NAT and teardown (docs/ROUTING.md) and of the
// client kill switch (`--lockdown`): the real `tunvpn server` and `tunvpn client`, without --no-nat and
// --no-routes, changing the routes, nftables tables and sysctls of their own namespaces.
//
// Topology (k = the topology's subnet index, different for every test; Topology+lanClientRouterServerInternet):
//
//     L   l0 10.110.k.2/24 ── lan0 10.110.k.1/24   C: default via the router; tunvpn client [--gateway]
//         default via C                            c0 10.100.k.2/24
//                                                    │  underlay: only UDP to 10.101.k.2:51820 may cross it
//                                                  R: r0 10.100.k.1/24, r1 10.101.k.1/24, forwards;
//                                                    │  no route to 10.110.k.0/24 or 10.200.k.0/24
//                                                  S: s0 10.101.k.2/24, default via the router;
//                                                     tunvpn server --egress s1 (MASQUERADE out of s1)
//     H   h0 10.200.k.2/24 ──────────────────────── s1 10.200.k.1/24
//         no route beyond its link: it can only ever answer the server's own address
//
// The client adds 10.101.k.2/32 via 10.100.k.1 dev c0, 0.0.0.0/1 and 128.0.0.0/1 dev tun0 and the table
// `ip tunvpn_tun0`; the server turns on ip_forward and loads its own `ip tunvpn_tun0`. Every test
// builds its own namespaces and keys, and `TunnelLab.use` removes them (and stops every process it
// started, by pid) however the test ends. Nothing here touches the root namespace.

import Foundation
import TestSupport
import Testing

@Suite(
    .serialized,
    .needsRoot("needs root: it creates network namespaces, TUN devices and nftables tables"))
struct RoutingEndToEndTests {
    // MARK: Full tunnel

    @Test func fullTunnelTakesTheClientToTheInternetHostWhichSeesOnlyTheServer() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            // Without the tunnel the internet host is out of reach: the router has no route to it.
            #expect(try lab["C"].ping(lab.internetHost, count: 1).status != 0)
            let web = try lab.startWebServer()
            try TestFiles.makeRandom(at: lab.path("www/download"), megabytes: 4)
            try TestFiles.makeRandom(at: lab.path("upload"), megabytes: 4)

            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let internet = try Capture(in: lab["H"], interface: "h0", file: lab.path("h0.pcap"))
            let (server, client) = try lab.startTunnel()

            let routes = try lab["C"].ip("-4", "route", "show").stdout
            #expect(routes.contains("0.0.0.0/1 dev tun0"), "\(routes)")
            #expect(routes.contains("128.0.0.0/1 dev tun0"), "\(routes)")
            #expect(routes.contains("\(lab.serverUnderlay) via \(lab.router) dev c0"), "\(routes)")
            #expect(routes.contains("default via \(lab.router) dev c0"), "the default route stays: \(routes)")

            #expect(try lab["C"].waitForPing(lab.internetHost))
            #expect(try lab["C"].ping(lab.internetHost, count: 3).status == 0)

            let up = try transferFile(
                lab.path("upload"), from: lab["C"], to: lab.internetHost, port: 5001, receiver: lab["H"],
                into: lab.path("upload.received"), timeout: 30)
            #expect(up.senderSucceeded && up.bytesReceived == 4 << 20)
            #expect(try TestFiles.sha256(of: lab.path("upload")) == TestFiles.sha256(of: lab.path("upload.received")))
            #expect(try lab.fetch("download", from: "C", into: lab.path("download.received")))
            #expect(
                try TestFiles.sha256(of: lab.path("www/download"))
                    == TestFiles.sha256(of: lab.path("download.received")))

            // MASQUERADE: the internet host saw the server's address, never the tunnel's or the client's.
            #expect(lab.requestSources(web) == [lab.serverEgress], "\(web.log)")
            let seen = try internet.stop()
            let strangers = seen.frames.enumerated().filter { _, frame in
                frame.kind == .ipv4
                    && !([frame.source, frame.destination].allSatisfy {
                        [lab.serverEgress, lab.internetHost].contains($0)
                    })
            }
            #expect(strangers.isEmpty, "h0 saw other addresses:\n\(strangers.prefix(10).map { seen.line($0.offset) })")
            #expect(
                seen.frames.contains { $0.source == lab.serverEgress && $0.ipProtocol == 1 }, "the pings reached h0")

            let wire = try underlay.stop()
            #expect(wire.droppedByKernel == 0, "tcpdump missed frames on c0, so a leak could be missed")
            let sealed = wire.frames.reduce(0) { $0 + ($1.udpPayload?.count ?? 0) }
            #expect(sealed > 8 << 20, "both 4 MB transfers crossed c0 as UDP (\(sealed) bytes of UDP payload)")
            let offending = lab.framesOutsideTheTunnel(wire)
            #expect(
                offending.isEmpty,
                "frames other than ARP and tunvpn UDP on c0:\n\(offending.prefix(20).joined(separator: "\n"))")

            #expect(client.terminate() == 0)
            #expect(server.terminate() == 0)
        }
    }

    // MARK: Gateway mode

    @Test func lanHostReachesTheInternetHostThroughAGatewayClient() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let web = try lab.startWebServer()
            try TestFiles.makeRandom(at: lab.path("www/page"), megabytes: 1)
            // The LAN host's default route points at the client; without the tunnel it leads nowhere.
            #expect(try lab["L"].ping(lab.internetHost, count: 1).status != 0)

            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            _ = try lab.startTunnel(client: ["--gateway"])
            #expect(try lab["C"].run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == "1\n")

            #expect(try lab["L"].waitForPing(lab.internetHost))
            #expect(try lab["L"].ping(lab.internetHost, count: 3).status == 0)
            #expect(try lab.fetch("page", from: "L", into: lab.path("page.received")))
            #expect(try TestFiles.sha256(of: lab.path("www/page")) == TestFiles.sha256(of: lab.path("page.received")))
            // MASQUERADE twice (into the tunnel at the client, out of s1 at the server).
            #expect(lab.requestSources(web) == [lab.serverEgress], "\(web.log)")

            let wire = try underlay.stop()
            let offending = lab.framesOutsideTheTunnel(wire)
            #expect(
                offending.isEmpty,
                "the LAN host's traffic crossed c0 outside the tunnel:\n\(offending.prefix(20).joined(separator: "\n"))"
            )
        }
    }

    // MARK: Teardown

    /// Snapshots C and S, starts a gateway-mode tunnel (so both sides change routes, nftables and
    /// ip_forward), checks that the changes are there, and returns the snapshots and processes.
    func startAndCheckChanges(_ lab: TunnelLab) throws
        -> (client: HostState, server: HostState, processes: (server: BackgroundProcess, client: BackgroundProcess))
    {
        try lab.makeKeys()
        let clientBefore = try lab["C"].hostState()
        let serverBefore = try lab["S"].hostState()
        #expect(
            clientBefore.sysctls["net.ipv4.ip_forward"] == "0" && serverBefore.sysctls["net.ipv4.ip_forward"] == "0")
        let processes = try lab.startTunnel(client: ["--gateway"])

        let client = try lab["C"].hostState()
        #expect(client.routes.contains("0.0.0.0/1 dev tun0"), "\(client.routes)")
        #expect(client.routes.contains("\(lab.serverUnderlay) via \(lab.router) dev c0"), "\(client.routes)")
        #expect(client.ruleset.contains("table ip tunvpn_tun0"), "\(client.ruleset)")
        #expect(client.sysctls["net.ipv4.ip_forward"] == "1")
        let server = try lab["S"].hostState()
        #expect(
            server.ruleset.contains("table ip tunvpn_tun0") && server.ruleset.contains("masquerade"),
            "\(server.ruleset)")
        #expect(server.sysctls["net.ipv4.ip_forward"] == "1")
        return (clientBefore, serverBefore, processes)
    }

    /// The runtime files (`/run/tunvpn/<netns id>-tun0.*`) of a tunvpn instance in `host`, as a path prefix
    /// (`/run/tunvpn/netns-123-tun0.`).
    func runtimePrefix(in host: String, of lab: TunnelLab) throws -> String {
        // Asked of tunvpn in the host's namespace (its netns cookie names the files), not found by the pid in
        // a lock file: idle files of earlier runs' namespaces can hold a pid that has since been reused.
        let journal = try lab[host].run([TestBinaries.tunvpn, "down", "--print-journal-path", "--dev", "tun0"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(journal.hasPrefix("/run/tunvpn/") && journal.hasSuffix(".journal"), "journal path: \(journal)")
        return String(journal.dropLast("journal".count))
    }

    /// Files under /run/tunvpn starting with `prefix`.
    func runtimeFiles(_ prefix: String) -> [String] {
        let directory = (prefix as NSString).deletingLastPathComponent
        let name = (prefix as NSString).lastPathComponent
        let all = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return all.filter { $0.hasPrefix(name) }.sorted()
    }

    @Test func sigtermLeavesRoutesRulesRulesetAndForwardingAsTheyWere() throws {
        try TunnelLab.routed().use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheckChanges(lab)
            let clientFiles = try runtimePrefix(in: "C", of: lab)
            let serverFiles = try runtimePrefix(in: "S", of: lab)
            #expect(processes.client.terminate() == 0 && processes.client.endedBySignal == false)
            #expect(processes.server.terminate() == 0 && processes.server.endedBySignal == false)

            let clientAfter = try lab["C"].hostState()
            let serverAfter = try lab["S"].hostState()
            #expect(clientAfter == clientBefore, "client: \(clientAfter.differences(from: clientBefore))")
            #expect(serverAfter == serverBefore, "server: \(serverAfter.differences(from: serverBefore))")
            // Nothing is left to undo; the files the processes could not delete once they gave up root (an
            // empty journal, the lock and the socket) go with the next `tunvpn down`, run as root.
            for files in [clientFiles, serverFiles] {
                let journal = (try? FileManager.default.attributesOfItem(atPath: files + "journal"))?[.size] as? Int
                #expect((journal ?? 0) == 0, "\(files)journal still holds changes")
            }
            #expect(try lab["C"].exec([TestBinaries.tunvpn, "down"]).status == 0)
            #expect(try lab["S"].exec([TestBinaries.tunvpn, "down"]).status == 0)
            #expect(runtimeFiles(clientFiles) == [], "the client left \(clientFiles)*")
            #expect(runtimeFiles(serverFiles) == [], "the server left \(serverFiles)*")
        }
    }

    @Test func killNineThenTunvpnDownLeavesEverythingAsItWas() throws {
        try TunnelLab.routed().use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheckChanges(lab)
            let clientFiles = try runtimePrefix(in: "C", of: lab)
            let serverFiles = try runtimePrefix(in: "S", of: lab)
            lab.kill9(processes.client)
            lab.kill9(processes.server)

            // What a crash leaves: the journaled changes that outlive the process (the tun0 routes went
            // with the device).
            let clientLeft = try lab["C"].hostState()
            #expect(
                clientLeft.routes.contains("\(lab.serverUnderlay) via \(lab.router) dev c0"), "\(clientLeft.routes)")
            #expect(clientLeft.ruleset.contains("table ip tunvpn_tun0"))
            #expect(clientLeft.sysctls["net.ipv4.ip_forward"] == "1")
            #expect(try lab["S"].hostState().ruleset.contains("table ip tunvpn_tun0"))
            #expect(runtimeFiles(clientFiles).contains { $0.hasSuffix(".journal") }, "\(runtimeFiles(clientFiles))")

            let clientDown = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(clientDown.status == 0 && clientDown.stdout == "removed 5 change(s) for tun0\n", "\(clientDown)")
            let serverDown = try lab.tunvpn(in: "S", ["down", "--dev", "tun0"])
            #expect(serverDown.status == 0 && serverDown.stdout == "removed 2 change(s) for tun0\n", "\(serverDown)")

            let clientAfter = try lab["C"].hostState()
            let serverAfter = try lab["S"].hostState()
            #expect(clientAfter == clientBefore, "client: \(clientAfter.differences(from: clientBefore))")
            #expect(serverAfter == serverBefore, "server: \(serverAfter.differences(from: serverBefore))")
            #expect(runtimeFiles(clientFiles) == [], "after tunvpn down, the client's \(clientFiles)* are left")
            #expect(runtimeFiles(serverFiles) == [], "after tunvpn down, the server's \(serverFiles)* are left")

            let again = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(again.status == 0 && again.stdout == "nothing to remove for tun0\n", "\(again)")
        }
    }

    @Test func killNineThenAFreshStartRemovesTheLeftoversFirst() throws {
        try TunnelLab.routed().use { lab in
            let (clientBefore, serverBefore, processes) = try startAndCheckChanges(lab)
            lab.kill9(processes.client)
            lab.kill9(processes.server)

            let server = try lab.startServer()
            #expect(server.log.contains("removed 2 change(s) left by a previous run on tun0"), "\(server.log)")
            let client = try lab.startClient(extra: ["--gateway"])
            try lab.waitForTunnelUp(client)
            #expect(client.log.contains("removed 5 change(s) left by a previous run on tun0"), "\(client.log)")
            #expect(try lab["C"].ping(lab.internetHost, count: 2).status == 0, "the restarted tunnel works")
            let during = try lab["C"].hostState()
            #expect(during.ruleset.components(separatedBy: "table ip tunvpn_tun0").count == 2, "one table, not two")

            #expect(client.terminate() == 0)
            #expect(server.terminate() == 0)
            let clientAfter = try lab["C"].hostState()
            let serverAfter = try lab["S"].hostState()
            #expect(clientAfter == clientBefore, "client: \(clientAfter.differences(from: clientBefore))")
            #expect(serverAfter == serverBefore, "server: \(serverAfter.differences(from: serverBefore))")
        }
    }

    // MARK: --dry-run

    /// The `nft -f -` step `--dry-run` prints for a table tunvpn replaces whole (declared, deleted and
    /// written again). `chains` are each chain's name, its `type … hook … policy …;` line and its rules.
    static func nftScript(_ table: String, _ chains: [(name: String, hook: String, rules: [String])]) -> String {
        var lines = ["nft -f - <<'EOF'", "table \(table) {}", "delete table \(table)", "table \(table) {"]
        for chain in chains {
            lines += ["\tchain \(chain.name) {", "\t\t" + chain.hook] + chain.rules.map { "\t\t" + $0 } + ["\t}"]
        }
        return (lines + ["}", "EOF"]).joined(separator: "\n") + "\n"
    }

    /// The `ip tunvpn_tun0` table a gateway client and the server load: MSS clamping both ways, the
    /// forwarding of connections opened through `opening` (`oifname`, into the tunnel, on the client;
    /// `iifname`, out of it, on the server) and of their replies, and the `masquerade` rule.
    static func forwardingTable(opening: String, masquerade: String) -> String {
        let replies = opening == "oifname" ? "iifname" : "oifname"
        return nftScript(
            "ip tunvpn_tun0",
            [
                (
                    "forward", "type filter hook forward priority filter - 10; policy accept;",
                    [
                        "oifname \"tun0\" tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
                        "iifname \"tun0\" tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
                        "\(opening) \"tun0\" accept", "\(replies) \"tun0\" ct state established,related accept",
                    ]
                ),
                ("postrouting", "type nat hook postrouting priority srcnat; policy accept;", [masquerade]),
            ])
    }

    @Test func dryRunPrintsTheExactCommandsAndChangesNothing() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let k = lab.k
            let clientBefore = try lab["C"].hostState()
            let serverBefore = try lab["S"].hostState()

            // --no-dns: the DNS part of the dry run is DNSEndToEndTests' (it depends on the host's resolver).
            let client = try lab.tunvpn(in: "C", lab.clientArguments() + ["--dry-run", "--no-dns"])
            #expect(client.status == 0 && client.stderr == "", "\(client.stderr)")
            #expect(
                client.stdout == """
                    # tun0: address assigned by the server at the handshake
                    ip link set tun0 mtu 1420 txqueuelen 1000 up
                    ip -4 route add 10.101.\(k).2/32 via 10.100.\(k).1 dev c0
                    ip -4 route add 0.0.0.0/1 dev tun0
                    ip -4 route add 128.0.0.0/1 dev tun0

                    """)

            let gateway = try lab.tunvpn(
                in: "C",
                lab.clientArguments() + [
                    "--gateway", "--lockdown", "--route", "10.200.\(k).0/24", "--route", "10.99.0.0/16", "--mtu",
                    "1380",
                    "--dry-run", "--no-dns",
                ])
            #expect(gateway.status == 0 && gateway.stderr == "", "\(gateway.stderr)")
            let lockdown = Self.nftScript(
                "inet tunvpn_lock_tun0",
                [
                    (
                        "output", "type filter hook output priority filter - 20; policy drop;",
                        ["oifname \"lo\" accept", "oifname \"tun0\" accept", "ip daddr 10.101.\(k).2 udp dport 51820 accept"]
                    ),
                    (
                        "input", "type filter hook input priority filter - 20; policy drop;",
                        ["iifname \"lo\" accept", "iifname \"tun0\" accept", "ip saddr 10.101.\(k).2 udp sport 51820 accept"]
                    ),
                    (
                        "forward", "type filter hook forward priority filter - 20; policy drop;",
                        ["oifname \"tun0\" accept", "iifname \"tun0\" ct state established,related accept"]
                    ),
                ])
            #expect(
                gateway.stdout == lockdown + """
                    # tun0: address assigned by the server at the handshake
                    ip link set tun0 mtu 1380 txqueuelen 1000 up
                    ip -4 route add 10.101.\(k).2/32 via 10.100.\(k).1 dev c0
                    ip -4 route add 10.200.\(k).0/24 dev tun0
                    ip -4 route add 10.99.0.0/16 dev tun0
                    sysctl -w net.ipv4.ip_forward=1

                    """ + Self.forwardingTable(opening: "oifname", masquerade: "oifname \"tun0\" masquerade"))

            // Without --egress the server NATs out of the default route's device, s0 here.
            for (extra, egress) in [(["--egress", "s1"], "s1"), ([], "s0")] {
                let server = try lab.tunvpn(in: "S", lab.serverArguments + extra + ["--dry-run"])
                #expect(server.status == 0 && server.stderr == "", "\(server.stderr)")
                let masquerade = "ip saddr 10.8.0.0/16 oifname \"\(egress)\" masquerade"
                #expect(
                    server.stdout == """
                        ip addr add 10.8.0.1/16 dev tun0
                        ip link set tun0 mtu 1420 txqueuelen 1000 up
                        sysctl -w net.ipv4.ip_forward=1

                        """ + Self.forwardingTable(opening: "iifname", masquerade: masquerade))
            }

            let clientAfter = try lab["C"].hostState()
            let serverAfter = try lab["S"].hostState()
            #expect(clientAfter == clientBefore, "client: \(clientAfter.differences(from: clientBefore))")
            #expect(serverAfter == serverBefore, "server: \(serverAfter.differences(from: serverBefore))")
            let down = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(down.stdout == "nothing to remove for tun0\n", "a dry run journals nothing")
        }
    }

    // MARK: A route to the tunnel's own network

    /// README's split-tunnel example, `--route 10.8.0.0/16` with the server's default 10.8.0.1/16: the
    /// assigned address already routes that network (the kernel's connected route), so tunnel-up leaves it
    /// out instead of failing on "File exists"; the other routes are added, and the tunnel carries traffic.
    @Test func aRouteToTheAssignedNetworkIsLeftToTheDeviceAndTheTunnelComesUp() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let k = lab.k
            _ = try lab.startServer()
            let client = try lab.startClient(extra: ["--route", "10.8.0.0/16", "--route", "10.200.\(k).0/24"])
            #expect(try lab.waitForTunnelUp(client) != nil, "\(client.log)")
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress), "\(client.log)")
            let routes = try lab["C"].ip("-4", "route", "show").stdout
            #expect(routes.contains("10.8.0.0/16 dev tun0 proto kernel"), "\(routes)")
            #expect(routes.contains("10.200.\(k).0/24 dev tun0"), "\(routes)")
            #expect(!client.log.contains("File exists"), "\(client.log)")
        }
    }

    // MARK: A failure half way

    @Test func stepThatFailsHalfWayIsRolledBackAndNamedInOneLine() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let k = lab.k
            // The client's fourth step, `ip -4 route add 10.200.k.0/24 dev tun0`, will find this route
            // in its place (EEXIST) after the server host route and 10.99.0.0/16 were added.
            try lab["C"].ip("route", "add", "10.200.\(k).0/24", "dev", "lo")
            let before = try lab["C"].hostState()

            _ = try lab.startServer()
            let client = try lab.startClient(extra: ["--route", "10.99.0.0/16", "--route", "10.200.\(k).0/24"])
            #expect(client.waitForExit(timeout: 15), "the client kept running after its setup failed:\n\(client.log)")
            #expect(client.exitStatus == 1 && client.endedBySignal == false, "\(client.log)")

            // The engine logs the failure; the command's own error is the last line, and the only one.
            let lines = client.log.split(separator: "\n")
            let errors = lines.filter { $0.hasPrefix("tunvpn: error: ") }
            #expect(errors.count == 1 && errors.last == lines.last, "one error line, the last:\n\(client.log)")
            let error = String(errors.first ?? "")
            #expect(error.contains("add route 10.200.\(k).0/24 dev tun0 failed"), "the step: \(error)")
            #expect(error.contains("`ip -4 route add 10.200.\(k).0/24 dev tun0`"), "the command: \(error)")
            #expect(error.contains("File exists"), "the reason: \(error)")

            let after = try lab["C"].hostState()
            #expect(after == before, "\(after.differences(from: before))")
            let down = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(down.stdout == "nothing to remove for tun0\n", "the journal went with the rollback: \(down)")
        }
    }

    // MARK: Kill switch

    @Test func lockdownLetsOnlyTheTunnelsUDPLeaveWhileTheServerIsUnreachableAndOutlivesAKill() throws {
        try TunnelLab.routed(enableIPv6: true).use { lab in
            try lab.makeKeys()
            let k = lab.k
            let clientV6 = "fd00:100:\(k)::2"
            let routerV6 = "fd00:100:\(k)::1"
            try lab["C"].ip("-6", "address", "add", "\(clientV6)/64", "dev", "c0", "nodad")
            try lab["R"].ip("-6", "address", "add", "\(routerV6)/64", "dev", "r0", "nodad")
            #expect(try lab["C"].waitForPing(lab.router))
            #expect(try lab["C"].waitForPing(routerV6))
            // Link-local addresses get their local routes once duplicate address detection is done.
            let settled = try waitUntil(timeout: 5, interval: 0.1) {
                try lab["C"].run(["ip", "-6", "address", "show", "tentative"]).stdout.isEmpty
            }
            #expect(settled, "IPv6 duplicate address detection still running in C after 5 s")
            let before = try lab["C"].hostState()
            let mac = try lab["C"].macAddress(of: "c0")

            // No server runs: the client keeps retrying its handshake behind the kill switch.
            let client = try lab.startClient(extra: ["--lockdown"])
            let connecting = client.waitForLog(containing: "client connecting to", timeout: 10)
            try #require(connecting, "the client did not start:\n\(client.log)")
            #expect(try lab["C"].hostState().ruleset.contains("table inet tunvpn_lock_tun0"))

            let capture = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            // Each probe would succeed or at least put a frame on c0 without the kill switch; they run at
            // once, as each blocked one takes its full timeout.
            let udp =
                "import socket,sys\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                + "s.sendto(b'leak', (sys.argv[1], int(sys.argv[2])))\n"
            var probes: [(what: String, command: [String])] = [
                ("ping the router", ["ping", "-n", "-c", "1", "-W", "1", lab.router]),
                ("ping the internet host", ["ping", "-n", "-c", "1", "-W", "1", lab.internetHost]),
                ("ping the server", ["ping", "-n", "-c", "1", "-W", "1", lab.serverUnderlay]),
                ("ping the router over IPv6", ["ping", "-n", "-c", "1", "-W", "1", routerV6]),
                ("TCP to the router over IPv6", ["nc", "-z", "-w", "1", routerV6, "22"]),
            ]
            for (address, port) in [(lab.router, 22), (lab.internetHost, 80), (lab.serverUnderlay, TunnelLab.port)] {
                probes.append(("TCP to \(address):\(port)", ["nc", "-z", "-w", "1", address, "\(port)"]))
            }
            for (address, port) in [
                (lab.router, 53), (lab.internetHost, 53), (lab.serverUnderlay, TunnelLab.port + 1),
            ] {
                probes.append(("UDP to \(address):\(port)", ["python3", "-c", udp, address, "\(port)"]))
            }
            for (what, status) in try lab.runAtOnce(probes, in: "C") {
                #expect(status != 0, "\(what) got through the kill switch")
            }
            // The handshake is retried every 5 s (plus jitter): wait for one inside the capture.
            let retried = capture.waitForFrame(timeout: 7) {
                $0.ethernetSource == mac && $0.isUDP && $0.destination == lab.serverUnderlay
                    && $0.destinationPort == UInt16(TunnelLab.port)
            }
            let wire = try capture.stop()
            print("  c0 saw:\n" + wire.listing.map { "    " + $0 }.joined(separator: "\n"))
            #expect(
                retried,
                "no handshake initiation to the server left c0 within 7 s:\n\(wire.listing.joined(separator: "\n"))")
            #expect(client.isRunning, "the client keeps retrying: \(client.log)")
            #expect(wire.droppedByKernel == 0)
            let leaked = lab.framesOutsideTheTunnel(wire, leavingFrom: mac)
            #expect(
                leaked.isEmpty, "frames left c0 past the kill switch:\n\(leaked.prefix(20).joined(separator: "\n"))")
            #expect(!wire.rawBytesContain(Array("leak".utf8)), "a UDP payload `leak` crossed c0")

            // A crash keeps the block until `tunvpn down`.
            lab.kill9(client)
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "still blocked after kill -9")
            #expect(try lab["C"].hostState().ruleset.contains("table inet tunvpn_lock_tun0"))
            let down = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(down.status == 0 && down.stdout == "removed 1 change(s) for tun0\n", "\(down)")
            #expect(try lab["C"].ping(lab.router, count: 1).status == 0, "IPv4 works again after tunvpn down")
            #expect(try lab["C"].waitForPing(routerV6), "IPv6 works again after tunvpn down")
            let after = try lab["C"].hostState()
            #expect(after == before, "\(after.differences(from: before))")
        }
    }

    @Test func lockdownKeepsTheTunnelWorkingAndEverythingElseBlocked() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let before = try lab["C"].hostState()
            let (_, client) = try lab.startTunnel(client: ["--lockdown"])
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress))
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 3).status == 0)
            #expect(try lab["C"].ping(lab.internetHost, count: 3).status == 0)
            // The router is on c0's own link, outside the tunnel: blocked while the client runs.
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0)

            #expect(client.terminate() == 0)
            #expect(try lab["C"].ping(lab.router, count: 1).status == 0, "a clean stop lifts the block")
            let after = try lab["C"].hostState()
            #expect(after == before, "\(after.differences(from: before))")
        }
    }
}

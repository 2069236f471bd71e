// End-to-end tests of the dual stack: IPv6 inside the tunnel over an IPv4 underlay, IPv4 and IPv6 inside
// over an IPv6 underlay, and a full-tunnel client on a dual-stack LAN that must leak no IPv6, whether the
// server forwards IPv6 beyond the tunnel, has no IPv6 way out, or the client runs with --no-ipv6.
//
// Standard topology, dual stack (Topology.swift; k = the topology's subnet index):
//
//     C  c0 10.100.k.2/24, fd00:100:k::2/64 ──── s0 10.100.k.1/24, fd00:100:k::1/64  S
//        tun0 10.8.0.2/16, fd00:8::2/64            tun0 10.8.0.1/16, fd00:8::1/64
//          ╰── UDP to S's s0, port 51820: IPv4, or IPv6 in the `underlay6` lab ──╯
//
// Routed topology, dual stack (RoutedTopology.swift), for the leak tests:
//
//     C  c0 fd00:100:k::2 ── R (forwards IPv6; fd00:200:k::/64 via H's h1) ── r2 ── h1  H
//        IPv6 default via R      │                                                     │
//                                S  s0 fd00:101:k::2, s1 fd00:200:k::1 ───────────── h0 fd00:200:k::2
//                                   IPv6 default via H (its IPv6 egress), --egress s1
//
// Without the tunnel, C reaches H's fd00:200:k::2 over IPv6 through the LAN's router (the tests check it
// does): a full tunnel that let IPv6 bypass it would show C's own fd00:100:k::2 at H. H captures on every
// interface (`tcpdump -i any`), and the checks look at every IPv6 source address it saw.

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces, TUN devices and nftables tables"))
struct IPv6EndToEndTests {
    /// ping -p fills the payload with these bytes; it must never cross the underlay in the clear.
    static let pattern = "7475e2e5ec7e7a66"

    /// Keys for a server and a client, an allow-list with the client, both processes started (with
    /// `client` extra flags) and the tunnel up.
    func startTunnel(_ lab: TunnelLab, client extra: [String] = []) throws
        -> (server: BackgroundProcess, client: BackgroundProcess)
    {
        try lab.makeKeys()
        let server = try lab.startServer()
        let client = try lab.startClient(extra: extra)
        try lab.waitForTunnelUp(client)
        return (server, client)
    }

    /// Waits for `address` to be on `device` in `host` (the client's is set at tunnel-up) and expects it.
    func expectAddress6(
        _ lab: TunnelLab, _ address: String, on device: String, in host: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let there = try waitUntil(timeout: 5, interval: 0.1) { try lab.addresses6(of: device, in: host) == [address] }
        let found = try lab.addresses6(of: device, in: host)
        #expect(there, "\(host)'s \(device) has \(found), not [\(address)]", sourceLocation: sourceLocation)
    }

    /// 20 MB each way between C and S over `family`'s tunnel addresses, intact (the size of the roaming
    /// test's transfer, FaultEndToEndTests).
    func transferBothWays(_ lab: TunnelLab, ipv6: Bool, port: Int) throws {
        let name = ipv6 ? "v6" : "v4"
        let (server, client) =
            ipv6
            ? (TunnelLab.serverTunnelAddress6, TunnelLab.clientTunnelAddress6)
            : (TunnelLab.serverTunnelAddress, TunnelLab.clientTunnelAddress)
        try TestFiles.makeRandom(at: lab.path("\(name)-up"), megabytes: 20)
        try TestFiles.makeRandom(at: lab.path("\(name)-down"), megabytes: 20)
        let up = try transferFile(
            lab.path("\(name)-up"), from: lab["C"], to: server, port: port, receiver: lab["S"],
            into: lab.path("\(name)-up.received"), timeout: 90)
        try lab.expectIntact(up, "\(name)-up", megabytes: 20)
        let down = try transferFile(
            lab.path("\(name)-down"), from: lab["S"], to: client, port: port + 1, receiver: lab["C"],
            into: lab.path("\(name)-down.received"), timeout: 90)
        try lab.expectIntact(down, "\(name)-down", megabytes: 20)
    }

    /// The checks on a capture of C's c0 taken while the tests' traffic crossed the tunnel: nothing
    /// missed, at least `bytes` of sealed UDP payload, the ping pattern never in the clear, and nothing
    /// but tunvpn UDP between the client's and the server's underlay addresses (of the lab's underlay
    /// family), ARP and IPv6 neighbour discovery.
    func expectOnlyTheTunnel(
        _ wire: CaptureResult, _ lab: TunnelLab, atLeast bytes: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(
            wire.droppedByKernel == 0, "tcpdump missed frames on c0, so a leak could be missed",
            sourceLocation: sourceLocation)
        let sealed = wire.frames.reduce(0) { $0 + ($1.udpPayload?.count ?? 0) }
        #expect(sealed > bytes, "only \(sealed) bytes of UDP payload crossed c0", sourceLocation: sourceLocation)
        let patternBytes = try Hex.bytes(Self.pattern)
        #expect(
            !wire.rawBytesContain(patternBytes + patternBytes), "the ping pattern crossed c0 in the clear",
            sourceLocation: sourceLocation)
        let offending = lab.framesOutsideTheTunnel(wire, allowingNeighborDiscovery: true)
        #expect(
            offending.isEmpty,
            "frames other than ARP, neighbour discovery and tunvpn UDP on c0:\n\(offending.prefix(20).joined(separator: "\n"))",
            sourceLocation: sourceLocation)
        let family: CapturedFrame.Kind = lab.underlay6 ? .ipv6 : .ipv4
        #expect(
            wire.frames.contains { $0.isUDP && $0.kind == family }, "no tunnel UDP over \(family) on c0",
            sourceLocation: sourceLocation)
    }

    // MARK: The labs themselves

    /// The dual-stack labs route as drawn, without tunvpn: neighbours reach each other over IPv6 at once
    /// (addresses without duplicate address detection), IPv6 in C and S does not forward, the routed
    /// lab's LAN router carries C's IPv6 to the internet host (the path a leak would take) while IPv4
    /// still has no way there, and a capture reads IPv6 UDP with its addresses and ports.
    @Test func theDualStackLabsRouteAsDrawn() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Topology.clientServerInternet(dualStack: true).use { topology in
            let k = topology.subnetIndex
            #expect(topology.address6("C", "c0") == "fd00:100:\(k)::2")
            // At once: the topology waits for its links to be up (LabPlan.isReady).
            #expect(try topology["C"].ping(topology.address6("S", "s0"), count: 1).status == 0)
            #expect(try topology["H"].ping(topology.address6("S", "s1"), count: 1).status == 0)
            #expect(try topology["C"].ping(topology.address("S", "s0"), count: 1).status == 0)
            let capture = try Capture(in: topology["S"], interface: "s0", file: dir.path + "/s0.pcap")
            try sendUDPDatagram6(Array("hello".utf8), from: topology["C"], to: topology.address6("S", "s0"), port: 51820)
            let udp = try capture.stop().frames.filter(\.isUDP)
            #expect(udp.count == 1)
            #expect(udp.first?.kind == .ipv6 && udp.first?.source == topology.address6("C", "c0"))
            #expect(udp.first?.destination == topology.address6("S", "s0") && udp.first?.destinationPort == 51820)
            #expect(udp.first?.udpPayload == Array("hello".utf8))
        }
        try Topology.lanClientRouterServerInternet(dualStack: true).use { topology throws in
            let h = topology.address6("H", "h0")
            #expect(try topology["C"].waitForPing(h), "the LAN's router carries IPv6 to H")
            #expect(try topology["L"].waitForPing(topology.address6("C", "lan0")))
            #expect(try topology["L"].ping(h, count: 1).status != 0, "C does not forward until a gateway client does")
            #expect(try topology["C"].ping(topology.address("H", "h0"), count: 1).status != 0, "but not IPv4")
            #expect(try topology["S"].ping(topology.address6("C", "c0"), count: 1).status == 0)
            #expect(try topology["S"].ping(h, count: 1).status == 0)
            for host in ["C", "S"] {
                #expect(try topology[host].run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"]).stdout == "0\n")
            }
        }
    }

    /// Sends one UDP datagram over IPv6 with python3 (TestSupport's `sendUDPDatagram` speaks IPv4).
    func sendUDPDatagram6(_ payload: [UInt8], from namespace: NetworkNamespace, to address: String, port: Int) throws {
        let hex = payload.map { String(format: "%02x", $0) }.joined()
        let script = "import socket,sys; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)"
            + ".sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))"
        try namespace.run(["python3", "-c", script, hex, address, "\(port)"])
    }

    // MARK: The tunnel carries IPv6

    @Test func ipv6CrossesATunnelOverAnIPv4Underlay() throws {
        try TunnelLab.standard(dualStack: true).use { lab in
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let (server, _) = try startTunnel(lab)
            try expectAddress6(lab, "\(TunnelLab.clientTunnelAddress6)/64", on: "tun0", in: "C")
            try expectAddress6(lab, "\(TunnelLab.serverTunnelAddress6)/64", on: "tun0", in: "S")

            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress6))
            let pattern = ["-p", Self.pattern]
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress6, count: 3, extra: pattern).status == 0, "C → S")
            #expect(try lab["S"].ping(TunnelLab.clientTunnelAddress6, count: 3, extra: pattern).status == 0, "S → C")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0, "IPv4 still works")
            try transferBothWays(lab, ipv6: true, port: 5001)

            try expectOnlyTheTunnel(try underlay.stop(), lab, atLeast: 40 << 20)
            let completed = server.log.split(separator: "\n").filter { $0.contains("handshake completed") }
            #expect(completed.count == 1, "\(server.log)")
            #expect(completed.first?.contains(TunnelLab.clientTunnelAddress6) == true, "the server names both addresses")
            let stats = try server.requestStats()
            #expect(stats["drop.sourceNotAllowed"] == 0 && stats["drop.authentication"] == 0, "\(stats)")
            // Counted per family: the 20 MB each way went as IPv6.
            #expect((stats["rx_bytes.ipv6"] ?? 0) >= 20 << 20 && (stats["tx_bytes.ipv6"] ?? 0) >= 20 << 20, "\(stats)")
        }
    }

    @Test func ipv4AndIPv6CrossATunnelOverAnIPv6Underlay() throws {
        try TunnelLab.standard(underlay6: true).use { lab in
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let (server, client) = try startTunnel(lab)
            try expectAddress6(lab, "\(TunnelLab.clientTunnelAddress6)/64", on: "tun0", in: "C")
            #expect(try lab.addresses(of: "tun0", in: "C") == ["\(TunnelLab.clientTunnelAddress)/16"])

            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress6))
            let pattern = ["-p", Self.pattern]
            for (to, from, address) in [
                ("S", "C", TunnelLab.serverTunnelAddress6), ("C", "S", TunnelLab.clientTunnelAddress6),
                ("S", "C", TunnelLab.serverTunnelAddress), ("C", "S", TunnelLab.clientTunnelAddress),
            ] {
                #expect(try lab[from].ping(address, count: 3, extra: pattern).status == 0, "\(from) → \(to) at \(address)")
            }
            try transferBothWays(lab, ipv6: true, port: 5001)
            try transferBothWays(lab, ipv6: false, port: 5003)

            try expectOnlyTheTunnel(try underlay.stop(), lab, atLeast: 80 << 20)
            // The server saw the client at its IPv6 underlay address.
            let completed = server.log.split(separator: "\n").first { $0.contains("handshake completed") }
            #expect(completed?.contains(lab.clientUnderlay6) == true, "\(completed ?? "no handshake completed")")
            #expect(client.log.contains(lab.serverUnderlay6), "the client names its IPv6 endpoint: \(client.log)")
        }
    }

    // MARK: No leak from a full-tunnel client on a dual-stack LAN

    /// Checks that, before any tunnel, C reaches H over IPv6 through the LAN's router (so a leak would show
    /// at H), starts H's web server and a capture on all of H's interfaces, and returns both.
    func prepareLeakCheck(_ lab: TunnelLab) throws -> (web: BackgroundProcess, seen: Capture) {
        #expect(try lab["C"].waitForPing(lab.internetHost6), "C reaches H over IPv6 without the tunnel")
        #expect(try lab["C"].ping(lab.internetHost, count: 1).status != 0, "but not over IPv4")
        let web = try lab.startWebServer()
        try "hello over IPv6\n".write(toFile: lab.path("www/index.html"), atomically: true, encoding: .utf8)
        #expect(try lab.fetch("index.html", from: "C", into: lab.path("before.html"), ipv6: true))
        #expect(lab.requestSources(web) == [lab.clientUnderlay6], "the fetch came straight from C: \(web.log)")
        let seen = try Capture(in: lab["H"], interface: "any", file: lab.path("h.pcap"))
        return (web, seen)
    }

    /// The IPv6 sources of the frames H captured that are the client's own addresses (its underlay
    /// address, or its tunnel address unmasqueraded), as tcpdump lines.
    func framesFromTheClient(_ capture: CaptureResult, _ lab: TunnelLab) -> [String] {
        let client = [lab.clientUnderlay6, TunnelLab.clientTunnelAddress6]
        return capture.frames.enumerated().filter { $0.element.kind == .ipv6 && client.contains($0.element.source ?? "") }
            .map { capture.line($0.offset) }
    }

    /// Checks the client's full-tunnel IPv6 routes (::/1 and 8000::/1 into tun0), whatever the server offers.
    func expectFullTunnelRoutes6(_ lab: TunnelLab, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let routes = try lab["C"].ip("-6", "route", "show").stdout
        #expect(routes.contains("::/1 dev tun0"), "\(routes)", sourceLocation: sourceLocation)
        #expect(routes.contains("8000::/1 dev tun0"), "\(routes)", sourceLocation: sourceLocation)
    }

    /// From C, an IPv6 ping and an HTTP request to H must fail at once, answered by the client's ICMPv6
    /// destination unreachable (ping says so; curl gives up in well under a second instead of timing
    /// out), while IPv4 through the tunnel still works.
    func expectIPv6RefusedAtOnce(_ lab: TunnelLab, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ping = try lab["C"].exec(["ping", "-n", "-c", "1", "-W", "2", lab.internetHost6], timeout: 10)
        #expect(ping.status != 0, "ping -6 to H got through: \(ping.stdout)", sourceLocation: sourceLocation)
        #expect(
            ping.stdout.contains("Destination unreachable"), "ping -6 was not answered unreachable: \(ping.stdout)",
            sourceLocation: sourceLocation)
        let started = Date()
        let curl = try lab["C"].exec(
            ["curl", "-6", "-sS", "-g", "--max-time", "5", "-o", "/dev/null", lab.webURL("index.html", ipv6: true)],
            timeout: 15)
        let seconds = Date().timeIntervalSince(started)
        print("  curl -6: exit status \(curl.status) after \(String(format: "%.3f", seconds)) s: \(curl.stderr)")
        #expect(curl.status == 7, "curl -6 did not fail to connect (7; 28 is a timeout): \(curl.status) \(curl.stderr)",
                sourceLocation: sourceLocation)
        #expect(seconds < 1, "curl -6 took \(seconds) s to fail, not an immediate refusal", sourceLocation: sourceLocation)
        #expect(try lab["C"].waitForPing(lab.internetHost), "IPv4 through the tunnel still works", sourceLocation: sourceLocation)
    }

    @Test func fullTunnelClientSendsIPv6ThroughAServerWithIPv6EgressAndLeaksNone() throws {
        try TunnelLab.routed(dualStack: true).use { lab in
            let (web, seen) = try prepareLeakCheck(lab)
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            _ = try startTunnel(lab)
            try expectFullTunnelRoutes6(lab)
            try expectAddress6(lab, "\(TunnelLab.clientTunnelAddress6)/64", on: "tun0", in: "C")

            #expect(try lab["C"].waitForPing(lab.internetHost6), "ping -6 to H through the tunnel")
            #expect(try lab["C"].ping(lab.internetHost6, count: 3, extra: ["-p", Self.pattern]).status == 0)
            try TestFiles.makeRandom(at: lab.path("www/download"), megabytes: 4)
            #expect(try lab.fetch("download", from: "C", into: lab.path("download.received"), ipv6: true))
            #expect(
                try TestFiles.sha256(of: lab.path("www/download")) == TestFiles.sha256(of: lab.path("download.received")))
            // Masquerade: H saw the server's IPv6 address (after the fetch made before the tunnel).
            #expect(lab.requestSources(web) == [lab.clientUnderlay6, lab.serverEgress6], "\(web.log)")

            let atH = try seen.stop()
            let leaked = framesFromTheClient(atH, lab)
            #expect(leaked.isEmpty, "H saw the client's own IPv6 addresses:\n\(leaked.prefix(10).joined(separator: "\n"))")
            #expect(atH.frames.contains { $0.kind == .ipv6 && $0.source == lab.serverEgress6 }, "the pings reached H")
            try expectOnlyTheTunnel(try underlay.stop(), lab, atLeast: 4 << 20)
        }
    }

    @Test func fullTunnelClientRefusesIPv6AtOnceWhenTheServerHasNoIPv6EgressAndLeaksNone() throws {
        try TunnelLab.routed(dualStack: true).use { lab in
            // The server's only IPv6 way out is its default route: without it, it has no IPv6 egress.
            try lab["S"].ip("-6", "route", "del", "default")
            let (_, seen) = try prepareLeakCheck(lab)
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let (server, client) = try startTunnel(lab)
            try expectFullTunnelRoutes6(lab)
            // The tunnel still carries IPv6 between the client and the server themselves.
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress6), "\(client.log)")

            try expectIPv6RefusedAtOnce(lab)
            let stats = try client.requestStats()
            #expect((stats["drop.ipv6Unreachable"] ?? 0) >= 1, "the client counts what it answered: \(stats)")

            let leaked = framesFromTheClient(try seen.stop(), lab)
            #expect(leaked.isEmpty, "H saw the client's own IPv6 addresses:\n\(leaked.prefix(10).joined(separator: "\n"))")
            try expectOnlyTheTunnel(try underlay.stop(), lab, atLeast: 0)
            #expect(server.isRunning)
        }
    }

    @Test func fullTunnelClientWithNoIPv6RefusesIPv6AtOnceAndLeaksNone() throws {
        try TunnelLab.routed(dualStack: true).use { lab in
            let (_, seen) = try prepareLeakCheck(lab)
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let (_, client) = try startTunnel(lab, client: ["--no-ipv6"])
            try expectFullTunnelRoutes6(lab)
            #expect(try lab.addresses6(of: "tun0", in: "C") == [], "--no-ipv6: no IPv6 address on tun0")

            try expectIPv6RefusedAtOnce(lab)
            let stats = try client.requestStats()
            #expect((stats["drop.ipv6Unreachable"] ?? 0) >= 1, "the client counts what it answered: \(stats)")

            let leaked = framesFromTheClient(try seen.stop(), lab)
            #expect(leaked.isEmpty, "H saw the client's own IPv6 addresses:\n\(leaked.prefix(10).joined(separator: "\n"))")
            try expectOnlyTheTunnel(try underlay.stop(), lab, atLeast: 0)
        }
    }
}

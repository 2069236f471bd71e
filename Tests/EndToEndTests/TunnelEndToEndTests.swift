// End-to-end tests of the tunnel: the real `tunvpn server` and `tunvpn client` in network
// namespaces, checked with ping, nc, tcpdump and the processes' logs and `stats:` lines.
//
// Standard topology (k = the topology's subnet index, different for every test):
//
//     client ns (C)                 server ns (S)                   internet host ns (H)
//     c0 10.100.k.2/24 ──────────── s0 10.100.k.1/24
//     tun0 10.8.0.2/16              s1 10.200.k.1/24 ────────────── h0 10.200.k.2/24
//       ╰── UDP to 10.100.k.1:51820 ──╯ tun0 10.8.0.1/16            route 10.8.0.0/16 via 10.200.k.1
//
// Two clients (twoClientsGetTheirOwnAddressesAndReachEachOtherThroughTheServer):
//
//     C1: c0 10.100.k.2/24 ─── s0 10.100.k.1/24 ┐
//                                               S  tun0 10.8.0.1/16, ip_forward=1
//     C2: c0 10.101.k.2/24 ─── s2 10.101.k.1/24 ┘
//
// Each test builds its own topology and keys, and removes both on every way out (TunnelLab.use).

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct TunnelEndToEndTests {
    /// The client's tunnel address when it is the first (or only) client taking one from the pool.
    static let firstPoolAddress = "10.8.0.2"

    /// Keys for a server and a client, an allow-list with the client, both processes started and the
    /// tunnel up; returns (server, client).
    func startTunnel(_ lab: TunnelLab) throws -> (server: BackgroundProcess, client: BackgroundProcess) {
        try lab.keygen("server")
        let clientKey = try lab.keygen("client")
        try lab.writeAllowList(["\(clientKey)  # the test's client"])
        let server = try lab.startServer()
        let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"))
        let address = try lab.waitForTunnelUp(client)
        #expect(address == Self.firstPoolAddress)
        return (server, client)
    }

    // MARK: Ping

    @Test func clientAndServerPingEachOtherThroughTheTunnel() throws {
        try TunnelLab.standard().use { lab in
            let (server, client) = try startTunnel(lab)
            #expect(try lab.addresses(of: "tun0", in: "C") == ["10.8.0.2/16"])
            #expect(try lab.addresses(of: "tun0", in: "S") == ["10.8.0.1/16"])
            #expect(try lab.queueLength(of: "tun0", in: "C") == 1000, "--txqueuelen's default reached the device")
            #expect(try lab.queueLength(of: "tun0", in: "S") == 1000)

            let publicKey = try String(contentsOfFile: lab.path("keys/client.pub"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let completed = server.log.split(separator: "\n").filter { $0.contains("handshake completed") }
            #expect(completed.count == 1, "\(server.log)")
            #expect(completed.first?.contains(publicKey) == true)
            #expect(completed.first?.contains(Self.firstPoolAddress) == true)

            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 5).status == 0)
            #expect(try lab["S"].ping(Self.firstPoolAddress, count: 5).status == 0)

            let serverStats = try server.requestStats()
            let clientStats = try client.requestStats()
            #expect(serverStats["handshakes.completed"] == 1)
            #expect(clientStats["handshakes.completed"] == 1)
            // 5 requests and 5 replies each way at least (keepalives may add a few).
            #expect((serverStats["rx_packets"] ?? 0) >= 10)
            #expect((clientStats["tx_packets"] ?? 0) >= 10)
            for key in ["drop.replay", "drop.authentication", "drop.unknownSession", "drop.malformed",
                        "drop.sourceNotAllowed"]
            {
                #expect(serverStats[key] == 0, "server \(key)")
                #expect(clientStats[key] == 0, "client \(key)")
            }

            // SIGINT for the client, SIGTERM for the server: both exit 0 and print final stats.
            print("+ kill -INT \(client.pid)")
            client.sendSignal(SIGINT)
            #expect(client.waitForExit(timeout: 5))
            #expect(client.exitStatus == 0 && client.endedBySignal == false, "client: \(client.log)")
            #expect(TunvpnStats.count(in: client.log) == 2, "a final stats: line at exit")
            #expect(server.terminate() == 0 && server.endedBySignal == false, "server: \(server.log)")
            #expect(TunvpnStats.count(in: server.log) == 2, "a final stats: line at exit")
            // The client removed its device on the way out; the server's went with its process.
            #expect(try lab["C"].exec(["ip", "link", "show", "tun0"]).status != 0)
        }
    }

    // MARK: Forwarded TCP

    @Test func fiftyMegabytesCrossTheTunnelToTheInternetHostAndBackIntact() throws {
        try TunnelLab.standard().use { lab in
            let (server, _) = try startTunnel(lab)
            let internetHost = try lab.routeClientToInternetHost()

            try TestFiles.makeRandom(at: lab.path("up"), megabytes: 50)
            try TestFiles.makeRandom(at: lab.path("down"), megabytes: 50)
            let up = try transferFile(
                lab.path("up"), from: lab["C"], to: internetHost, port: 5001, receiver: lab["H"],
                into: lab.path("up.received"), timeout: 90)
            try lab.expectIntact(up, "up", megabytes: 50)

            let down = try transferFile(
                lab.path("down"), from: lab["H"], to: Self.firstPoolAddress, port: 5002, receiver: lab["C"],
                into: lab.path("down.received"), timeout: 90)
            try lab.expectIntact(down, "down", megabytes: 50)

            let stats = try server.requestStats()
            #expect((stats["rx_bytes"] ?? 0) >= 50 << 20)
            #expect((stats["tx_bytes"] ?? 0) >= 50 << 20)
            #expect(stats["drop.authentication"] == 0 && stats["drop.sourceNotAllowed"] == 0)
        }
    }

    // MARK: What the underlay carries

    @Test func underlayCarriesOnlyUDPToTheServerPortAndNeverThePlaintext() throws {
        try TunnelLab.standard().use { lab in
            _ = try startTunnel(lab)
            let clientUnderlay = lab.topology.address("C", "c0")
            let serverUnderlay = lab.topology.address("S", "s0")
            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let inner = try Capture(in: lab["C"], interface: "tun0", file: lab.path("tun0.pcap"))

            // A marker over TCP, a ping whose payload repeats a marker pattern, and a 4 MB transfer.
            let marker = "tunvpn-e2e-marker-\(UUID().uuidString)"
            let receiver = try lab["S"].spawn(
                ["sh", "-c", "exec nc -l -p 5003 > \"$1\"", "nc", lab.path("marker.received")],
                logFile: lab.path("marker.nc.log"))
            #expect(try lab["S"].waitForListener(port: 5003))
            #expect(try sendText(marker, from: lab["C"], to: TunnelLab.serverTunnelAddress, port: 5003))
            #expect(receiver.waitForExit(timeout: 5))
            let pattern = "7475e2e5ec7e7a11"  // ping -p fills the payload with these 8 bytes
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 2, extra: ["-p", pattern]).status == 0)
            try TestFiles.makeRandom(at: lab.path("bulk"), megabytes: 4)
            let bulk = try transferFile(
                lab.path("bulk"), from: lab["C"], to: TunnelLab.serverTunnelAddress, port: 5004, receiver: lab["S"],
                into: lab.path("bulk.received"))
            #expect(bulk.bytesReceived == 4 << 20)

            let wire = try underlay.stop()
            let plain = try inner.stop()
            #expect(try String(contentsOfFile: lab.path("marker.received"), encoding: .utf8) == marker)
            let patternBytes = try Hex.bytes(pattern)
            // The checks below can fail: the plaintext side does carry both markers.
            #expect(plain.rawBytesContain(Array(marker.utf8)))
            #expect(plain.rawBytesContain(patternBytes + patternBytes))
            #expect(!wire.rawBytesContain(Array(marker.utf8)), "the marker crossed the underlay in the clear")
            #expect(!wire.rawBytesContain(patternBytes + patternBytes), "the ping pattern crossed the underlay in the clear")

            #expect(wire.droppedByKernel == 0, "tcpdump missed frames on c0, so the checks below could miss a leak")
            // Counted in bytes, not frames: with UDP GSO one captured frame can hold many datagrams.
            let sealed = wire.frames.reduce(0) { $0 + ($1.udpPayload?.count ?? 0) }
            #expect(sealed > 4 << 20, "the 4 MB transfer crossed c0 sealed (\(sealed) bytes of UDP payload)")
            var offending: [String] = []
            for (i, frame) in wire.frames.enumerated() where frame.kind != .arp {
                let toServer = frame.source == clientUnderlay && frame.destination == serverUnderlay
                    && frame.destinationPort == UInt16(TunnelLab.port)
                let fromServer = frame.source == serverUnderlay && frame.destination == clientUnderlay
                    && frame.sourcePort == UInt16(TunnelLab.port)
                let type = frame.udpPayload?.first ?? 0
                if !(frame.isUDP && (toServer || fromServer) && (1...4).contains(type)) {
                    offending.append(wire.line(i))
                }
            }
            #expect(offending.isEmpty, "frames other than ARP and tunvpn UDP on c0:\n\(offending.prefix(20).joined(separator: "\n"))")
        }
    }

    // MARK: Refused clients

    @Test func clientWithTheWrongServerKeyIsRefusedAsWrongServerKey() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            try lab.keygen("impostor")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList([clientKey])
            let server = try lab.startServer()
            let client = try lab.startClient(serverKey: "impostor", endpoint: lab.topology.address("S", "s0"))
            try expectRefusal(server: server, client: client, reason: "wrongServerKey", lab: lab)
        }
    }

    @Test func clientMissingFromTheAllowListIsRefusedAsUnknownClientKey() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            try lab.keygen("client")
            let otherKey = try lab.keygen("other")
            try lab.writeAllowList(["\(otherKey) 10.8.0.9  # someone else"])
            let server = try lab.startServer()
            let endpoint = lab.topology.address("S", "s0")
            let client = try lab.startClient(endpoint: endpoint)
            try expectRefusal(server: server, client: client, reason: "unknownClientKey", lab: lab)
            // The server names the refused key, so the operator can add it; the client says at its first
            // retransmission (about 5 s), not only at the give-up 90 s later, that nothing answers, and why.
            let clientKey = try String(contentsOfFile: lab.path("keys/client.pub"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(server.log.contains("(client key \(clientKey) is not on the allow-list); to admit it, add a line `\(clientKey)`"), "\(server.log)")
            #expect(client.waitForLog(containing: "no response from the server at \(endpoint):51820", timeout: 10), "\(client.log)")
            #expect(client.log.contains("Likely causes: --peer-key is not the server's public key, this client's public key is not on the server's allow-list, or UDP"))
            // One line for the key however often the client retries within the minute.
            let keyLines = server.log.split(separator: "\n").filter { $0.contains("client key \(clientKey)") }
            #expect(keyLines.count == 1, "\(keyLines)")
        }
    }

    /// The server logs `handshake refused … reason` and counts it, no tunnel comes up, and ping across
    /// the tunnel fails both ways (from the client, which has no tunnel address, and from the server, whose
    /// tun0 routes 10.8.0.0/16 but which has no peer for 10.8.0.2).
    func expectRefusal(server: BackgroundProcess, client: BackgroundProcess, reason: String, lab: TunnelLab) throws {
        let refused = server.waitForLog(containing: "handshake refused", timeout: 10)
        try #require(refused, "no `handshake refused` in the server log within 10 s:\n\(server.log)")
        let lines = server.log.split(separator: "\n").filter { $0.contains("handshake refused") }
        #expect(lines.allSatisfy { $0.contains(reason) }, "\(lines)")
        #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 2, wait: 1).status != 0)
        #expect(try lab["S"].ping(Self.firstPoolAddress, count: 2, wait: 1).status != 0)
        #expect(!client.log.contains("tunnel up"), "\(client.log)")
        #expect(!server.log.contains("handshake completed"))
        let stats = try server.requestStats()
        #expect((stats["handshake.failed.\(reason)"] ?? 0) >= 1, "\(stats)")
        #expect(stats["handshakes.completed"] == 0)
    }

    // MARK: Forged frames

    @Test func replayedDataFrameIsDroppedAndCountedAsReplay() throws {
        try TunnelLab.standard().use { lab in
            let (server, _) = try startTunnel(lab)
            let frame = try captureDataFrameFromClient(lab)
            try sendForgedFrame(frame, lab: lab, server: server, counted: "drop.replay")
        }
    }

    @Test func dataFrameWithOneFlippedBitIsDroppedAndCountedAsAuthenticationFailure() throws {
        try TunnelLab.standard().use { lab in
            let (server, _) = try startTunnel(lab)
            var frame = try captureDataFrameFromClient(lab)
            frame[frame.count / 2] ^= 0x01  // inside the ciphertext (the header is 16 bytes, the tag 16)
            try sendForgedFrame(frame, lab: lab, server: server, counted: "drop.authentication")
        }
    }

    @Test func replayedInitiationIsRefusedAsReplayedInitiation() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList([clientKey])
            let server = try lab.startServer()
            let capture = try Capture(in: lab["S"], interface: "s0", file: lab.path("s0.pcap"), filter: ["udp"])
            let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"))
            _ = try lab.waitForTunnelUp(client)
            let frames = try capture.stop().frames
            let initiation = try #require(
                frames.compactMap(\.udpPayload).first { $0.first == 1 }, "no initiation (type 1) captured")
            #expect(initiation.count == 288, "protocol version 3: docs/PROTOCOL.md, \"Message 1\"")
            let before = try server.requestStats()
            try sendUDPDatagram(
                initiation, from: lab["C"], to: lab.topology.address("S", "s0"), port: TunnelLab.port)
            #expect(server.waitForLog(containing: "replayedInitiation", timeout: 5), "\(server.log)")
            let after = try server.requestStats()
            #expect(after["handshake.failed.replayedInitiation"] == (before["handshake.failed.replayedInitiation"] ?? 0) + 1)
            #expect(after["handshakes.completed"] == before["handshakes.completed"])
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0, "the tunnel still works")
        }
    }

    /// Captures the client's data frames to the server (UDP to port 51820, type 4) during a ping, and
    /// returns one frame's UDP payload.
    func captureDataFrameFromClient(_ lab: TunnelLab) throws -> [UInt8] {
        let capture = try Capture(
            in: lab["S"], interface: "s0", file: lab.path("s0.pcap"), filter: ["udp", "dst", "port", "\(TunnelLab.port)"])
        #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 3).status == 0)
        let frames = try capture.stop().frames
        let data = frames.compactMap(\.udpPayload).filter { $0.first == 4 && $0.count > 32 }
        return try #require(data.first, "no data frame (type 4) from the client in \(frames.count) captured frames")
    }

    /// Sends `frame` to the server from the client namespace (another source port; the frame names its
    /// session itself) and checks that exactly the counter `counted` went up by one, that nothing else was
    /// dropped, and that the tunnel still works.
    func sendForgedFrame(_ frame: [UInt8], lab: TunnelLab, server: BackgroundProcess, counted: String) throws {
        let dropCounters = ["drop.replay", "drop.authentication", "drop.unknownSession", "drop.malformed",
                            "drop.sourceNotAllowed"]
        let before = try server.requestStats()
        try sendUDPDatagram(frame, from: lab["C"], to: lab.topology.address("S", "s0"), port: TunnelLab.port)
        var after = before
        let counted1 = try waitUntil(timeout: 3, interval: 0.2) {
            after = try server.requestStats()
            return after[counted] != before[counted]
        }
        #expect(counted1, "\(counted) did not change within 3 s")
        for key in dropCounters {
            let expected = (before[key] ?? 0) + (key == counted ? 1 : 0)
            #expect(after[key] == expected, "\(key): before \(before[key].map(String.init) ?? "-"), after \(after[key].map(String.init) ?? "-")")
        }
        #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0, "the tunnel still works")
    }

    // MARK: Addresses

    @Test func clientWithAFixedAddressOnTheAllowListGetsThatAddress() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList(["\(clientKey) 10.8.3.77  # fixed"])
            let server = try lab.startServer()
            let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"))
            #expect(try lab.waitForTunnelUp(client) == "10.8.3.77")
            #expect(try lab.addresses(of: "tun0", in: "C") == ["10.8.3.77/16"])
            #expect(server.log.split(separator: "\n").contains { $0.contains("handshake completed") && $0.contains("10.8.3.77") })
            #expect(try lab["S"].ping("10.8.3.77").status == 0)
        }
    }

    @Test func twoClientsGetTheirOwnAddressesAndReachEachOtherThroughTheServer() throws {
        let topology = try Topology(hosts: ["C1", "C2", "S"]) { k in
            [
                VethLink(.init("C1", "c0", "10.100.\(k).2/24"), .init("S", "s0", "10.100.\(k).1/24")),
                VethLink(.init("C2", "c0", "10.101.\(k).2/24"), .init("S", "s2", "10.101.\(k).1/24")),
            ]
        }
        try TunnelLab(topology).use { lab in
            try lab.keygen("server")
            let one = try lab.keygen("one")
            let two = try lab.keygen("two")
            try lab.writeAllowList(["\(one)  # C1", "\(two)  # C2"])
            try lab["S"].sysctl("net.ipv4.ip_forward", "1")
            let server = try lab.startServer()
            let c1 = try lab.startClient(in: "C1", key: "one", endpoint: lab.topology.address("S", "s0"))
            let address1 = try lab.waitForTunnelUp(c1)
            let c2 = try lab.startClient(in: "C2", key: "two", endpoint: lab.topology.address("S", "s2"))
            let address2 = try lab.waitForTunnelUp(c2)
            #expect(address1 == "10.8.0.2")
            #expect(address2 == "10.8.0.3")
            #expect(try lab.addresses(of: "tun0", in: "C1") == ["\(address1)/16"])
            #expect(try lab.addresses(of: "tun0", in: "C2") == ["\(address2)/16"])

            #expect(try lab["C1"].ping(TunnelLab.serverTunnelAddress).status == 0)
            #expect(try lab["C2"].ping(TunnelLab.serverTunnelAddress).status == 0)
            #expect(try lab["S"].ping(address1).status == 0)
            #expect(try lab["S"].ping(address2).status == 0)
            #expect(try lab["C1"].ping(address2).status == 0, "C1 → C2 through the server")
            #expect(try lab["C2"].ping(address1).status == 0, "C2 → C1 through the server")
            let stats = try server.requestStats()
            #expect(stats["handshakes.completed"] == 2)
            #expect(stats["drop.sourceNotAllowed"] == 0)
        }
    }
}

// End-to-end test of reloading the allow-list when it gives a client's pool address to another key
// (docs/PROTOCOL.md, "Reloading the allow-list"): the new key gets the address, the previous holder is
// evicted and draws a fresh address at its next handshake, and the server never lists two peers with one
// address nor seals traffic for it to the old holder.
//
//     B: c0 10.100.k.2/24 ─── s0 10.100.k.1/24 ┐
//                                               S  tun0 10.8.0.1/16
//     A: c0 10.101.k.2/24 ─── s2 10.101.k.1/24 ┘
//
// The test builds its own topology and keys, and removes both on every way out (TunnelLab.use).

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .enabled(if: getuid() == 0, "needs root: it creates network namespaces and TUN devices"))
struct ReloadEndToEndTests {
    /// One peer as `tunvpn show --json` lists it.
    struct Peer {
        var key: String
        var address: String?
        var sessionAge: Int?
        var txPackets: Int
    }

    /// The server's peers from `tunvpn show --json`, after checking that no two of them share an address.
    func serverPeers(_ lab: TunnelLab) throws -> [Peer] {
        let json = try lab["S"].run([TestBinaries.tunvpn, "show", "--json", "--dev", "tun0"]).stdout
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let peers = try #require(object["peers"] as? [[String: Any]]).map { p in
            Peer(
                key: p["public_key"] as? String ?? "", address: p["tunnel_address"] as? String,
                sessionAge: p["session_age"] as? Int, txPackets: p["tx_packets"] as? Int ?? 0)
        }
        let addresses = peers.compactMap(\.address)
        #expect(Set(addresses).count == addresses.count, "two peers listed with one address: \(json)")
        return peers
    }

    func peer(_ key: String, in peers: [Peer]) throws -> Peer { try #require(peers.first { $0.key == key }) }

    /// Packets tunvpn wrote into the TUN device of `host` (what the tunnel delivered there; keepalives
    /// are never written). The device counts them as received.
    func tunReceived(_ lab: TunnelLab, _ host: String) throws -> Int {
        let text = try lab[host].run(["cat", "/sys/class/net/tun0/statistics/rx_packets"]).stdout
        return try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test func aReloadThatGivesAPoolAddressToANewKeyEvictsItsHolder() throws {
        let topology = try Topology(hosts: ["B", "A", "S"]) { k in
            [
                VethLink(.init("B", "c0", "10.100.\(k).2/24"), .init("S", "s0", "10.100.\(k).1/24")),
                VethLink(.init("A", "c0", "10.101.\(k).2/24"), .init("S", "s2", "10.101.\(k).1/24")),
            ]
        }
        try TunnelLab(topology).use { lab in
            try lab.keygen("server")
            let keyB = try lab.keygen("b")
            let keyA = try lab.keygen("a")
            try lab.writeAllowList(["\(keyB)  # B, from the pool"])
            let server = try lab.startServer()
            let clientB = try lab.startClient(in: "B", key: "b", endpoint: lab.topology.address("S", "s0"), logName: "client-B")
            #expect(try lab.waitForTunnelUp(clientB) == "10.8.0.2")
            #expect(try lab["B"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0)

            // The operator gives 10.8.0.2 to a new key A and reloads.
            try lab.writeAllowList(["\(keyB)  # B, from the pool", "\(keyA) 10.8.0.2  # A"])
            let logBefore = server.log.utf8.count
            try lab["S"].run([TestBinaries.tunvpn, "reload", "--dev", "tun0"])
            #expect(server.waitForLog(containing: "reloaded", after: logBefore, timeout: 10))
            #expect(server.log.contains("2 client(s), 1 added, 0 removed, 0 readdressed, 1 evicted (10.8.0.2 from \(keyB))"))
            var peers = try serverPeers(lab)
            #expect(try peer(keyB, in: peers).address == nil, "B lost its address")
            #expect(try peer(keyB, in: peers).sessionAge == nil, "B lost its session")

            // A connects and gets 10.8.0.2.
            let clientA = try lab.startClient(in: "A", key: "a", endpoint: lab.topology.address("S", "s2"), logName: "client-A")
            #expect(try lab.waitForTunnelUp(clientA) == "10.8.0.2")
            #expect(try lab["A"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0)
            peers = try serverPeers(lab)
            #expect(try peer(keyA, in: peers).address == "10.8.0.2")

            // B sends again: the server answers its stale session with a hint, B handshakes at once, gets a
            // fresh pool address and gives its device that address.
            var addressB: String?
            for _ in 0..<20 where addressB == nil {
                _ = try lab["B"].exec(["ping", "-c", "1", "-W", "1", TunnelLab.serverTunnelAddress])
                addressB = try peer(keyB, in: try serverPeers(lab)).address
            }
            #expect(addressB == "10.8.0.3", "B reconnected with a different address")
            #expect(clientB.log.split(separator: "\n").filter { $0.contains("handshake completed") }.count >= 2)
            #expect(clientB.waitForLog(containing: "tunnel address changed by the server: address 10.8.0.3/16", timeout: 5), "\(clientB.log)")
            let deviceB = try lab["B"].ip("-4", "-o", "addr", "show", "dev", "tun0").stdout
            #expect(deviceB.contains("inet 10.8.0.3/16") && !deviceB.contains("10.8.0.2"), "B's device: \(deviceB)")
            #expect(try lab["B"].ping(TunnelLab.serverTunnelAddress, count: 2).status == 0, "B works from its new address")
            // B may no longer send from A's address: packets from 10.8.0.2 are dropped at the server.
            try lab["B"].ip("addr", "add", "10.8.0.2/32", "dev", "tun0")
            let spoofed = try lab["B"].exec(["ping", "-c", "2", "-W", "1", "-I", "10.8.0.2", TunnelLab.serverTunnelAddress])
            #expect(spoofed.status != 0, "no answer to B's packets from A's address")
            let stats = try server.requestStats()
            #expect((stats["drop.sourceNotAllowed"] ?? 0) > 0, "B's packets from 10.8.0.2 are dropped, not delivered as A's")
            try lab["B"].ip("addr", "del", "10.8.0.2/32", "dev", "tun0")

            // Traffic for 10.8.0.2 reaches A only.
            let receivedA = try tunReceived(lab, "A")
            let receivedB = try tunReceived(lab, "B")
            let sentB = try peer(keyB, in: try serverPeers(lab)).txPackets
            #expect(try lab["S"].ping("10.8.0.2", count: 5).status == 0, "A answers for 10.8.0.2")
            #expect(try tunReceived(lab, "A") >= receivedA + 5)
            #expect(try tunReceived(lab, "B") == receivedB, "nothing for 10.8.0.2 reached B")
            peers = try serverPeers(lab)
            #expect(try peer(keyB, in: peers).txPackets <= sentB + 1, "at most a keepalive went to B")
            #expect(try peer(keyA, in: peers).address == "10.8.0.2")
            #expect(try peer(keyB, in: peers).address == "10.8.0.3")
        }
    }
}

// The server's side of prefixes routed behind clients (docs/PROTOCOL.md, "Allowed IPs"): a kernel route
// into the tunnel device for each, in the plan (so journaled and undone like every change), the file's
// check against the server's prefixes, and a reload that refuses to change the set of routed prefixes.

import Control
import Crypto
import Platform
import Routing
import Testing
import Transport

@Suite struct ReloadRoutedPrefixTests {
    let a = PrivateKey(random: SeededKeys(seed: 41)).publicKey
    let b = PrivateKey(random: SeededKeys(seed: 42)).publicKey
    let prefix = IPv4Prefix("10.8.0.1/16")!
    let prefix6 = IPv6Prefix("fd00:8::1/64")!

    func routed(_ texts: String...) -> [IPPrefix] { texts.map { IPPrefix($0)! } }

    @Test func theServersPlanRoutesEachPrefixIntoItsDeviceAfterTheDeviceStep() throws {
        var c = ServerConfiguration(address: prefix)
        c.address6 = prefix6
        c.noNAT = true
        c.tunnel.firewall = "nftables"
        let plan = try ServerDaemon.plan(
            c, routed: routed("192.168.50.0/24", "fd00:50::/64", "192.168.50.0/24", "10.8.3.0/24", "172.16.0.0/12"))
        let routes = plan.changes.compactMap { change -> String? in
            if case .route(let destination, nil, "tun0") = change { return destination }
            return nil
        }
        let withIPv6 = HostNetwork.ipv6Available
        // Once each, and never inside the tunnel prefix (the file's check refuses that; the plan skips it).
        #expect(routes == ["192.168.50.0/24"] + (withIPv6 ? ["fd00:50::/64"] : []) + ["172.16.0.0/12"])
        #expect(plan.script.contains("ip -4 route add 192.168.50.0/24 dev tun0\n"))
        let device = try #require(plan.changes.firstIndex { if case .device = $0 { return true } else { return false } })
        let firstRoute = try #require(plan.changes.firstIndex { if case .route = $0 { return true } else { return false } })
        #expect(device < firstRoute, "routes go into the device once it is up")
        #expect(try ServerDaemon.plan(c).changes.allSatisfy { if case .route = $0 { return false } else { return true } })
    }

    @Test func theFileIsReadWithTheServersPrefixes() throws {
        let text = "\(a.base64) 10.8.0.5/32, 192.168.50.7/32, 192.168.60.0/24  # office\n\(b.base64) 10.9.0.7\n"
        do {
            _ = try AllowListFile.parseAllowList(Array(text.utf8), file: "keys/clients", prefix: prefix, prefix6: prefix6)
            Issue.record("a bare address outside the tunnel prefix is still refused")
        } catch {
            #expect("\(error)" == "keys/clients: line 2: address 10.9.0.7 for \(b.base64) is not a client address in 10.8.0.1/16")
        }
        let list = try AllowListFile.parseAllowList(
            Array("\(a.base64) 10.8.0.5/32, 192.168.50.7/32, 192.168.60.0/24  # office\n".utf8), file: "keys/clients", prefix: prefix,
            prefix6: prefix6)
        #expect(list.clients.first?.address == IPv4Address(10, 8, 0, 5))
        #expect(list.routedPrefixes == routed("192.168.50.7/32", "192.168.60.0/24"))
    }

    @Test func aReloadRefusesToChangeTheSetOfRoutedPrefixesButMayMoveThem() {
        #expect(AllowListFile.routedChange(from: routed("192.168.50.0/24"), to: routed("192.168.50.0/24")) == nil)
        #expect(AllowListFile.routedChange(from: [], to: []) == nil)
        #expect(
            AllowListFile.routedChange(from: routed("192.168.50.0/24", "fd00:50::/64"), to: routed("fd00:50::/64", "192.168.50.0/24")) == nil,
            "the same prefixes, in another order or behind other clients")
        #expect(
            AllowListFile.routedChange(from: routed("192.168.50.0/24"), to: routed("192.168.60.0/24", "fd00:50::/64"))
                == "routed prefixes changed (added 192.168.60.0/24 fd00:50::/64; removed 192.168.50.0/24): restart the server to change routed prefixes (moving a prefix to another client needs no restart)")
    }
}

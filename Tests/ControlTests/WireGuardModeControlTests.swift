// WireGuard mode in Control: the allow-list must give every peer an address (no pool), the wg-quick file
// add-client writes, and a client's dry run shows the device addresses of its own --address.

import Control
import Crypto
import Foundation
import Platform
import Routing
import Testing
import TestSupport
import Transport

@Suite struct WireGuardModeControlTests {
    static let key1 = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
    static let key2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
    let prefix = IPv4Prefix("10.8.0.1/24")!
    let prefix6 = IPv6Prefix("fd00:8::1/64")!

    func parse(_ text: String, _ mode: ProtocolMode) -> String? {
        do {
            _ = try AllowListFile.parseAllowList(Array(text.utf8), file: "keys/peers", prefix: prefix, prefix6: prefix6, protocolMode: mode)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func everyAllowListLineNeedsAnAddressInWireGuardModeOnly() {
        let text = "# office\n\(Self.key1) 10.8.0.5 # laptop\n\(Self.key2)   # phone\n"
        #expect(parse(text, .tunvpn) == nil, "tunvpn mode fills the address from the pool")
        #expect(
            parse(text, .wireguard)
                == "keys/peers: line 3: the key (phone) has no address, and --protocol wireguard assigns none from a pool: give the peer's addresses (its allowed IPs), e.g. `\(Self.key2) 10.8.0.5/32 # laptop`"
        )
        #expect(parse("\(Self.key1) 10.8.0.5\n\(Self.key2) fd00:8::6\n", .wireguard) == nil, "one address of either family is enough")
        #expect(parse("\(Self.key2)\n", .wireguard)?.hasPrefix("keys/peers: line 1: the key has no address") == true)
        // A missing file is still refused first, as in tunvpn mode.
        #expect(throws: ControlError.self) {
            try AllowListFile.loadAllowList("/nonexistent/peers", prefix: prefix, allowAnyClient: false, protocolMode: .wireguard)
        }
    }

    @Test func theWgQuickFileCarriesTheAllocatedAddressesWithTheTunnelsPrefixLengths() throws {
        let client = PrivateKey(secret: SecretBytes(copying: [UInt8](repeating: 0x11, count: 32)))
        let server = try PublicKey(base64: Self.key1)
        let psk = PrivateKey(secret: SecretBytes(copying: [UInt8](repeating: 0x33, count: 32)))
        let file = Provisioning.wgQuickFile(
            privateKey: client, address: IPv4Address("10.8.0.5")!, address6: IPv6Address("fd00:8::5"), prefix: prefix, prefix6: prefix6,
            dns: [IPAddress("10.8.0.1")!, IPAddress("fd00:8::1")!], serverKey: server, psk: psk, endpoint: "vpn.example.org:51820", routes: [])
        #expect(
            try file.render() == """
                [Interface]
                PrivateKey = \(client.base64)
                Address = 10.8.0.5/24, fd00:8::5/64
                DNS = 10.8.0.1, fd00:8::1

                [Peer]
                PublicKey = \(Self.key1)
                PresharedKey = MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=
                Endpoint = vpn.example.org:51820
                AllowedIPs = 0.0.0.0/0, ::/0
                PersistentKeepalive = 25

                """)
        // No IPv6 in the tunnel, no psk, no resolvers, a split tunnel.
        let plain = Provisioning.wgQuickFile(
            privateKey: client, address: IPv4Address("10.8.0.6")!, address6: nil, prefix: prefix, prefix6: nil, dns: [], serverKey: server,
            psk: nil, endpoint: "[2001:db8::7]:51820", routes: ["10.8.0.0/24", "192.168.50.0/24"])
        let text = try plain.render()
        #expect(text.contains("\nAddress = 10.8.0.6/24\n") && text.contains("\nAllowedIPs = 10.8.0.0/24, 192.168.50.0/24\n"))
        #expect(!text.contains("DNS") && !text.contains("PresharedKey") && text.contains("\nEndpoint = [2001:db8::7]:51820\n"))
    }

    /// In WireGuard mode the device's addresses are known before the handshake: the dry run shows them,
    /// and it is what tunnel-up applies for the client's own addressing.
    @Test func aWireGuardClientsDryRunShowsItsOwnAddresses() throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.tunnel.protocolMode = .wireguard
        c.address = IPv4Prefix("10.8.0.2/24")
        c.address6 = IPv6Prefix("fd00:8::2/64")
        let own = try #require(ClientDaemon.ownAddressing(c))
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        let script = ClientDaemon.dryRunPlan(c, plans.tunnel, own).script
        #expect(script.contains("ip addr add 10.8.0.2/24 dev tun0\n"), "\(script)")
        #expect(!script.contains("address assigned by the server"), "\(script)")
        #expect(script == plans.tunnel.withDeviceAddress("10.8.0.2/24", address6: c.tunnel.ipv6Capable ? "fd00:8::2/64" : nil).script)
    }

    /// In WireGuard mode too (wg-quick's `AllowedIPs = 10.8.0.0/24` beside `Address = 10.8.0.2/24`): what
    /// tunnel-up applies leaves a --route to the client's own network to the device, and keeps the others.
    @Test func aRouteThatIsTheOwnPrefixIsLeftToTheDevice() throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.tunnel.protocolMode = .wireguard
        c.address = IPv4Prefix("10.8.0.2/24")
        c.address6 = IPv6Prefix("fd00:8::2/64")
        c.routes = [IPv4Prefix("10.8.0.0/24")!, IPv4Prefix("192.168.50.0/24")!]
        c.routes6 = [IPv6Prefix("fd00:8::/64")!]
        let own = try #require(ClientDaemon.ownAddressing(c))
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        let up = ClientDaemon.tunnelUpPlan(c, plans.tunnel, own).script
        #expect(!up.contains("route add 10.8.0.0/24") && up.contains("ip -4 route add 192.168.50.0/24 dev tun0"), "\(up)")
        // The IPv6 route goes exactly when the device gets its IPv6 address (a host with IPv6).
        #expect(up.contains("route add fd00:8::/64") == !c.tunnel.ipv6Capable, "\(up)")
    }

    /// tunvpn mode learns its prefix only at tunnel-up: what it applies then leaves a --route to the
    /// assigned network to the kernel's connected route (README's `--route 10.8.0.0/16` example), keeps
    /// every other route, and keeps the device step with the assigned addresses.
    @Test func tunnelUpInTunvpnModeLeavesARouteToTheAssignedNetworkToTheDevice() throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.routes = [IPv4Prefix("10.8.0.0/16")!, IPv4Prefix("172.16.0.0/12")!]
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        #expect(plans.tunnel.script.contains("ip -4 route add 10.8.0.0/16 dev tun0"), "\(plans.tunnel.script)")
        let assigned = TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address("10.8.0.1")!)
        let up = ClientDaemon.tunnelUpPlan(c, plans.tunnel, assigned).script
        #expect(!up.contains("route add 10.8.0.0/16"), "\(up)")
        #expect(up.contains("ip -4 route add 172.16.0.0/12 dev tun0") && up.contains("ip addr add 10.8.0.2/16 dev tun0"), "\(up)")
        // Another assigned prefix: the route is the operator's, and stays.
        let other = TunnelAssignment(client: IPv4Prefix("10.8.0.2/24")!, server: IPv4Address("10.8.0.1")!)
        #expect(ClientDaemon.tunnelUpPlan(c, plans.tunnel, other).script.contains("ip -4 route add 10.8.0.0/16 dev tun0"))
    }
}

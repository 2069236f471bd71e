// Reading the host's connected networks from `ip -4 route show scope link` and `ip -6 route show` (the client's
// assignment bounds), and its IPv6 addresses from /proc/net/if_inet6.

import Testing
import Transport

@testable import Platform

@Suite struct LinkRoutesTests {
    @Test func linkRoutesGiveTheirNetworkAndDevice() {
        let text = """
            192.168.1.0/24 dev eth0 proto kernel src 192.168.1.5 metric 100
            10.1.2.3 dev wg1 scope link
            172.17.0.0/16 dev docker0 proto kernel src 172.17.0.1 linkdown
            garbage line
            broadcast 10.0.0.255 dev eth1

            """
        let routes = HostNetwork.parseLinkRoutes(text)
        #expect(routes.map(\.network) == ["192.168.1.0/24", "10.1.2.3/32", "172.17.0.0/16"])
        #expect(routes.map(\.device) == ["eth0", "wg1", "docker0"])
    }
}

@Suite struct LinkRoutes6Tests {
    @Test func onLinkIPv6RoutesGiveTheirPrefixAndDeviceWithoutLinkLocalOrGatewayRoutes() {
        let text = """
            2001:db8:1::/64 dev eth0 proto kernel metric 256 expires 86000sec pref medium
            fd00:aa::/48 dev wg1 metric 1024 pref medium
            2001:db8:9::5 dev eth2 metric 1024 pref medium
            fe80::/64 dev eth0 proto kernel metric 256 pref medium
            2001:db8:7::/64 via fe80::1 dev eth0 metric 1024 pref medium
            default via fe80::1 dev eth0 proto ra metric 1024 expires 1700sec hoplimit 64 pref medium
            multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
            garbage

            """
        let routes = HostNetwork.parseLinkRoutes6(text)
        #expect(routes.map(\.network) == ["2001:db8:1::/64", "fd00:aa::/48", "2001:db8:9::5/128"])
        #expect(routes.map(\.device) == ["eth0", "wg1", "eth2"])
    }

    @Test func theKernelsIPv6AddressListGivesAddressLengthScopeAndDevice() throws {
        let text = """
            fd0000080000000000000000000000025 05 40 00 80 tun0
            fd000008000000000000000000000002 05 40 00 80     tun0
            fe800000000000000000000000000001 02 40 20 80     eth0
            00000000000000000000000000000001 01 80 10 80       lo

            """
        let found = HostNetwork.parseInterfaceAddresses6(text)
        #expect(found.count == 3, "the line with 33 hex digits is skipped")
        #expect(found[0] == HostNetwork.InterfaceAddress6(
            address: try #require(IPv6Address("fd00:8::2")), prefixLength: 64, scope: 0, device: "tun0"))
        #expect(found[1].scope == 0x20 && found[1].device == "eth0")
        #expect(found[2].prefixLength == 128 && found[2].scope == 0x10)
    }
}

// Reading the host's connected networks from `ip -4 route show scope link` (the client's assignment bounds).

import Testing

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

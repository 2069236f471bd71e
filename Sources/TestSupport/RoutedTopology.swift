// The routed topology of the routing end-to-end tests (docs/ROUTING.md): a LAN host, a client, an underlay
// router, a server and an internet host, each a namespace, in a line (k = the topology's subnet index):
//
//     L  l0 10.110.k.2/24   default via 10.110.k.1 (the client)
//        │
//     C  lan0 10.110.k.1/24
//        c0 10.100.k.2/24   default via 10.100.k.1 (the router)
//        │
//     R  r0 10.100.k.1/24   ip_forward=1; routes only its two links
//        r1 10.101.k.1/24
//        │
//     S  s0 10.101.k.2/24   default via 10.101.k.1 (the router)
//        s1 10.200.k.1/24
//        │
//     H  h0 10.200.k.2/24   no route beyond its link: reachable only through the server
//
// The router knows neither the LAN (10.110.k.0/24) nor the internet link (10.200.k.0/24), so the client
// reaches the internet host only through the tunnel, and the internet host can answer only the
// server's own address. Forwarding is explicitly off in C and S (a new namespace may inherit it from
// the root namespace), so a test can see tunvpn turn it on and back off.

import Foundation

extension Topology {
    /// The LAN–client–router–server–internet line of the file comment, routes and sysctls included.
    /// With `enableIPv6`, IPv6 stays on in every namespace (no IPv6 addresses are added).
    public static func lanClientRouterServerInternet(enableIPv6: Bool = false) throws -> Topology {
        let topology = try Topology(hosts: ["L", "C", "R", "S", "H"], enableIPv6: enableIPv6) { k in
            [
                VethLink(.init("L", "l0", "10.110.\(k).2/24"), .init("C", "lan0", "10.110.\(k).1/24")),
                VethLink(.init("C", "c0", "10.100.\(k).2/24"), .init("R", "r0", "10.100.\(k).1/24")),
                VethLink(.init("R", "r1", "10.101.\(k).1/24"), .init("S", "s0", "10.101.\(k).2/24")),
                VethLink(.init("S", "s1", "10.200.\(k).1/24"), .init("H", "h0", "10.200.\(k).2/24")),
            ]
        }
        do {
            try topology["L"].ip("route", "add", "default", "via", topology.address("C", "lan0"))
            try topology["C"].ip("route", "add", "default", "via", topology.address("R", "r0"))
            try topology["S"].ip("route", "add", "default", "via", topology.address("R", "r1"))
            try topology["R"].sysctl("net.ipv4.ip_forward", "1")
            try topology["C"].sysctl("net.ipv4.ip_forward", "0")
            try topology["S"].sysctl("net.ipv4.ip_forward", "0")
        } catch {
            topology.close()
            throw error
        }
        return topology
    }
}

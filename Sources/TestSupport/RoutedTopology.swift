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
//
// Dual stack (`dualStack: true`): every link above also carries a unique local /64 numbered like its
// IPv4 subnet (Topology.ula: L–C fd00:110:k::/64, C–R fd00:100:k::/64, R–S fd00:101:k::/64, S–H
// fd00:200:k::/64, the same host numbers), with IPv6 default routes where the IPv4 ones are, and one
// more link that exists only for IPv6, so the LAN's router *would* carry the client's IPv6 to the
// internet host, as a dual-stack home or office network does:
//
//     R  r2 fd00:201:k::1/64   forwarding=1 (IPv6 only); fd00:200:k::/64 via fd00:201:k::2
//        │
//     H  h1 fd00:201:k::2/64   fd00:100:k::/64 and fd00:110:k::/64 via fd00:201:k::1
//
// The server's IPv6 default route leads out of s1 to the internet host (fd00:200:k::2), which is what
// gives the server IPv6 egress there (a test takes it away to see a server without); the server reaches
// the client's underlay fd00:100:k::/64 via the router. IPv6 forwarding is explicitly off in C and S too.

import Foundation

extension Topology {
    /// The LAN–client–router–server–internet line of the file comment, routes and sysctls included.
    /// With `enableIPv6`, IPv6 stays on in every namespace (no IPv6 addresses are added); `dualStack`
    /// adds the IPv6 addresses, routes and link of the file comment (and implies `enableIPv6`).
    public static func lanClientRouterServerInternet(enableIPv6: Bool = false, dualStack: Bool = false) throws
        -> Topology
    {
        func v6(_ net: Int, _ k: Int, _ host: Int) -> String? { dualStack ? ula(net, k, host) : nil }
        let topology = try Topology(hosts: ["L", "C", "R", "S", "H"], enableIPv6: enableIPv6 || dualStack) { k in
            [
                VethLink(
                    .init("L", "l0", "10.110.\(k).2/24", v6(110, k, 2)),
                    .init("C", "lan0", "10.110.\(k).1/24", v6(110, k, 1))),
                VethLink(
                    .init("C", "c0", "10.100.\(k).2/24", v6(100, k, 2)), .init("R", "r0", "10.100.\(k).1/24", v6(100, k, 1))),
                VethLink(
                    .init("R", "r1", "10.101.\(k).1/24", v6(101, k, 1)), .init("S", "s0", "10.101.\(k).2/24", v6(101, k, 2))),
                VethLink(
                    .init("S", "s1", "10.200.\(k).1/24", v6(200, k, 1)), .init("H", "h0", "10.200.\(k).2/24", v6(200, k, 2))),
            ] + (dualStack ? [VethLink(.init("R", "r2", ipv6: ula(201, k, 1)), .init("H", "h1", ipv6: ula(201, k, 2)))] : [])
        }
        do {
            try topology["L"].ip("route", "add", "default", "via", topology.address("C", "lan0"))
            try topology["C"].ip("route", "add", "default", "via", topology.address("R", "r0"))
            try topology["S"].ip("route", "add", "default", "via", topology.address("R", "r1"))
            try topology["R"].sysctl("net.ipv4.ip_forward", "1")
            try topology["C"].sysctl("net.ipv4.ip_forward", "0")
            try topology["S"].sysctl("net.ipv4.ip_forward", "0")
            if dualStack {
                let k = topology.subnetIndex
                try topology["L"].ip("-6", "route", "add", "default", "via", topology.address6("C", "lan0"))
                try topology["C"].ip("-6", "route", "add", "default", "via", topology.address6("R", "r0"))
                try topology["S"].ip("-6", "route", "add", "fd00:100:\(k)::/64", "via", topology.address6("R", "r1"))
                try topology["S"].ip("-6", "route", "add", "default", "via", topology.address6("H", "h0"))
                try topology["R"].ip("-6", "route", "add", "fd00:200:\(k)::/64", "via", topology.address6("H", "h1"))
                for lan in ["fd00:100:\(k)::/64", "fd00:110:\(k)::/64"] {
                    try topology["H"].ip("-6", "route", "add", lan, "via", topology.address6("R", "r2"))
                }
                try topology["R"].sysctl("net.ipv6.conf.all.forwarding", "1")
                try topology["C"].sysctl("net.ipv6.conf.all.forwarding", "0")
                try topology["S"].sysctl("net.ipv6.conf.all.forwarding", "0")
            }
        } catch {
            topology.close()
            throw error
        }
        return topology
    }
}

// What tunnel addressing a client accepts from the server.
//
// The client configures the pushed `address/prefix` on its TUN device, and the kernel then routes the
// whole prefix into the tunnel (a connected route of metric 0). A compromised or misconfigured server could
// use that to pull half the internet past a split tunnel (`172.16.0.2/1` routes 128.0.0.0/1) or to capture
// the client's LAN (`192.168.1.77/24`). So the client accepts an assignment only inside these bounds and
// otherwise refuses the handshake (`HandshakeFailure.unsafeAssignment`).

/// The bounds a pushed tunnel assignment must keep (pure data; the CLI gathers the host's networks).
public struct AssignmentBounds: Equatable, Sendable {
    /// A network the tunnel must not take over, with the words the refusal names it by.
    public struct Network: Equatable, Sendable {
        public var prefix: IPv4Prefix
        /// e.g. "the LAN 192.168.1.0/24 on eth0".
        public var name: String

        public init(_ prefix: IPv4Prefix, name: String) {
            self.prefix = prefix
            self.name = name
        }
    }

    /// An IPv6 network the tunnel must not take over, with the words the refusal names it by.
    public struct Network6: Equatable, Sendable {
        public var prefix: IPv6Prefix
        /// e.g. "the LAN 2001:db8:1::/64 on eth0".
        public var name: String

        public init(_ prefix: IPv6Prefix, name: String) {
            self.prefix = prefix
            self.name = name
        }
    }

    /// The shortest prefix accepted: a wider one would route a large part of the internet into the tunnel.
    public static let shortestPrefixLength = 8
    /// The IPv6 prefix lengths accepted: /64 (a subnet, RFC 4291 §2.5.4) down to /120.
    public static let ipv6PrefixLengths = 64...120

    /// Networks the assigned prefix must not overlap at all: the host's connected networks (its LANs).
    public var localNetworks: [Network]
    /// The split tunnel's `--route` prefixes: the assigned prefix may lie inside one or beside them, but
    /// may not be wider than one it covers (that would route more than the client asked for).
    public var routes: [IPv4Prefix]
    /// The host's connected IPv6 networks (kernel and link routes, without fe80::/64).
    public var localNetworks6: [Network6]
    /// The split tunnel's IPv6 `--route` prefixes, as `routes`.
    public var routes6: [IPv6Prefix]

    public init(
        localNetworks: [Network] = [], routes: [IPv4Prefix] = [], localNetworks6: [Network6] = [],
        routes6: [IPv6Prefix] = []
    ) {
        self.localNetworks = localNetworks
        self.routes = routes
        self.localNetworks6 = localNetworks6
        self.routes6 = routes6
    }

    /// Special-use ranges a tunnel address may not come from (RFC 6890).
    static let specialRanges: [(prefix: IPv4Prefix, name: String)] = [
        (IPv4Prefix(address: IPv4Address(0, 0, 0, 0), length: 8), "\"this network\" (0.0.0.0/8)"),
        (IPv4Prefix(address: IPv4Address(127, 0, 0, 0), length: 8), "loopback (127.0.0.0/8)"),
        (IPv4Prefix(address: IPv4Address(169, 254, 0, 0), length: 16), "link-local (169.254.0.0/16)"),
        (IPv4Prefix(address: IPv4Address(224, 0, 0, 0), length: 4), "multicast (224.0.0.0/4)"),
        (IPv4Prefix(address: IPv4Address(240, 0, 0, 0), length: 4), "reserved or broadcast (240.0.0.0/4)"),
    ]

    /// Special-use IPv6 ranges a tunnel prefix may not lie in (RFC 6890, RFC 4291 §2.4).
    static let specialRanges6: [(prefix: IPv6Prefix, name: String)] = [
        (IPv6Prefix(address: IPv6Address(high: 0, low: 0xffff_0000_0000), length: 96), "IPv4-mapped (::ffff:0:0/96)"),
        (IPv6Prefix(address: .any, length: 8), "reserved (::/8)"),
        (IPv6Prefix(address: IPv6Address(high: 0xfe80 << 48, low: 0), length: 10), "link-local (fe80::/10)"),
        (IPv6Prefix(address: IPv6Address(high: 0xff00 << 48, low: 0), length: 8), "multicast (ff00::/8)"),
    ]

    /// Why `assignment` is refused, in the operator's words, or nil when it is inside the bounds.
    /// `endpoint` is the server's underlay address, which must stay reachable outside the tunnel.
    public func violation(of assignment: TunnelAssignment, endpoint: Endpoint) -> String? {
        violation4(of: assignment, endpoint: endpoint) ?? violation6(of: assignment, endpoint: endpoint)
    }

    /// The IPv6 half: nothing to check when the assignment carries no IPv6.
    func violation6(of assignment: TunnelAssignment, endpoint: Endpoint) -> String? {
        guard let assigned = assignment.client6 else { return nil }
        guard let server = assignment.server6 else { return "\(assigned) comes without a server IPv6 address" }
        let network = IPv6Prefix(address: assigned.network, length: assigned.length)
        guard Self.ipv6PrefixLengths.contains(assigned.length) else {
            return "\(assigned) is not a /\(Self.ipv6PrefixLengths.lowerBound) to /\(Self.ipv6PrefixLengths.upperBound) prefix"
        }
        guard network.contains(server) else { return "the server's \(server) is outside \(network)" }
        guard server != assigned.address else { return "\(assigned.address) is the server's own address" }
        for special in Self.specialRanges6 where special.prefix.overlaps(network) {
            return "\(network) is \(special.name)"
        }
        if let endpoint6 = endpoint.address.ipv6, network.contains(endpoint6) {
            return "\(network) contains the server's endpoint \(endpoint.address)"
        }
        for local in localNetworks6 where local.prefix.overlaps(network) {
            return "\(network) overlaps \(local.name)"
        }
        for route in routes6 where network.length < route.length && network.contains(route.address) {
            return "\(network) is wider than --route \(route.network)/\(route.length)"
        }
        return nil
    }

    /// The IPv4 half.
    func violation4(of assignment: TunnelAssignment, endpoint: Endpoint) -> String? {
        let assigned = assignment.client
        let network = IPv4Prefix(address: assigned.network, length: assigned.length)
        guard assigned.length >= Self.shortestPrefixLength else {
            return "\(assigned) is wider than /\(Self.shortestPrefixLength)"
        }
        for special in Self.specialRanges where special.prefix.contains(assigned.address) {
            return "\(assigned.address) is \(special.name)"
        }
        if let server = endpoint.address.ipv4, network.contains(server) {
            return "\(network) contains the server's endpoint \(endpoint.address)"
        }
        for local in localNetworks where local.prefix.overlaps(network) {
            return "\(network) overlaps \(local.name)"
        }
        for route in routes where network.length < route.length && network.contains(route.address) {
            return "\(network) is wider than --route \(route.network)/\(route.length)"
        }
        return nil
    }
}

extension IPv4Prefix {
    /// True when the two networks share an address (one contains the other).
    public func overlaps(_ other: IPv4Prefix) -> Bool {
        length <= other.length ? contains(other.address) : other.contains(address)
    }
}

extension IPv6Prefix {
    /// True when the two networks share an address (one contains the other).
    public func overlaps(_ other: IPv6Prefix) -> Bool {
        length <= other.length ? contains(other.address) : other.contains(address)
    }
}

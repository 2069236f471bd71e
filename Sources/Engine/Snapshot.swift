// A view of an engine for `tunvpn show`, metrics and logs: the interface, every peer's endpoint, address,
// latest handshake and traffic, and the process-wide counters. It is read a chunk of peers per hold of
// the core's lock, so that a status request or a scrape never stalls the data path for long.

import Crypto
import Transport

/// One peer as status commands show it.
public struct PeerSnapshot: Sendable, Equatable {
    public var publicKey: String
    public var endpoint: Endpoint?
    public var tunnelAddress: IPv4Address?
    /// The peer's IPv6 tunnel address (a server's client with IPv6), nil if none.
    public var tunnelAddress6: IPv6Address?
    /// Wall-clock seconds since 1970 of the latest handshake, nil if none.
    public var latestHandshake: UInt64?
    /// Age in seconds of the session used to send, nil if none.
    public var sessionAge: UInt64?
    public var rxBytes: UInt64
    public var txBytes: UInt64
    public var rxPackets: UInt64
    public var txPackets: UInt64
    /// Persistent keepalive interval in seconds, nil if off.
    public var persistentKeepalive: UInt64?
    public var suite: String?
    /// The peer's name on the server's allow-list (`AllowedClient.name`), empty if it has none.
    public var name: String = ""
    /// Server: the prefixes routed behind the peer (its allow-list line's other allowed IPs), as text.
    public var routed: [String] = []

    /// A peer as given (the status command rebuilds snapshots from their JSON; tests build them directly).
    public init(
        publicKey: String, endpoint: Endpoint?, tunnelAddress: IPv4Address?, tunnelAddress6: IPv6Address? = nil,
        latestHandshake: UInt64?, sessionAge: UInt64?, rxBytes: UInt64, txBytes: UInt64, rxPackets: UInt64,
        txPackets: UInt64, persistentKeepalive: UInt64?, suite: String?, name: String = ""
    ) {
        self.name = name
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.tunnelAddress = tunnelAddress
        self.tunnelAddress6 = tunnelAddress6
        self.latestHandshake = latestHandshake
        self.sessionAge = sessionAge
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.rxPackets = rxPackets
        self.txPackets = txPackets
        self.persistentKeepalive = persistentKeepalive
        self.suite = suite
    }
}

/// A client's own tunnel addressing, as its latest handshake that changed it gave it.
public struct ClientTunnelSnapshot: Sendable, Equatable {
    /// The client's IPv4 tunnel address and prefix length.
    public var address: IPv4Prefix
    /// The client's IPv6 tunnel address and prefix length; nil when the server gave none.
    public var address6: IPv6Prefix?
    /// True when the server forwards IPv6 beyond the tunnel (else only the tunnel's prefix is reached).
    public var ipv6Egress: Bool
    /// --no-ipv6: the client carries no IPv6, whatever the server offers.
    public var ipv6Disabled: Bool
    /// The DNS settings the client applied and how; nil when it applies none (filled in by the daemon).
    public var dns: ClientDNSSnapshot?

    public init(address: IPv4Prefix, address6: IPv6Prefix?, ipv6Egress: Bool, ipv6Disabled: Bool, dns: ClientDNSSnapshot? = nil) {
        self.address = address
        self.address6 = address6
        self.ipv6Egress = ipv6Egress
        self.ipv6Disabled = ipv6Disabled
        self.dns = dns
    }
}

/// A client's DNS settings in force: the method ("systemd-resolved" or "resolv.conf"), the resolvers and
/// the search domains.
public struct ClientDNSSnapshot: Sendable, Equatable {
    public var method: String
    public var resolvers: [String]
    public var search: [String]

    public init(method: String, resolvers: [String], search: [String]) {
        self.method = method
        self.resolvers = resolvers
        self.search = search
    }
}

/// A client's endpoints (when it has more than one) and which one is in use.
public struct ClientFailoverSnapshot: Sendable, Equatable {
    public struct EndpointEntry: Sendable, Equatable {
        /// As the operator gave it (`--endpoint`).
        public var text: String
        /// Its latest address; nil while a name has none.
        public var address: Endpoint?
        public init(text: String, address: Endpoint?) {
            self.text = text
            self.address = address
        }
    }
    public struct Switch: Sendable, Equatable {
        /// Indexes into `endpoints`.
        public var from: Int
        public var to: Int
        /// "no_response", "no_address" or "preferred_answered".
        public var reason: String
        public var description: String
        public init(from: Int, to: Int, reason: String, description: String) {
            self.from = from
            self.to = to
            self.reason = reason
            self.description = description
        }
    }
    public var endpoints: [EndpointEntry]
    /// The index of the endpoint in use.
    public var active: Int
    public var switches: UInt64
    public var lastSwitch: Switch?

    public init(endpoints: [EndpointEntry], active: Int, switches: UInt64, lastSwitch: Switch?) {
        self.endpoints = endpoints
        self.active = active
        self.switches = switches
        self.lastSwitch = lastSwitch
    }
}

/// The whole engine as status commands show it.
public struct EngineSnapshot: Sendable {
    public var role: String
    public var publicKey: String
    public var listenPort: UInt16
    public var device: String
    public var suites: [String]
    public var peers: [PeerSnapshot]
    /// Counter name → value, as in the `stats:` line.
    public var counters: [(name: String, value: UInt64)]
    /// A client's addressing once its tunnel is up; nil on a server and before the first handshake.
    public var tunnel: ClientTunnelSnapshot?
    /// A client's endpoints when it has more than one; nil otherwise.
    public var failover: ClientFailoverSnapshot?
    /// The wire protocol the instance speaks (`--protocol`).
    public var protocolMode: ProtocolMode

    /// The counters with each family typed (drops and handshake failures by reason): what metrics read.
    public var counterValues: CounterValues { CounterValues(named: counters) }

    /// An engine as given (the status command rebuilds snapshots from their JSON; tests build them directly).
    public init(
        role: String, publicKey: String, listenPort: UInt16, device: String, suites: [String], peers: [PeerSnapshot],
        counters: [(name: String, value: UInt64)], tunnel: ClientTunnelSnapshot? = nil, failover: ClientFailoverSnapshot? = nil,
        protocolMode: ProtocolMode = .tunvpn
    ) {
        self.protocolMode = protocolMode
        self.tunnel = tunnel
        self.failover = failover
        self.role = role
        self.publicKey = publicKey
        self.listenPort = listenPort
        self.device = device
        self.suites = suites
        self.peers = peers
        self.counters = counters
    }
}

extension TunnelEngine {
    /// Peers copied per hold of the core's lock while a snapshot is taken.
    public static let snapshotChunkSize = 256

    /// A snapshot of the core and the counters, taken without holding the core's lock for long.
    ///
    /// The peers are copied in chunks of at most `snapshotChunkSize`, one hold of the lock each, and only
    /// the fields shown are copied; the base64 keys, the atomic traffic counters and the session ages are
    /// read after the lock is released. So the cost under the lock is a few copies per peer, and the data
    /// path waits for at most one chunk. Each peer is read consistently; the list as a whole may straddle
    /// a reload that runs between two chunks (a peer keeps its slot in the table, removed or not, and new
    /// ones are appended, so no peer is read twice).
    public func snapshot(now: UInt64, device: String, listenPort: UInt16) -> EngineSnapshot {
        snapshot(now: now, device: device, listenPort: listenPort, peersCopiedUnderLock: { _ in })
    }

    /// `snapshot(now:device:listenPort:)`, calling `peersCopiedUnderLock` inside each hold of the lock
    /// with the number of peers copied in it (for tests of the chunking).
    func snapshot(
        now: UInt64, device: String, listenPort: UInt16, peersCopiedUnderLock: (Int) -> Void
    ) -> EngineSnapshot {
        /// What the lock is needed for: plain values and references to objects safe to read without it.
        struct Copied {
            let key: PublicKey
            let endpoint: Endpoint?
            let address: IPv4Address?
            let address6: IPv6Address?
            let stats: PeerStats
            let current: Session?
            let persistentKeepalive: UInt64?
            let routed: [IPPrefix]
        }
        // The role is immutable and cheap to copy (its arrays are shared), so the X25519 public key of a
        // client's private key is computed outside the lock.
        let (role, publicKey, suites): (String, String, [String])
        let protocolMode: ProtocolMode
        var tunnel: ClientTunnelSnapshot?
        // A server's clients' allow-list names, copied with the role (a peer a reload adds after this copy
        // is unnamed in this one snapshot).
        let (stateRole, assignment, names) = withState { ($0.role, $0.assignmentInForce, $0.peerNames) }
        switch stateRole {
        case .server(let s):
            (role, publicKey, suites) = (
                "server", s.responder.localKey.base64, s.responder.acceptedSuites.map { $0.name }
            )
            protocolMode = s.protocolMode
        case .client(let c):
            (role, publicKey, suites) = (
                "client", c.initiator.localStatic.publicKey.base64, c.initiator.offeredSuites.map { $0.name }
            )
            protocolMode = c.protocolMode
            tunnel = assignment.map {
                ClientTunnelSnapshot(
                    address: $0.client, address6: $0.client6, ipv6Egress: $0.ipv6Egress, ipv6Disabled: c.ipv6Disabled)
            }
        }
        var copied: [Copied] = []
        var next = 0
        var done = false
        while !done {
            withState { state in
                let end = min(next + Self.snapshotChunkSize, state.peers.count)
                let routed = state.routedPrefixesByPeer()
                for (slot, p) in zip(state.peers[min(next, end)..<end].indices, state.peers[min(next, end)..<end]) where !p.isRemoved {
                    copied.append(
                        Copied(
                            key: p.key, endpoint: p.endpoint, address: p.address, address6: p.address6, stats: p.stats,
                            current: p.current,
                            persistentKeepalive: p.timers.persistentKeepaliveInterval, routed: routed[slot] ?? []))
                }
                peersCopiedUnderLock(max(end - next, 0))
                next = end
                done = end >= state.peers.count
            }
        }
        let peers = copied.map { p -> PeerSnapshot in
            let wall = p.stats.lastHandshakeWallSeconds.load(ordering: .relaxed)
            var peer = PeerSnapshot(
                publicKey: p.key.base64, endpoint: p.endpoint, tunnelAddress: p.address, tunnelAddress6: p.address6,
                latestHandshake: wall == 0 ? nil : wall,
                sessionAge: p.current.map { $0.age(at: now) / 1_000_000_000 },
                rxBytes: p.stats.rxBytes.load(ordering: .relaxed), txBytes: p.stats.txBytes.load(ordering: .relaxed),
                rxPackets: p.stats.rxPackets.load(ordering: .relaxed),
                txPackets: p.stats.txPackets.load(ordering: .relaxed),
                persistentKeepalive: p.persistentKeepalive.map { $0 / 1_000_000_000 },
                suite: p.current?.suite.name, name: names[p.key] ?? "")
            peer.routed = p.routed.map { "\($0)" }
            return peer
        }
        return EngineSnapshot(
            role: role, publicKey: publicKey, listenPort: listenPort, device: device, suites: suites,
            peers: peers, counters: counters.all, tunnel: tunnel, protocolMode: protocolMode)
    }
}

extension TunnelEngine {
    /// Replaces the server's allow-list (SIGHUP / `tunvpn reload`) without dropping the sessions of
    /// clients that stay on it; a fixed address another peer held is taken from it (see `AllowListChange`).
    public func reload(allowList: AllowList) -> AllowListChange {
        withStateMutation { $0.replaceAllowList(allowList) }
    }
}

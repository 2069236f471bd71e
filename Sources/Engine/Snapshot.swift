// A point-in-time view of an engine for `tunvpn show`, metrics and logs: the interface, every peer's
// endpoint, address, latest handshake and traffic, and the process-wide counters.

import Crypto
import Transport

/// One peer as status commands show it.
public struct PeerSnapshot: Sendable, Equatable {
    public var publicKey: String
    public var endpoint: Endpoint?
    public var tunnelAddress: IPv4Address?
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

    /// A peer as given (the status command rebuilds snapshots from their JSON; tests build them directly).
    public init(
        publicKey: String, endpoint: Endpoint?, tunnelAddress: IPv4Address?, latestHandshake: UInt64?,
        sessionAge: UInt64?, rxBytes: UInt64, txBytes: UInt64, rxPackets: UInt64, txPackets: UInt64,
        persistentKeepalive: UInt64?, suite: String?
    ) {
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.tunnelAddress = tunnelAddress
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

    /// An engine as given (the status command rebuilds snapshots from their JSON; tests build them directly).
    public init(
        role: String, publicKey: String, listenPort: UInt16, device: String, suites: [String], peers: [PeerSnapshot],
        counters: [(name: String, value: UInt64)]
    ) {
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
    /// A consistent snapshot of the core (taken under its lock) and the counters.
    public func snapshot(now: UInt64, device: String, listenPort: UInt16) -> EngineSnapshot {
        withState { state in
            let role: String
            let publicKey: String
            let suites: [String]
            switch state.role {
            case .server(let s):
                role = "server"
                publicKey = s.responder.localKey.base64
                suites = s.responder.acceptedSuites.map { $0.name }
            case .client(let c):
                role = "client"
                publicKey = c.initiator.localStatic.publicKey.base64
                suites = c.initiator.offeredSuites.map { $0.name }
            }
            let peers = state.peers.filter { !$0.isRemoved }.map { p -> PeerSnapshot in
                let wall = p.stats.lastHandshakeWallSeconds.load(ordering: .relaxed)
                return PeerSnapshot(
                    publicKey: p.key.base64, endpoint: p.endpoint, tunnelAddress: p.address,
                    latestHandshake: wall == 0 ? nil : wall,
                    sessionAge: p.current.map { $0.age(at: now) / 1_000_000_000 },
                    rxBytes: p.stats.rxBytes.load(ordering: .relaxed), txBytes: p.stats.txBytes.load(ordering: .relaxed),
                    rxPackets: p.stats.rxPackets.load(ordering: .relaxed),
                    txPackets: p.stats.txPackets.load(ordering: .relaxed),
                    persistentKeepalive: p.timers.persistentKeepaliveInterval.map { $0 / 1_000_000_000 },
                    suite: p.current?.suite.name)
            }
            return EngineSnapshot(
                role: role, publicKey: publicKey, listenPort: listenPort, device: device, suites: suites, peers: peers,
                counters: counters.all)
        }
    }
}

extension TunnelEngine {
    /// Replaces the server's allow-list (SIGHUP / `tunvpn reload`) without dropping the sessions of
    /// clients that stay on it; a fixed address another peer held is taken from it (see `AllowListChange`).
    public func reload(allowList: AllowList) -> AllowListChange {
        withStateMutation { $0.replaceAllowList(allowList) }
    }
}

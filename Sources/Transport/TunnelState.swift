// The protocol core: peers, their sessions and timers, handshakes, and cryptokey routing.
//
// Events come in with everything they need (a datagram and where it came from, a TUN packet, the time),
// and decisions and `ControlAction`s come out; nothing here touches a socket, a device or a clock. The
// engine keeps one `TunnelState` behind a lock and does the IO. The data path asks it only two cheap
// questions per packet ("which session and endpoint for this destination?", "which session has this
// index, and is this decrypted packet allowed?"); the cryptography runs outside the lock on `Session`s.
//
// Roles: the client is the only initiator (it knows the server's key; the server learns clients from
// their initiations; docs/PROTOCOL.md, "Overview"). Sessions per peer: `current` (used to send), `previous`
// (still opens frames after a rekey, so packets in flight are not lost) and, on the server, `next` (a
// fresh session not yet confirmed by a frame from the client; WireGuard's key confirmation).

import Crypto

/// Wall-clock time, for handshake timestamps only.
public struct WallTime: Sendable, Equatable {
    public var seconds: UInt64
    public var nanoseconds: UInt32
    public init(seconds: UInt64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }
}

/// Something the engine must do or report besides moving the packet at hand.
public enum ControlAction: Sendable {
    /// Send a handshake message (initiation or response).
    case sendHandshake([UInt8], to: Endpoint)
    /// Send an empty data frame on `session`.
    case sendKeepalive(Session, to: Endpoint, stats: PeerStats)
    /// Seal and send packets that waited for a session.
    case sendQueued([[UInt8]], Session, to: Endpoint, stats: PeerStats)
    /// Client: `unreachable` IPv6 packets that waited for the first session turned out not to be carried
    /// by the tunnel (each counts as `DropReason.ipv6Unreachable`): write `answers` (their ICMPv6
    /// unreachables, as many as RFC 4443 §2.4 and the rate limit allow) to the TUN device.
    case answerQueued([[UInt8]], unreachable: Int)
    /// The client's first session: configure the tunnel device with this addressing.
    case tunnelUp(TunnelAssignment)
    /// The client: a later handshake assigned other addressing than the one in force (the server's reload
    /// gave this client's fixed address to another key, or gave it a new one): reconfigure the device.
    case addressChanged(TunnelAssignment)
    /// A handshake completed with `peer` (on the server: once the client confirmed the new session with an
    /// authenticated frame from `endpoint`).
    /// `address` and `address6` are the peer's tunnel addresses (on the client: the server's).
    case handshakeCompleted(peer: PublicKey, address: IPv4Address?, address6: IPv6Address? = nil, endpoint: Endpoint, suite: String)
    /// A handshake message was refused.
    case handshakeRefused(HandshakeFailure, from: Endpoint)
    /// The client stopped trying after REKEY_ATTEMPT_TIME.
    case handshakeGaveUp(peer: PublicKey)
    /// The client: the first initiation of a run of attempts got no response and is being retransmitted,
    /// `after` nanoseconds into the run (once per run until a handshake completes; REKEY_ATTEMPT_TIME
    /// later comes `handshakeGaveUp`).
    case handshakeUnanswered(peer: PublicKey, endpoint: Endpoint, after: UInt64)
    /// The server refused an initiation from `from` whose client key, `key`, is not on the allow-list
    /// (besides `handshakeRefused(.unknownClientKey, …)`, which counts it). The initiation was encrypted
    /// to this server's public key, so its sender knows that key; public keys are no secret.
    case unknownClientKey(PublicKey, from: Endpoint)
    /// A peer's keys were forgotten after 3 × REJECT_AFTER_TIME of silence.
    case keysZeroed(peer: PublicKey)
    /// Client: the endpoint in use changed (`EndpointFailover`); `to` is the new one's address.
    case endpointSwitched(EndpointSwitch, to: Endpoint)
    /// Client: an initiation went to endpoint `index` (of `ClientSettings.endpoints`). A name is resolved
    /// again, off the engine's threads, and its address given back with `updateEndpoint`, so the next
    /// initiation goes where the name points now.
    case endpointAttempted(index: Int)
}

/// Where a packet from the TUN device goes.
public enum SendDecision {
    /// Seal with `session` and send to `endpoint`.
    case send(Session, Endpoint, PeerStats)
    /// Queued until a handshake completes (the core kept a copy).
    case queued
    /// Client: not carried by the tunnel; write this answer (an ICMPv6 unreachable) to the TUN device
    /// instead, and count the packet as `DropReason.ipv6Unreachable`.
    case answer([UInt8])
    case drop(DropReason)
}

/// What to do with an authenticated, decrypted frame.
public enum ReceiveDecision: Equatable {
    /// Write the packet (trimmed to its IPv4 total length, or 40 + its IPv6 payload length) to the TUN
    /// device.
    case deliver(length: Int)
    /// A keepalive: nothing to deliver.
    case keepalive
    case drop(DropReason)
}

/// Server settings.
public struct ServerSettings: Sendable {
    public var responder: HandshakeResponder
    /// The server's tunnel address and the tunnel prefix (10.8.0.1/16).
    public var address: IPv4Prefix
    /// The server's IPv6 tunnel address and prefix (fdXX:…::1/64), or nil when the tunnel carries no IPv6.
    public var address6: IPv6Prefix?
    /// True when the server forwards IPv6 beyond the tunnel (it has an IPv6 default route and was not
    /// started with --no-ipv6); told to clients in the handshake.
    public var ipv6Egress: Bool
    public var allowList: AllowList
    /// Admit any client key (lab use).
    public var allowAnyClient: Bool
    /// The resolvers and search domains pushed to every client (--dns, --dns-search), checked at start
    /// (`DNSSettings.problem`).
    public var dns: DNSSettings
    /// The wire protocol. In `.wireguard` the handshake is WireGuard's (the responder's key and psk are
    /// used), nothing is pushed, no pool exists: every peer's addresses come from the allow-list.
    public var protocolMode: ProtocolMode

    public init(
        responder: HandshakeResponder, address: IPv4Prefix, address6: IPv6Prefix? = nil, ipv6Egress: Bool = false,
        allowList: AllowList, allowAnyClient: Bool, dns: DNSSettings = .none, protocolMode: ProtocolMode = .tunvpn
    ) {
        self.protocolMode = protocolMode
        self.responder = responder
        self.address = address
        self.address6 = address6
        self.ipv6Egress = ipv6Egress
        self.allowList = allowList
        self.allowAnyClient = allowAnyClient
        self.dns = dns
    }
}

/// Client settings.
public struct ClientSettings: Sendable {
    public var initiator: HandshakeInitiator
    public var endpoint: Endpoint
    /// Persistent keepalive interval in seconds (for clients behind NAT), or nil.
    public var persistentKeepalive: UInt64?
    /// What addressing the client accepts from the server (besides `endpoint`, which the assigned prefix
    /// must not contain).
    public var assignmentBounds: AssignmentBounds
    /// --no-ipv6: configure no IPv6 tunnel address and answer every IPv6 packet the device reads with an
    /// ICMPv6 destination unreachable (administratively prohibited), whatever the server offers.
    public var ipv6Disabled: Bool
    /// Every endpoint in the operator's order (the first is `endpoint`, the preferred one), each as
    /// resolved at start (nil for a name that had no address then).
    public var endpoints: [Endpoint?]
    /// When to move between `endpoints`.
    public var failover: FailoverSettings
    /// The wire protocol. In `.wireguard` the handshake is WireGuard's (the initiator's keys and psk are
    /// used) and the server pushes nothing: `ownAddressing` is the tunnel's addressing.
    public var protocolMode: ProtocolMode
    /// `.wireguard` only (required there): this client's own tunnel addressing, from `--address` or its
    /// config (wg-quick's `Address`, `DNS`); `server` is unused (WireGuard names no server address).
    public var ownAddressing: TunnelAssignment?

    public init(
        initiator: HandshakeInitiator, endpoint: Endpoint, persistentKeepalive: UInt64? = nil,
        assignmentBounds: AssignmentBounds = AssignmentBounds(), ipv6Disabled: Bool = false,
        endpoints: [Endpoint?]? = nil, failover: FailoverSettings = .standard, protocolMode: ProtocolMode = .tunvpn,
        ownAddressing: TunnelAssignment? = nil
    ) {
        self.protocolMode = protocolMode
        self.ownAddressing = ownAddressing
        self.initiator = initiator
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.assignmentBounds = assignmentBounds
        self.ipv6Disabled = ipv6Disabled
        self.endpoints = endpoints ?? [endpoint]
        self.failover = failover
    }
}

/// One peer's state.
public struct PeerState: Sendable {
    public let key: PublicKey
    /// Server: the client's IPv4 tunnel address. Client: nil (the server may send from any address).
    public var address: IPv4Address?
    /// Server: the client's IPv6 tunnel address, when the tunnel carries IPv6. Client: nil.
    public var address6: IPv6Address?
    /// Where frames for this peer go: the source of its latest authenticated frame (roaming).
    public var endpoint: Endpoint?
    public var current: Session?
    public var previous: Session?
    public var next: Session?
    public var timers: PeerTimers
    public let stats = PeerStats()
    /// Server: newest initiation timestamp accepted from this client (replay protection).
    var lastInitiation: TAI64N?
    /// Client: the initiation awaiting a response, and its bytes (a cookie reply is bound to its mac1).
    var pending: SentInitiation?
    var pendingMessage: [UInt8] = []
    /// Server: when this client's latest initiation was consumed (per-peer rate limit).
    var lastInitiationConsumedAt: UInt64?
    var lastInitiationSentAt: UInt64?
    var sentLastMinuteHandshake = false
    /// Client: `ControlAction.handshakeUnanswered` was reported for this run of attempts (cleared when a
    /// handshake completes).
    var unansweredReported = false
    var queue: [[UInt8]] = []
    /// Monotonic time of the latest completed handshake.
    public var lastHandshake: UInt64?
    /// True once the peer was taken off the allow-list by a reload (its slot stays, empty, so that
    /// indexes held by the data path stay valid).
    public var isRemoved = false

    init(key: PublicKey, address: IPv4Address?, timers: PeerTimers) {
        self.key = key
        self.address = address
        self.timers = timers
    }

    var sessions: [Session] { [current, previous, next].compactMap { $0 } }
}

/// The protocol core of one tunvpn instance (server or client).
///
/// Concurrency: a value with no internal locking; the engine serialises access (one `Mutex`).
public struct TunnelState: Sendable {
    public enum Role: Sendable {
        case server(ServerSettings)
        case client(ClientSettings)
    }

    public let role: Role
    /// The wire protocol, from the role's settings.
    public let protocolMode: ProtocolMode
    /// Server: its handshake (the engine runs its stateless prechecks before taking the lock). Nil on a
    /// client.
    public let serverHandshake: ServerHandshake?
    /// Client: its handshake. Nil on a server.
    private let clientHandshake: ClientHandshake?
    /// A server's clients' names (`AllowedClient.name`) by key, from the allow-list in force (the one given
    /// at start or the latest reload); only named clients are in it.
    public private(set) var peerNames: [PublicKey: String] = [:]
    /// Timer lengths (WireGuard's unless a test shrinks them).
    public let timers: ProtocolTimers
    public private(set) var peers: [PeerState] = []
    private var peerByKey: [PublicKey: Int] = [:]
    /// Who owns each tunnel address, of both families (a peer has at most one of each).
    private var peerByAddress: [IPAddress: Int] = [:]
    /// Server: the prefixes routed behind peers (allow-list lines' `routed`), by longest prefix match:
    /// where a destination no tunnel address matches goes, and which peer may send from such a source.
    private var routedTable = PrefixTable<Int>()
    /// Every pool address below this value is taken (or is the server's own), so the search for a free
    /// one starts here rather than at the bottom of the pool: without it, handing out N addresses cost
    /// O(N²) lookups (17% of the server's CPU time for 5,000 clients in bench/scale.sh). 0 = the bottom.
    private var poolSearchStart: UInt32 = 0
    /// The same for the IPv6 pool; nil = the bottom (network + 2).
    private var poolSearchStart6: IPv6Address?
    private var sessions: [UInt32: (session: Session, peer: Int)] = [:]
    /// When each peer next needs `tick` (its earliest timer or session expiry, or earlier), so that a tick
    /// visits only the peers that are due rather than every configured one under the lock the data path
    /// takes (a scan of 5,000 idle peers every 100 ms was 1.5 % of a server's CPU). Every change of a
    /// peer's timers or sessions that can bring its next deadline forward goes through `reschedule`.
    private var schedule = DeadlineSchedule()
    /// How many peers the latest `tick` handled (for tests: the due ones, not all of them).
    package private(set) var peersVisitedByLastTick = 0
    /// Server: indexes given to responses between `admitInitiation` and `commitInitiation`.
    private var reservedIndexes: Set<UInt32> = []
    private var lastTimestampSent: TAI64N?
    /// Client: the addressing the device has, from the latest handshake that changed it; nil until the
    /// tunnel is first up.
    public private(set) var assignmentInForce: TunnelAssignment?
    // Denial-of-service defences (server) and the cookie from the server (client).
    private var cookieChecker: CookieChecker?
    private var cookieJar: CookieJar?
    private var rateLimiter = SourceRateLimiter()
    private var loadMeter = LoadMeter()
    private var hintLimiter = SourceRateLimiter(perSecond: Limits.sessionGoneHintsPerSecond, burst: Limits.sessionGoneHintBurst)
    /// Client: what to do with IPv6 packets the tunnel does not carry.
    private var ipv6Policy = ClientIPv6Policy(ipv6Disabled: false)
    /// Client: its endpoints and which one is in use; nil on a server.
    public private(set) var failover: EndpointFailover?
    /// Client: the latest probe of the preferred endpoint awaiting its response (apart from `pending`, so
    /// the session in use and its own handshakes are left alone).
    private var probe: (sent: SentInitiation, endpoint: Endpoint)?

    public init(role: Role, timers: ProtocolTimers = .standard) {
        self.role = role
        self.timers = timers
        switch role {
        case .server(let s):
            protocolMode = s.protocolMode
            let handshake = ServerHandshake(s)
            serverHandshake = handshake
            clientHandshake = nil
            cookieChecker = CookieChecker(serverKey: s.responder.localKey, layout: handshake.macLayout)
            // Addresses are claimed as a reload claims them, so a list built in code with one address (or
            // key) twice still ends with one owner per address (a parsed list never has either).
            peerNames = Self.names(of: s.allowList)
            for client in s.allowList.clients where peerByKey[client.key] == nil {
                addPeer(key: client.key, address: client.address, address6: s.address6 == nil ? nil : client.address6)
            }
            routedTable = Self.routedTable(of: s.allowList, peerByKey: peerByKey, ipv6: s.address6 != nil)
        case .client(let c):
            protocolMode = c.protocolMode
            precondition(
                c.protocolMode == .tunvpn || c.ownAddressing != nil,
                "a WireGuard-mode client is configured with its own addressing (--address)")
            let handshake = ClientHandshake(c)
            clientHandshake = handshake
            serverHandshake = nil
            cookieJar = CookieJar(serverKey: c.initiator.serverKey, layout: handshake.macLayout)
            ipv6Policy = ClientIPv6Policy(ipv6Disabled: c.ipv6Disabled)
            let i = addPeer(key: c.initiator.serverKey, address: nil)
            let failover = EndpointFailover(endpoints: c.endpoints, settings: c.failover)
            self.failover = failover
            peers[i].endpoint = failover.current ?? c.endpoint
            peers[i].timers = PeerTimers(isInitiator: true, persistentKeepaliveSeconds: c.persistentKeepalive, lengths: timers)
        }
    }

    private var isClient: Bool {
        if case .client = role { return true }
        return false
    }

    /// Appends a peer. A server peer gets its address through `claim` (or the pool), never here, so that
    /// `peerByAddress` stays the only record of who owns an address.
    @discardableResult
    private mutating func addPeer(key: PublicKey, address: IPv4Address?, address6: IPv6Address? = nil) -> Int {
        let index = peers.count
        peers.append(PeerState(key: key, address: nil, timers: PeerTimers(isInitiator: isClient, lengths: timers)))
        peerByKey[key] = index
        if let address { _ = claim(.v4(address), for: index) }
        if let address6 { _ = claim(.v6(address6), for: index) }
        return index
    }

    // MARK: Address ownership
    //
    // One record decides both where a destination goes (`route`) and which inner source a peer may use
    // (`received`): `peerByAddress`, for both families. `peers[i].address` and `peers[i].address6` are
    // copies kept equal to it: for every live server peer, `peers[i].address == a` exactly when
    // `peerByAddress[.v4(a)] == i`, and the same for `address6` and `.v6`. Every change of owner goes
    // through `claim` and `releaseAddress`.

    /// Peer `index`'s address of `address`'s family.
    private func ownAddress(of index: Int, family address: IPAddress) -> IPAddress? {
        switch address {
        case .v4: return peers[index].address.map { .v4($0) }
        case .v6: return peers[index].address6.map { .v6($0) }
        }
    }

    /// Sets or clears peer `index`'s address of `family`'s family (the copy; `peerByAddress` is the caller's).
    private mutating func setOwnAddress(of index: Int, family: IPAddress, to address: IPAddress?) {
        switch family {
        case .v4: peers[index].address = address?.ipv4
        case .v6: peers[index].address6 = address?.ipv6
        }
    }

    /// Gives `address` to peer `index`. A previous holder is evicted: its sessions are dropped and its
    /// address of that family cleared, so its next handshake draws a fresh pool address (its address of
    /// the other family stays its own). Returns the evicted peer's slot.
    private mutating func claim(_ address: IPAddress, for index: Int) -> Int? {
        if ownAddress(of: index, family: address) == address { return nil }
        releaseAddress(of: index, family: address)
        var evicted: Int?
        if let holder = peerByAddress[address], holder != index {
            dropSessions(peer: holder)
            setOwnAddress(of: holder, family: address, to: nil)
            evicted = holder
        }
        peerByAddress[address] = index
        setOwnAddress(of: index, family: address, to: address)
        return evicted
    }

    /// Takes peer `index`'s addresses of both families away and returns them to the pools.
    private mutating func releaseAddress(of index: Int) {
        releaseAddress(of: index, family: .v4(.any))
        releaseAddress(of: index, family: .v6(.any))
    }

    /// Takes peer `index`'s address of `family`'s family away and returns it to its pool.
    private mutating func releaseAddress(of index: Int, family: IPAddress) {
        guard let address = ownAddress(of: index, family: family) else { return }
        setOwnAddress(of: index, family: family, to: nil)
        if peerByAddress[address] == index { freePoolAddress(address) }
    }

    /// The first way the two address records disagree, or nil when live peers' addresses are pairwise
    /// distinct and `peerByAddress[a] == i` exactly when peer `i`'s address of `a`'s family is `a`, for
    /// both families (for tests and fuzzing).
    package func addressOwnershipViolation() -> String? {
        guard case .server = role else { return nil }
        for (address, index) in peerByAddress {
            guard peers.indices.contains(index) else { return "\(address) maps to slot \(index), which does not exist" }
            guard !peers[index].isRemoved else { return "\(address) maps to removed peer \(index)" }
            guard ownAddress(of: index, family: address) == address else {
                return "\(address) maps to peer \(index), whose address is \(ownAddress(of: index, family: address).map { "\($0)" } ?? "none")"
            }
        }
        for index in peers.indices {
            for address in [peers[index].address.map { IPAddress.v4($0) }, peers[index].address6.map { IPAddress.v6($0) }] {
                guard let address else { continue }
                if peers[index].isRemoved { return "removed peer \(index) still has \(address)" }
                guard peerByAddress[address] == index else {
                    return "peer \(index) has \(address), which maps to \(peerByAddress[address].map { "peer \($0)" } ?? "nobody")"
                }
            }
        }
        for (prefix, index) in routedTable.entries {
            guard peers.indices.contains(index) else { return "routed prefix \(prefix) maps to slot \(index), which does not exist" }
            guard !peers[index].isRemoved else { return "routed prefix \(prefix) maps to removed peer \(index)" }
        }
        return nil
    }

    /// The prefixes routed behind the peers of `list`, by slot: the first line of a key wins (as for its
    /// addresses), and so does the first line of a prefix. IPv6 prefixes only when the tunnel carries IPv6.
    static func routedTable(of list: AllowList, peerByKey: [PublicKey: Int], ipv6: Bool) -> PrefixTable<Int> {
        var table = PrefixTable<Int>()
        var seen = Set<PublicKey>()
        for client in list.clients where seen.insert(client.key).inserted {
            guard let index = peerByKey[client.key] else { continue }
            for p in client.routed where table[exactly: p] == nil {
                if case .v6 = p, !ipv6 { continue }
                table.insert(p, index)
            }
        }
        return table
    }

    /// Server: the prefixes routed behind each peer that has any, by slot, in one pass over the table (for
    /// status: per peer, `routedPrefixes(ofPeer:)` would scan the table once for every peer).
    public func routedPrefixesByPeer() -> [Int: [IPPrefix]] {
        guard !routedTable.isEmpty else { return [:] }
        var out: [Int: [IPPrefix]] = [:]
        for e in routedTable.entries { out[e.value, default: []].append(e.prefix) }
        return out
    }

    /// Server: the prefixes routed behind peer `index` (for status and tests).
    public func routedPrefixes(ofPeer index: Int) -> [IPPrefix] {
        routedTable.entries.filter { $0.value == index }.map(\.prefix)
    }

    /// True when `route` sends `address` to peer `index` through a routed prefix: no peer has it as its
    /// tunnel address (that comes first), and its longest routed prefix is that peer's.
    @inline(__always)
    private func routesBack(_ address: IPAddress, to index: Int) -> Bool {
        guard !routedTable.isEmpty, routedTable.lookup(address) == index else { return false }
        return peerByAddress[address] == nil
    }

    /// Server: the peer slot the longest routed prefix holding `address` goes to, nil when none does.
    public func routedPeer(for address: IPAddress) -> Int? { routedTable.lookup(address) }

    // MARK: Reload

    /// The named clients of `list`, the first line of a key winning (as for its addresses).
    static func names(of list: AllowList) -> [PublicKey: String] {
        var names: [PublicKey: String] = [:]
        for client in list.clients where names[client.key] == nil && !client.name.isEmpty { names[client.key] = client.name }
        return names
    }

    /// Replaces the server's allow-list without touching the sessions of clients that stay: new keys
    /// become peers, removed keys lose their sessions at once, and a client whose fixed address changed
    /// loses its sessions so that its next handshake carries the new address. A fixed address that
    /// another peer holds (a pool client, or a key whose line lost that address) goes to the key the list
    /// names; the previous holder is evicted (docs/PROTOCOL.md, "Reloading the allow-list").
    public mutating func replaceAllowList(_ list: AllowList) -> AllowListChange {
        var change = AllowListChange()
        guard case .server(let settings) = role else { return change }
        peerNames = Self.names(of: list)
        // Fixed IPv6 addresses mean nothing to a server whose tunnel carries no IPv6 (the file's check
        // refuses them; a list built in code may have them).
        let hasIPv6 = settings.address6 != nil
        var wanted: [PublicKey: AllowedClient] = [:]
        for client in list.clients where wanted[client.key] == nil { wanted[client.key] = client }
        // 1. Removed keys give everything back.
        for index in peers.indices where !peers[index].isRemoved && wanted[peers[index].key] == nil {
            dropSessions(peer: index)
            releaseAddress(of: index)
            peerByKey[peers[index].key] = nil
            peers[index].isRemoved = true
            change.removed += 1
        }
        // 2. Staying keys whose fixed address changed give their old address back first, so that two keys
        //    swapping addresses in one edit are two readdresses, not evictions.
        //    Each family on its own: a key whose IPv6 address changed keeps its IPv4 one, and the other way
        //    round; a peer counts once however many of its addresses changed.
        var claims: [(index: Int, address: IPAddress)] = []
        for index in peers.indices where !peers[index].isRemoved {
            guard let client = wanted[peers[index].key] else { continue }
            var changed: [IPAddress] = []
            if let fixed = client.address, fixed != peers[index].address { changed.append(.v4(fixed)) }
            if hasIPv6, let fixed = client.address6, fixed != peers[index].address6 { changed.append(.v6(fixed)) }
            guard !changed.isEmpty else { continue }
            dropSessions(peer: index)
            for fixed in changed {
                releaseAddress(of: index, family: fixed)
                claims.append((index, fixed))
            }
            change.readdressed += 1
        }
        // 3. New keys become peers.
        for client in list.clients where peerByKey[client.key] == nil {
            let index = addPeer(key: client.key, address: nil)
            if let fixed = client.address { claims.append((index, .v4(fixed))) }
            if hasIPv6, let fixed = client.address6 { claims.append((index, .v6(fixed))) }
            change.added += 1
        }
        // 4. Each fixed address goes to its key; whoever still holds it is evicted.
        for (index, address) in claims {
            if let holder = claim(address, for: index) {
                change.evicted.append(AllowListChange.Eviction(address: address, key: peers[holder].key))
            }
        }
        // 5. Routed prefixes follow the new list: a removed key's go, a prefix moved to another key moves.
        routedTable = Self.routedTable(of: list, peerByKey: peerByKey, ipv6: hasIPv6)
        return change
    }

    private mutating func dropSessions(peer index: Int) {
        for s in peers[index].sessions { sessions[s.localIndex] = nil }
        peers[index].current = nil
        peers[index].previous = nil
        peers[index].next = nil
        peers[index].queue.removeAll()
    }

    // MARK: Queries

    /// The peer with this key.
    public func peer(withKey key: PublicKey) -> PeerState? { peerByKey[key].map { peers[$0] } }

    /// The earliest timer deadline of any peer.
    public var nextDeadline: UInt64? { peers.compactMap { $0.timers.nextDeadline }.min() }

    /// Number of live session indexes (for tests and status).
    public var liveSessionCount: Int { sessions.count }

    // MARK: Data path

    /// Chooses the session and endpoint for a packet read from the TUN device. When the peer has no
    /// usable session, the client queues a copy and starts a handshake (the server cannot: it drops).
    public mutating func route(_ packet: UnsafeRawBufferPointer, now: UInt64, wall: WallTime, random: any RandomSource,
        actions: inout [ControlAction]) -> SendDecision
    {
        let index: Int
        switch packet.first.map({ $0 >> 4 }) {
        case 4:
            guard let destination = IPv4Header.destination(packet) else { return .drop(.notIP) }
            if isClient {
                index = 0
            } else {
                // A tunnel address first (the common case costs one lookup), then the routed prefixes.
                guard let i = peerByAddress[.v4(destination)] ?? routedTable.lookup(destination) else { return .drop(.noRoute) }
                index = i
            }
        case 6:
            guard let destination = IPv6Header.destination(packet) else { return .drop(.notIP) }
            if isClient {
                switch ipv6Policy.verdict(destination: destination, assignment: assignmentInForce) {
                case .carry: break
                case .noRoute: return .drop(.noRoute)
                case .unreachable: return ipv6Policy.answer(packet, assignment: assignmentInForce, now: now)
                }
                index = 0
            } else {
                guard let i = peerByAddress[.v6(destination)] ?? routedTable.lookup(destination) else { return .drop(.noRoute) }
                index = i
            }
        default:
            return .drop(.notIP)
        }
        if let session = peers[index].current, !session.isExpired(at: now), let endpoint = peers[index].endpoint,
            session.framesSent < Limits.rejectAfterMessages
        {
            peers[index].timers.dataSent(now: now)
            peers[index].timers.anyAuthenticatedSent(now: now)
            rescheduleTimers(index)
            // Keep the key fresh: the initiator rekeys by age or count while the old session keeps working.
            if session.isInitiator,
                session.age(at: now) >= timers.rekeyAfterTime
                    || session.framesSent >= Limits.rekeyAfterMessages
            {
                initiateIfAllowed(peer: index, now: now, wall: wall, random: random, actions: &actions)
            }
            return .send(session, endpoint, peers[index].stats)
        }
        guard isClient else { return .drop(.noSession) }
        if peers[index].queue.count >= Limits.maxQueuedPackets { peers[index].queue.removeFirst() }
        peers[index].queue.append(Array(packet))
        initiateIfAllowed(peer: index, now: now, wall: wall, random: random, actions: &actions)
        return .queued
    }

    /// The session with this receiver index, and its peer's slot.
    @inline(__always)
    public func session(forIndex index: UInt32) -> (session: Session, peer: Int)? { sessions[index] }

    /// Accounts for an authenticated frame from `peer` (already opened by `DataFrame.open`): roaming,
    /// key confirmation, timers, and the cryptokey-routing check of the inner packet.
    public mutating func received(
        _ packet: UnsafeRawBufferPointer, on session: Session, peer index: Int, from source: Endpoint, now: UInt64,
        wall: WallTime, random: any RandomSource, actions: inout [ControlAction]
    ) -> ReceiveDecision {
        guard index < peers.count, !peers[index].isRemoved else { return .drop(.unknownSession) }
        defer { rescheduleTimers(index) }
        // Roaming: reply to wherever the latest authenticated frame came from. A client follows only its
        // current session's frames: once it moved to another endpoint, frames still arriving from the server
        // it left (on its previous session) must not take its traffic back there.
        if !isClient || session === peers[index].current { peers[index].endpoint = source }
        peers[index].timers.anyAuthenticatedReceived(now: now)
        if let next = peers[index].next, next === session {
            // Key confirmation: the client used the new session, so it becomes current (server side).
            if let old = peers[index].previous { sessions[old.localIndex] = nil }
            peers[index].previous = peers[index].current
            peers[index].current = next
            peers[index].next = nil
            handshakeConfirmed(peer: index, session: next, from: source, now: now, wall: wall, actions: &actions)
        }
        if session.isInitiator, !peers[index].sentLastMinuteHandshake,
            session.age(at: now)
                >= timers.rejectAfterTime - timers.keepaliveTimeout - timers.rekeyTimeout
        {
            peers[index].sentLastMinuteHandshake = true
            initiateIfAllowed(peer: index, now: now, wall: wall, random: random, actions: &actions)
        }
        if packet.count == 0 { return .keepalive }
        guard let header = IPPacket.parse(packet) else { return .drop(.notIP) }
        // Cryptokey routing (server): the inner source must be the address of its family this peer owns,
        // or an address whose longest routed prefix goes to this peer (what `route` would send back to it).
        // `address` and `address6` are the copies `claim`/`releaseAddress` keep equal to `peerByAddress`
        // (the record that routes the address back to it; `addressOwnershipViolation` checks this, and the
        // fuzz target after every event), so a field compare answers the common case without a hash lookup
        // per packet. The client accepts any source from the server.
        if !isClient {
            switch header.source {
            case .v4(let source):
                if peers[index].address != source, !routesBack(.v4(source), to: index) { return .drop(.sourceNotAllowed) }
            case .v6(let source):
                if peers[index].address6 != source, !routesBack(.v6(source), to: index) { return .drop(.sourceNotAllowed) }
            }
        }
        peers[index].timers.dataReceived(now: now)
        return .deliver(length: header.totalLength)
    }

    // MARK: Session-gone hints

    /// Server: a data frame from `source` named `index`, which no live session has (the server
    /// restarted, or the session expired). Returns the 8-byte hint to send back, at most 20 a second per
    /// source address (a bounded table of buckets, so spoofed frames from other addresses cannot use up
    /// a real client's hints): the client checks it names its current session and starts a handshake at
    /// once instead of after 15 s of silence. The hint carries nothing secret and changes no state here;
    /// a blind attacker would have to guess the 32-bit index, and a client acts on hints at most once per
    /// REKEY_TIMEOUT. A hint (8 bytes) is never larger than the frame it answers (32 bytes or more).
    public mutating func sessionGoneHint(index: UInt32, from source: IPAddress, now: UInt64) -> [UInt8]? {
        // WireGuard has no such message: a stock peer would count it as junk.
        guard case .server = role, protocolMode == .tunvpn else { return nil }
        guard hintLimiter.allow(source, now: now) else { return nil }
        var hint: [UInt8] = [WireFormat.MessageType.sessionGone.rawValue, 0, 0, 0]
        appendLE32(&hint, index)
        return hint
    }

    // MARK: Handshakes

    private mutating func nextTimestamp(_ wall: WallTime) -> TAI64N {
        // Strictly increasing within this process, even if the wall clock steps back.
        let t = TAI64N(secondsSince1970: wall.seconds, nanoseconds: wall.nanoseconds).after(lastTimestampSent)
        lastTimestampSent = t
        return t
    }

    private mutating func freshIndex(random: any RandomSource) -> UInt32 {
        while true {
            let i = random.nextUInt32()
            // Only a client initiates (`initiate`, and its failover probes), so only its peers can have a
            // pending sender index; a server with many clients does not scan them all for every response.
            if sessions[i] == nil, !reservedIndexes.contains(i),
                !isClient || peers.allSatisfy({ $0.pending?.senderIndex != i }), probe?.sent.senderIndex != i
            {
                return i
            }
        }
    }

    /// Sends an initiation unless one went out less than REKEY_TIMEOUT ago (WireGuard's rate rule).
    private mutating func initiateIfAllowed(
        peer index: Int, now: UInt64, wall: WallTime, random: any RandomSource, actions: inout [ControlAction]
    ) {
        if let last = peers[index].lastInitiationSentAt, elapsed(now, since: last) < timers.rekeyTimeout { return }
        initiate(peer: index, now: now, wall: wall, random: random, actions: &actions)
    }

    private mutating func initiate(
        peer index: Int, now: UInt64, wall: WallTime, random: any RandomSource, actions: inout [ControlAction]
    ) {
        guard let handshake = clientHandshake, let endpoint = failover?.current ?? peers[index].endpoint else { return }
        let senderIndex = freshIndex(random: random)
        var (message, sent) = handshake.createInitiation(senderIndex: senderIndex, timestamp: nextTimestamp(wall), random: random)
        cookieJar?.stamp(&message, now: now)
        peers[index].pending = sent
        peers[index].pendingMessage = message
        peers[index].lastInitiationSentAt = now
        let jitter = UInt64(random.nextUInt32() % UInt32(Limits.rekeyTimeoutJitterMillis)) * 1_000_000
        peers[index].timers.handshakeInitiated(now: now, jitter: jitter)
        reschedule(index)
        actions.append(.sendHandshake(message, to: endpoint))
        if let failover { actions.append(.endpointAttempted(index: failover.active)) }
    }

    /// Client: starts the first handshake.
    public mutating func start(now: UInt64, wall: WallTime, random: any RandomSource, actions: inout [ControlAction]) {
        guard isClient else { return }
        initiate(peer: 0, now: now, wall: wall, random: random, actions: &actions)
    }

    /// Handles a handshake message (type 1, 2 or 3) that arrived from `source`.
    public mutating func handleHandshake(
        _ message: [UInt8], from source: Endpoint, now: UInt64, wall: WallTime, random: any RandomSource,
        actions: inout [ControlAction]
    ) {
        switch role {
        case .server:
            guard let prepared = prepareInitiation(message, from: source, now: now, random: random, actions: &actions),
                let consumed = prepared.consume(random: random, actions: &actions),
                let admitted = admitInitiation(consumed, now: now, random: random, actions: &actions)
            else { return }
            commitInitiation(admitted.respond(), now: now, actions: &actions)
        case .client(let settings):
            do {
                try handleResponse(message, settings: settings, from: source, now: now, wall: wall, random: random, actions: &actions)
            } catch {
                actions.append(.handshakeRefused(error, from: source))
            }
        }
    }

    // MARK: Initiations in phases (server)
    //
    // Answering an initiation costs the server about five X25519 operations. The engine keeps this state
    // behind one lock that its data path takes for every batch, so the server handles an initiation in
    // five steps that alternate between this state (under the lock, cheap) and pure work (outside it):
    //   1. prepareInitiation (state): shape, key ID and mac1; under load, mac2 (or a cookie reply) and
    //      the per-source rate limit. Nothing else is done for an initiation that fails here.
    //   2. PreparedInitiation.consume (pure): message 1, `-> e, es, s, ss` and its payload.
    //   3. admitInitiation (state): the client key is allowed, its timestamp is newer than the last one
    //      admitted, its per-peer rate limit; its tunnel address and the response's index, reserved. The
    //      timestamp is recorded here, so a copy of the message that raced behind it through step 2 is
    //      refused as a replay.
    //   4. AdmittedInitiation.respond (pure): message 2, `<- e, ee, se, psk`, which carries the address.
    //   5. commitInitiation (state): the session becomes the peer's `next`, and the response goes out.
    // A handshake is counted as completed only when the client confirms `next` with an authenticated frame
    // (`received`), so an initiation replayed once the server forgot its timestamp shows nowhere.
    // `handleHandshake` runs the five steps in a row.

    /// Step 1. Returns the initiation if its DH work may go ahead; otherwise appends the refusal (and,
    /// under load, the cookie reply) to `actions` and returns nil.
    public mutating func prepareInitiation(
        _ message: [UInt8], from source: Endpoint, now: UInt64, random: any RandomSource,
        actions: inout [ControlAction]
    ) -> PreparedInitiation? {
        guard case .server(let settings) = role else { return nil }
        do {
            try screen(message, settings: settings, from: source, now: now, random: random, actions: &actions)
        } catch {
            actions.append(.handshakeRefused(error, from: source))
            return nil
        }
        guard let handshake = serverHandshake else { return nil }
        return PreparedInitiation(message: message, source: source, handshake: handshake)
    }

    private mutating func screen(
        _ message: [UInt8], settings: ServerSettings, from source: Endpoint, now: UInt64, random: any RandomSource,
        actions: inout [ControlAction]
    ) throws(HandshakeFailure) {
        guard message.first == WireFormat.MessageType.initiation.rawValue, let handshake = serverHandshake else { throw .malformed }
        // Cheap checks first (shape, key ID, mac1): a datagram failing them gets no reply and no DH work.
        if let failure = message.withUnsafeBytes({ handshake.precheckInitiation(raw: $0) }) { throw failure }
        guard loadMeter.record(now: now) else { return }
        // Under load, only a sender that proved it receives at its address (mac2) gets DH work.
        if cookieChecker?.verifyMAC2(message, source: source, now: now, random: random) != true {
            if let reply = cookieChecker?.makeReply(to: message, source: source, now: now, random: random) {
                actions.append(.sendHandshake(reply, to: source))
            }
            throw .cookieRequired
        }
        guard rateLimiter.allow(source.address, now: now) else { throw .rateLimited }
    }

    /// Step 3. Returns what the response needs if the client may have one; otherwise appends the refusal
    /// to `actions` and returns nil.
    public mutating func admitInitiation(
        _ initiation: ConsumedInitiation, now: UInt64, random: any RandomSource, actions: inout [ControlAction]
    ) -> AdmittedInitiation? {
        guard case .server(let settings) = role else { return nil }
        do {
            return try admit(initiation, settings: settings, now: now, random: random)
        } catch {
            actions.append(.handshakeRefused(error, from: initiation.source))
            if case .unknownClientKey = error { actions.append(.unknownClientKey(initiation.consumed.clientKey, from: initiation.source)) }
            return nil
        }
    }

    private mutating func admit(
        _ initiation: ConsumedInitiation, settings: ServerSettings, now: UInt64, random: any RandomSource
    ) throws(HandshakeFailure) -> AdmittedInitiation {
        let consumed = initiation.consumed
        let known = peerByKey[consumed.clientKey]
        // WireGuard mode has no pool and pushes nothing: only keys on the allow-list, with its addresses.
        let pushesAddresses = settings.protocolMode == .tunvpn
        guard (settings.allowAnyClient && pushesAddresses) || known != nil else { throw .unknownClientKey }
        if let known, let last = peers[known].lastInitiation, !(last < consumed.timestamp) {
            throw .replayedInitiation
        }
        let index: Int
        if let known {
            index = known
        } else {
            // --allow-any-client: a new key becomes a peer with addresses from the pools (both, or none).
            guard let address = nextPoolAddress(settings) else { throw .addressPoolExhausted }
            var address6: IPv6Address?
            if settings.address6 != nil {
                guard let a = nextPoolAddress6(settings) else { throw .addressPoolExhausted }
                address6 = a
            }
            index = addPeer(key: consumed.clientKey, address: address, address6: address6)
        }
        // A client draws from the pool of each family the list does not fix (and a reload or an eviction
        // did not leave it); either pool empty refuses it.
        if pushesAddresses, peers[index].address == nil {
            guard let address = nextPoolAddress(settings) else { throw .addressPoolExhausted }
            _ = claim(.v4(address), for: index)  // free: nobody is evicted
        }
        if pushesAddresses, settings.address6 != nil, peers[index].address6 == nil {
            guard let address = nextPoolAddress6(settings) else { throw .addressPoolExhausted }
            _ = claim(.v6(address), for: index)  // free: nobody is evicted
        }
        if let last = peers[index].lastInitiationConsumedAt,
            elapsed(now, since: last) < 1_000_000_000 / Limits.initiationsPerSecondPerPeer
        {
            throw .rateLimited
        }
        peers[index].lastInitiationConsumedAt = now
        peers[index].lastInitiation = consumed.timestamp
        let localIndex = freshIndex(random: random)
        reservedIndexes.insert(localIndex)
        var assignment: TunnelAssignment?
        if pushesAddresses {
            guard let clientAddress = peers[index].address else { preconditionFailure("address assigned above") }
            var a = TunnelAssignment(
                client: IPv4Prefix(address: clientAddress, length: settings.address.length), server: settings.address.address,
                dns: settings.dns)
            if let prefix6 = settings.address6, let clientAddress6 = peers[index].address6 {
                a.client6 = IPv6Prefix(address: clientAddress6, length: prefix6.length)
                a.server6 = prefix6.address
                a.ipv6Egress = settings.ipv6Egress
            }
            assignment = a
        }
        return AdmittedInitiation(
            consumed: consumed, source: initiation.source, handshake: initiation.handshake, peer: index,
            localIndex: localIndex, assignment: assignment)
    }

    /// Step 5. Sends the response and installs its session as the peer's `next`, unless a reload removed
    /// the client or changed its address since step 3 (the response would carry a stale address; the
    /// client's retransmission gets a fresh one).
    public mutating func commitInitiation(_ answer: AnsweredInitiation, now: UInt64, actions: inout [ControlAction]) {
        reservedIndexes.remove(answer.localIndex)
        let index = answer.peer
        // (WireGuard mode pushes no addresses, so no response of it can carry stale ones.)
        guard index < peers.count, !peers[index].isRemoved, peers[index].key == answer.clientKey,
            answer.assignment.map({ peers[index].address == $0.client.address && peers[index].address6 == $0.client6?.address })
                ?? true
        else {
            actions.append(.handshakeRefused(.unknownClientKey, from: answer.source))
            actions.append(.unknownClientKey(answer.clientKey, from: answer.source))
            return
        }
        actions.append(.sendHandshake(answer.response, to: answer.source))
        guard let session = answer.session(createdAt: now, rejectAfter: timers.rejectAfterTime) else {
            actions.append(.handshakeRefused(.noCommonSuite, from: answer.source))
            return
        }
        if let old = peers[index].next { sessions[old.localIndex] = nil }
        peers[index].next = session
        sessions[answer.localIndex] = (session, index)
        // The endpoint moves only with authenticated data (roaming), never with an initiation alone, so a
        // replayed initiation cannot redirect a client's traffic; the response goes to `source` regardless.
        if peers[index].endpoint == nil { peers[index].endpoint = answer.source }
        // Keys were derived: arm key zeroing now, as WireGuard does when a session is derived, so the
        // timestamp recorded in step 3 is forgotten again 3 × REJECT_AFTER_TIME later (docs/PROTOCOL.md).
        peers[index].timers.handshakeCompleted(now: now)
        reschedule(index)
    }

    /// Server: the client confirmed `session` (its `next`) with an authenticated frame from `source`;
    /// only now does the handshake count as completed.
    private mutating func handshakeConfirmed(
        peer index: Int, session: Session, from source: Endpoint, now: UInt64, wall: WallTime,
        actions: inout [ControlAction]
    ) {
        peers[index].lastHandshake = now
        peers[index].stats.lastHandshakeWallSeconds.store(wall.seconds, ordering: .relaxed)
        actions.append(
            .handshakeCompleted(
                peer: peers[index].key, address: peers[index].address, address6: peers[index].address6, endpoint: source,
                suite: session.suite.name))
    }

    /// The lowest free address in the server's prefix (not network, broadcast, the server, or taken).
    /// The caller takes it at once, so the next search starts there.
    private mutating func nextPoolAddress(_ settings: ServerSettings) -> IPv4Address? {
        let prefix = settings.address
        var candidate = max(prefix.network.value &+ 1, poolSearchStart)
        while candidate < prefix.broadcast.value {
            let a = IPv4Address(candidate)
            if a != prefix.address && peerByAddress[.v4(a)] == nil {
                poolSearchStart = candidate
                return a
            }
            candidate += 1
        }
        poolSearchStart = candidate
        return nil
    }

    /// The lowest free address in the server's IPv6 prefix from network + 2 up (network + 1 is by
    /// convention the server's, and the server's own address is skipped wherever it is). The caller takes
    /// it at once, so the next search starts there.
    private mutating func nextPoolAddress6(_ settings: ServerSettings) -> IPv6Address? {
        guard let prefix = settings.address6 else { return nil }
        let bottom = prefix.network.advanced(by: 2)
        var candidate = max(bottom, poolSearchStart6 ?? bottom)
        let last = prefix.last
        while prefix.contains(candidate) {
            if candidate != prefix.address && peerByAddress[.v6(candidate)] == nil {
                poolSearchStart6 = candidate
                return candidate
            }
            if candidate == last { break }
            candidate = candidate.advanced(by: 1)
        }
        poolSearchStart6 = candidate
        return nil
    }

    /// Forgets `address`'s owner; the next pool search of its family starts no higher than it, so it is
    /// handed out again.
    private mutating func freePoolAddress(_ address: IPAddress) {
        peerByAddress[address] = nil
        switch address {
        case .v4(let a): poolSearchStart = min(poolSearchStart, a.value)
        case .v6(let a): poolSearchStart6 = poolSearchStart6.map { min($0, a) }
        }
    }

    private mutating func handleResponse(
        _ message: [UInt8], settings: ClientSettings, from source: Endpoint, now: UInt64, wall: WallTime,
        random: any RandomSource, actions: inout [ControlAction]
    ) throws(HandshakeFailure) {
        if message.first == WireFormat.MessageType.sessionGone.rawValue, protocolMode == .tunvpn {
            // The server lost the session we send on: handshake now (rate-limited) rather than after 15 s.
            guard message.count == WireFormat.sessionGoneLength, message[1] == 0, message[2] == 0, message[3] == 0
            else { throw .malformed }
            guard let current = peers[0].current, readLE32(message, 4) == current.remoteIndex, !peers[0].timers.handshakeInFlight
            else { return }
            initiateIfAllowed(peer: 0, now: now, wall: wall, random: random, actions: &actions)
            return
        }
        if message.first == WireFormat.MessageType.cookieReply.rawValue {
            // The server is under load: keep its cookie; the next (re)transmission carries mac2.
            guard let pending = peers[0].pending else { throw .unexpectedResponse }
            guard cookieJar?.consumeReply(message, answering: peers[0].pendingMessage, senderIndex: pending.senderIndex, now: now) == true
            else { throw .corrupted }
            return
        }
        guard message.first == WireFormat.MessageType.response.rawValue else { throw .malformed }
        // A response names the initiation it answers by its receiver index: the probe of the preferred
        // endpoint, or the handshake with the endpoint in use.
        let answersProbe = message.count >= 12 && probe.map { readLE32(message, 8) == $0.sent.senderIndex } == true
        let sent: SentInitiation
        if answersProbe, let probe {
            sent = probe.sent
        } else {
            guard let pending = peers[0].pending else { throw .unexpectedResponse }
            sent = pending
        }
        let session: Session
        var assignment: TunnelAssignment
        switch (clientHandshake, sent) {
        case (.tunvpn(let initiator), .tunvpn(let s)):
            let result = try initiator.consumeResponse(message, for: s)
            session = Session(result: result, createdAt: now, rejectAfter: timers.rejectAfterTime)
            assignment = result.assignment
        case (.wireGuard(let initiator), .wireGuard(let s)):
            // WireGuard pushes nothing: the addressing is this client's own (checked by `init`).
            guard let own = settings.ownAddressing else { throw .unexpectedResponse }
            session = try initiator.consumeResponse(message, for: s).session(createdAt: now, rejectAfter: timers.rejectAfterTime)
            assignment = own
        default:
            throw .unexpectedResponse
        }
        if answersProbe { probe = nil } else { peers[0].pending = nil }
        // --no-ipv6: the client configures no IPv6 whatever the server offers, so the addressing in force
        // (and what the bounds check) has none.
        if settings.ipv6Disabled {
            assignment = TunnelAssignment(client: assignment.client, server: assignment.server, dns: assignment.dns)
        }
        // An authentic response whose addressing is outside the client's bounds makes no session: the
        // retransmit timer tries again, and the refusal is logged and counted each time.
        // No endpoint the client may move to may fall inside the assigned prefix either. (In WireGuard mode
        // the addressing is the operator's own configuration, not the server's word.)
        if protocolMode == .tunvpn {
            for endpoint in [source] + (failover?.endpoints.compactMap { $0 } ?? [settings.endpoint]) {
                if let violation = settings.assignmentBounds.violation(of: assignment, endpoint: endpoint) {
                    throw .unsafeAssignment(violation)
                }
            }
        }
        if answersProbe, var f = failover, f.active != 0 {
            // The preferred endpoint is back: move there; the later endpoint's handshake, if any, is dropped.
            let record = f.move(to: 0, reason: .preferredAnswered, now: now)
            failover = f
            peers[0].pending = nil
            actions.append(.endpointSwitched(record, to: source))
        }
        if let old = peers[0].previous { sessions[old.localIndex] = nil }
        peers[0].previous = peers[0].current
        peers[0].current = session
        sessions[session.localIndex] = (session, 0)
        peers[0].endpoint = source
        peers[0].lastHandshake = now
        peers[0].sentLastMinuteHandshake = false
        peers[0].unansweredReported = false
        peers[0].timers.handshakeCompleted(now: now)
        peers[0].stats.lastHandshakeWallSeconds.store(wall.seconds, ordering: .relaxed)
        peers[0].address = nil  // the server forwards for the whole internet: any inner source is allowed
        if assignmentInForce == nil {
            assignmentInForce = assignment
            actions.append(.tunnelUp(assignment))
        } else if assignment != assignmentInForce {
            assignmentInForce = assignment
            actions.append(.addressChanged(assignment))
        }
        // WireGuard names no server tunnel address.
        let pushed = protocolMode == .tunvpn
        actions.append(
            .handshakeCompleted(
                peer: session.peerKey, address: pushed ? assignment.server : nil, address6: pushed ? assignment.server6 : nil,
                endpoint: source, suite: session.suite.name))
        // Confirm the session to the server at once: queued packets if any, else a keepalive. Queued IPv6
        // packets the addressing just learnt does not carry are answered instead, as `route` would have.
        let (queued, answers, unreachable) = ipv6Policy.sortQueued(peers[0].queue, assignment: assignmentInForce, now: now)
        if unreachable > 0 { actions.append(.answerQueued(answers, unreachable: unreachable)) }
        peers[0].queue.removeAll()
        peers[0].timers.anyAuthenticatedSent(now: now)
        if queued.isEmpty {
            actions.append(.sendKeepalive(session, to: source, stats: peers[0].stats))
        } else {
            peers[0].timers.dataSent(now: now)
            actions.append(.sendQueued(queued, session, to: source, stats: peers[0].stats))
        }
        reschedule(0)
    }

    // MARK: Timers

    /// Fires every due timer and expires old sessions. Only peers whose scheduled deadline has come are
    /// visited, in slot order, each rescheduled afterwards; the others have nothing due (`schedule`).
    public mutating func tick(now: UInt64, wall: WallTime, random: any RandomSource, actions: inout [ControlAction]) {
        let due = schedule.takeDue(now: now)
        peersVisitedByLastTick = due.count
        for index in due where index < peers.count && !peers[index].isRemoved {
            defer { reschedule(index) }
            expireSessions(peer: index, now: now)
            for event in peers[index].timers.fire(now: now) {
                switch event {
                case .retransmitHandshake, .newHandshake:
                    // The first retransmission of a run says so at once (REKEY_TIMEOUT, about 5 s), rather
                    // than only at the give-up REKEY_ATTEMPT_TIME (90 s) later.
                    if event == .retransmitHandshake, isClient, !peers[index].unansweredReported, let endpoint = peers[index].endpoint {
                        peers[index].unansweredReported = true
                        let started = peers[index].timers.handshakeAttemptsStarted ?? now
                        actions.append(.handshakeUnanswered(peer: peers[index].key, endpoint: endpoint, after: elapsed(now, since: started)))
                    }
                    initiate(peer: index, now: now, wall: wall, random: random, actions: &actions)
                case .giveUpHandshake:
                    peers[index].pending = nil
                    peers[index].queue.removeAll()
                    actions.append(.handshakeGaveUp(peer: peers[index].key))
                    // A client keeps trying in the background at the retransmit pace of a fresh attempt run;
                    // the engine decides whether to exit.
                case .sendKeepalive, .persistentKeepalive:
                    if let s = peers[index].current, !s.isExpired(at: now), let e = peers[index].endpoint {
                        peers[index].timers.anyAuthenticatedSent(now: now)
                        actions.append(.sendKeepalive(s, to: e, stats: peers[index].stats))
                    }
                case .zeroKeys:
                    dropSessions(peer: index)
                    // With no session left to disturb, the server also forgets the client's last
                    // timestamp, so a client whose wall clock stepped back is refused for at most
                    // 3 × REJECT_AFTER_TIME rather than until its clock catches up (docs/PROTOCOL.md).
                    peers[index].lastInitiation = nil
                    actions.append(.keysZeroed(peer: peers[index].key))
                }
            }
        }
        if isClient, !peers.isEmpty { stepFailover(now: now, wall: wall, random: random, actions: &actions) }
    }

    /// Client: moves to the next endpoint when the one in use failed for long enough, or probes the
    /// preferred one while a later one is in use (`EndpointFailover`).
    private mutating func stepFailover(now: UInt64, wall: WallTime, random: any RandomSource, actions: inout [ControlAction]) {
        guard let handshake = clientHandshake, var f = failover else { return }
        if let (to, reason) = f.failoverDue(now: now, attemptsStarted: peers[0].timers.handshakeAttemptsStarted),
            let address = f.endpoints[to]
        {
            let record = f.move(to: to, reason: reason, now: now)
            failover = f
            actions.append(.endpointSwitched(record, to: address))
            // The sessions of the server left behind are of no use at the next one: without them packets
            // queue for the handshake that starts now, and go out when it completes.
            for s in [peers[0].current, peers[0].previous].compactMap({ $0 }) { sessions[s.localIndex] = nil }
            peers[0].current = nil
            peers[0].previous = nil
            peers[0].pending = nil
            probe = nil
            peers[0].endpoint = address
            peers[0].timers.restartAttempts()
            initiate(peer: 0, now: now, wall: wall, random: random, actions: &actions)
            return
        }
        guard let preferred = f.takeProbe(now: now) else { return }
        failover = f
        // A probe is an initiation of its own: it leaves `pending` and the session in use alone.
        let senderIndex = freshIndex(random: random)
        let (message, sent) = handshake.createInitiation(senderIndex: senderIndex, timestamp: nextTimestamp(wall), random: random)
        probe = (sent, preferred)
        actions.append(.sendHandshake(message, to: preferred))
        actions.append(.endpointAttempted(index: 0))
    }

    /// Client: endpoint `index` (of `ClientSettings.endpoints`) resolves to `endpoint` now; the next
    /// initiation to it goes there. A session in use keeps its endpoint until it fails.
    public mutating func updateEndpoint(_ index: Int, to endpoint: Endpoint) {
        failover?.update(index, to: endpoint)
    }

    /// Makes sure peer `index` is visited by `tick` no later than its next timer deadline or session
    /// expiry. Called after every change that may bring either forward; costs a few compares otherwise.
    @inline(__always)
    private mutating func reschedule(_ index: Int) {
        var due = peers[index].timers.nextDeadline
        due = PeerTimers.earlier(due, peers[index].current.map(Self.expiry))
        due = PeerTimers.earlier(due, peers[index].previous.map(Self.expiry))
        due = PeerTimers.earlier(due, peers[index].next.map(Self.expiry))
        schedule.schedule(index, at: due)
    }

    /// `reschedule` for the data path, where only the peer's timers changed: its sessions were made (and
    /// scheduled) by a handshake, and a key confirmation only moves `next` to `current`. Reads no session,
    /// so it touches no reference count shared with the other data path thread.
    @inline(__always)
    private mutating func rescheduleTimers(_ index: Int) {
        schedule.schedule(index, at: peers[index].timers.nextDeadline)
    }

    /// The first instant at which `session.isExpired(at:)` is true.
    private static func expiry(_ session: Session) -> UInt64 {
        if session.rejectAfter == 0 { return 0 }
        let (sum, overflow) = session.createdAt.addingReportingOverflow(session.rejectAfter)
        return overflow ? .max : sum
    }

    private mutating func expireSessions(peer index: Int, now: UInt64) {
        for s in peers[index].sessions where s.isExpired(at: now) {
            sessions[s.localIndex] = nil
            if peers[index].current === s { peers[index].current = nil }
            if peers[index].previous === s { peers[index].previous = nil }
            if peers[index].next === s { peers[index].next = nil }
        }
    }
}

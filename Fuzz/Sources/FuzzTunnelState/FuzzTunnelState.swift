// Fuzz target: the whole protocol core (`TunnelState`, Sources/Transport/TunnelState.swift) as the
// engine drives it: a server (allow-list with one fixed-address client, one pool client, optionally
// --allow-any-client, optionally an IPv6 tunnel prefix) and a client, talking through in-memory queues
// under a fuzzed clock.
//
// Input: a flag byte (1 --allow-any-client, 2 persistent keepalive, 4 the server has the IPv6 prefix
// fd00::1/120, 8 and IPv6 egress, 16 the client runs with --no-ipv6, 32 the server pushes DNS settings, 64
// both speak WireGuard's protocol (`ProtocolMode.wireguard`: no pool, nothing pushed, the client's own
// address 10.8.0.2/29; flags 1 and 32 then mean nothing)), then a script of events, one opcode
// byte each:
//   0 raw datagram to the server        1 raw datagram to the client
//   2 time passes (both tick)           3 deliver the oldest client → server handshake message
//   4 deliver the oldest server → client handshake message (either may have one bit flipped or be
//     sent twice)                       5 an initiation from another key (allowed or not)
//   6 the client sends a packet          7 the server sends a packet
//   8 deliver the oldest data frame      9 raw data frame to the server, with the index of a live session
//  10 a flood of the client's latest initiation (the server goes under load: cookie replies, mac2)
//  11 the server's allow-list is replaced (a reload): each of the three keys absent, without an address,
//     or with a fixed address in the pool (two keys may name one address, which the CLI never passes),
//     and without or with a fixed IPv6 address
// (flag byte: bit 0 --allow-any-client, bit 1 a persistent keepalive, bit 2 the tunnel carries IPv6)
// (opcode = low 4 bits mod 12; high bits are flags, e.g. 0x80 on a tick steps the wall clock back)
// Each datagram goes through what the engine does with it: handshake types to `handleHandshake`,
// type 4 to `receiverIndex`, `session(forIndex:)` (an unknown index gets a session-gone hint, which the
// client then handles), `DataFrame.open` and `received`.
// Invariants: every handshake message sent is exactly an initiation, response or cookie reply of the
// instance's protocol long (and no
// message the server sends is longer than an initiation); the client's addressing in force carries exactly
// the DNS settings the server pushes; a delivered
// packet is the packet the peer sent (trimmed to its IPv4 total length or 40 + its IPv6 payload length) and
// its source is the peer's address of its family on the server; an IPv6 packet the client's tunnel does
// not carry is answered with a well-formed ICMPv6 unreachable (never by the server); the server never keeps more than three sessions per peer, nor more live peers than there
// are keys; a forged or flipped message never completes a handshake; after every event, live peers'
// addresses of each family are pairwise distinct and the address map names peer i for address a exactly
// when peer i has address a (one owner per address of either family, Sources/Transport/TunnelState.swift).

import Crypto
import FuzzSupport
import Transport

#if canImport(Glibc)
    import Glibc
#endif

@_cdecl("FuzzTunnelState_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

let serverEndpoint = Endpoint(address: IPv4Address(192, 0, 2, 1), port: 51820)
let clientEndpoint = Endpoint(address: IPv4Address(198, 51, 100, 7), port: 40000)
let serverPrefix = IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 29)  // a small pool: 5 addresses
let fixedAddress = IPv4Address(10, 8, 0, 2)
/// The server's IPv6 prefix under flag 4: its pool starts at fd00::2, the source of the seeds' IPv6 packets.
let serverPrefix6 = IPv6Prefix(address: IPv6Address(high: 0xfd00 << 48, low: 1), length: 120)
let strangerKey = PrivateKey(random: FuzzRandom(seed: 0x5757))
/// What the server pushes under flag 32: both families and the longest search list the block carries.
let pushedDNS = DNSSettings(
    resolvers: [.v4(IPv4Address(10, 8, 0, 1)), .v6(IPv6Address(high: 0xfd00 << 48, low: 1)), .v4(IPv4Address(192, 0, 2, 53))],
    searchDomains: [String(repeating: "a", count: 30), String(repeating: "b", count: 31)])

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let ping: [UInt8] = [0x45, 0, 0, 24, 0, 0, 0, 0, 64, 1, 0, 0, 10, 8, 0, 2, 10, 8, 0, 1, 8, 0, 0, 0]
        let pong: [UInt8] = [0x45, 0, 0, 24, 0, 0, 0, 0, 64, 1, 0, 0, 10, 8, 0, 1, 10, 8, 0, 2, 0, 0, 0, 0]
        let handshake: [UInt8] = [3, 0, 4, 0]  // deliver the first initiation, then the response
        // An ICMPv6 echo request from the client's (would-be) IPv6 address to the internet.
        let ping6: [UInt8] = [0x60, 0, 0, 0, 0, 8, 58, 64, 0xfd] + Array(repeating: 0, count: 14) + [2]
            + [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1] + [128, 0, 0, 0, 0, 1, 0, 1]
        // fd00::2 → fd00::1 and back: inside the tunnel's IPv6 prefix under flag 4.
        let ping6Inside: [UInt8] = Array(ping6[0..<24]) + [0xfd] + Array(repeating: 0, count: 14) + [1] + Array(ping6[40...])
        let pong6Inside: [UInt8] = Array(ping6[0..<8]) + Array(ping6Inside[24..<40]) + Array(ping6Inside[8..<24]) + [129, 0, 0, 0, 0, 1, 0, 1]
        return [
            ("handshake", [0] + handshake),
            ("handshake-dual-stack", [0x0c] + handshake + [8] + [6] + chunk(ping) + [8, 8] + [7] + chunk(pong) + [8]),
            ("handshake-dns", [0x2c] + handshake + [8] + [6] + chunk(ping) + [8, 8] + [2] + le16(16000) + [3, 0, 4, 0]),
            // With IPv6: the other client takes fd00::3 from the pool; a reload gives it to the world's client.
            ("reload-evicts-ipv6", [0x04] + handshake + [5, 0] + le32(1001) + [11]
                + le16(reloadSpec(client: 1, other: 1, stranger: 1) | 2 << 9) + [2] + le16(16000) + [3, 0, 4, 0]),
            ("handshake-and-data", [0] + handshake + [8] + [6] + chunk(ping) + [8, 8] + [7] + chunk(pong) + [8]),
            // WireGuard mode (flag 64): the same exchanges with WireGuard's messages and padded frames.
            ("wireguard-handshake-and-data", [0x40] + handshake + [8] + [6] + chunk(ping) + [8, 8] + [7] + chunk(pong) + [8]),
            ("wireguard-flood-cookie", [0x40, 10, 120, 0, 4, 0, 2] + le16(5500) + [10, 150, 1, 4, 0, 2] + le16(5500) + [10, 110, 0, 3, 0, 4, 0]),
            ("wireguard-rekey-and-reload", [0x42] + handshake + [8, 2] + le16(0xffff) + [6] + chunk(ping) + [3, 0, 4, 0, 8, 5, 0]
                + le32(1001) + [11] + le16(reloadSpec(client: 1, other: 2, stranger: 0)) + [6] + chunk(ping) + [8]),
            ("handshake-flipped", [0, 3, 0x81] + le16(5) + [2] + le16(6000) + [3, 0, 4, 0]),
            ("response-twice", [0, 3, 0, 4, 2, 4, 0]),
            ("rekey-after-time", [0] + handshake + [8, 2] + le16(0xffff) + [6] + chunk(ping) + [3, 0, 4, 0, 8]),
            ("expire", [0] + handshake + [8] + Array(repeating: [2] + le16(0xffff), count: 12).flatMap { $0 } + [6] + chunk(ping)),
            ("stranger-allowed", [1, 5, 1, 5, 1, 5, 2, 5, 0]),
            ("stranger-refused", [0, 5, 0]),
            // IPv6 the tunnel does not carry: queued before the handshake and answered after it, then
            // answered at once; an IPv6 packet from the server to no client has no route.
            ("ipv6-queued-then-answered", [0, 6] + chunk(ping6) + handshake + [6] + chunk(ping6) + [8]),
            ("ipv6-from-server", [0] + handshake + [8, 7] + chunk(ping6) + [8]),
            // A server with an IPv6 prefix: inside the tunnel's prefix both ways, and beyond it without
            // egress (answered by the client) and with it (carried); a client with --no-ipv6 answers all.
            ("ipv6-inside", [4] + handshake + [8, 6] + chunk(ping6Inside) + [8, 7] + chunk(pong6Inside) + [8, 6] + chunk(ping6) + [8]),
            ("ipv6-egress", [12] + handshake + [8, 6] + chunk(ping6) + [8]),
            ("ipv6-disabled", [28] + handshake + [8, 6] + chunk(ping6Inside) + [8]),
            ("raw-to-both", [0, 0] + chunk([1, 0, 0, 0] + [UInt8](repeating: 0, count: 156)) + [1] + chunk([2, 0, 0, 0, 1])),
            ("session-gone", [0] + handshake + [8, 2] + le16(0xffff) + [2] + le16(0xffff) + [2] + le16(0xffff)
                + [9] + chunk([4, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 24)) + [4, 0, 3, 0, 4, 0]),
            ("forged-frame", [0] + handshake + [9, 0] + chunk([UInt8](repeating: 0xee, count: 60))),
            ("clock-back", [0] + handshake + [0x82] + le16(10_000) + [2] + le16(5000) + [3, 0, 4, 0]),
            ("flood-cookie", [0, 10, 120, 0, 4, 0, 2] + le16(5500) + [10, 150, 1, 4, 0, 2] + le16(5500) + [10, 110, 0, 3, 0, 4, 0]),
            // The other client takes 10.8.0.3 from the pool; a reload gives 10.8.0.3 to the stranger, which
            // connects; the other client reconnects (evicted: a fresh address).
            ("reload-evicts", [0] + handshake + [5, 0] + le32(1001) + [11] + le16(reloadSpec(client: 2, other: 1, stranger: 3))
                + [5, 1] + le32(1002) + [2] + le16(1000) + [5, 0] + le32(1003)),
            // The world's client loses 10.8.0.2 to the other client in one edit, then data flows.
            ("reload-moves", [0] + handshake + [8, 5, 0] + le32(1001) + [11] + le16(reloadSpec(client: 1, other: 2, stranger: 0))
                + [6] + chunk(ping) + [8, 2] + le16(16000) + [3, 0, 4, 0, 8]),
        ]
    }
    return 0
}

/// Drives a client and a server and checks what comes out.
struct World {
    var server: TunnelState
    var client: TunnelState
    let random: FuzzRandom
    var now: UInt64 = 1_000_000_000
    var wall = WallTime(seconds: 1_700_000_000, nanoseconds: 0)
    var toServer: [[UInt8]] = []  // handshake messages the client sent
    var toClient: [[UInt8]] = []
    var frames: [(bytes: [UInt8], toServer: Bool)] = []
    /// Packets each side sent that may come out at the other end (IPv4-trimmed), oldest first.
    var sentByClient: [[UInt8]] = []
    var sentByServer: [[UInt8]] = []
    /// Live (not removed) peers at most: one per key the world knows. (A key removed by a reload and
    /// added back, by a reload or by --allow-any-client, takes a new slot; removed slots stay empty.)
    let maxPeers = 3
    /// The DNS settings the server pushes (flag 32), which every assignment the client takes must carry.
    let dns: DNSSettings

    /// Flag 64: both ends in WireGuard mode.
    let mode: ProtocolMode

    init(flags: UInt8) {
        mode = flags & 64 == 64 ? .wireguard : .tunvpn
        dns = flags & 32 == 32 && mode == .tunvpn ? pushedDNS : .none
        random = FuzzRandom(seed: UInt64(flags))
        let allowList = AllowList(clients: [
            AllowedClient(key: FuzzKeys.client.publicKey, address: fixedAddress),
            AllowedClient(key: FuzzKeys.otherClient.publicKey),
        ])
        let anyClient = flags & 1 == 1
        server = TunnelState(
            role: .server(
                ServerSettings(
                    responder: HandshakeResponder(localStatic: FuzzKeys.server), address: serverPrefix,
                    address6: flags & 4 == 4 ? serverPrefix6 : nil, ipv6Egress: flags & 12 == 12,
                    allowList: allowList, allowAnyClient: anyClient, dns: dns, protocolMode: mode)))
        client = TunnelState(
            role: .client(
                ClientSettings(
                    initiator: HandshakeInitiator(localStatic: FuzzKeys.client, serverKey: FuzzKeys.server.publicKey),
                    endpoint: serverEndpoint, persistentKeepalive: flags & 2 == 2 ? 25 : nil, ipv6Disabled: flags & 16 == 16,
                    protocolMode: mode,
                    ownAddressing: TunnelAssignment(client: IPv4Prefix(address: fixedAddress, length: 29), server: .any))))
        // The engine starts the client's first handshake at launch.
        var actions: [ControlAction] = []
        client.start(now: now, wall: wall, random: random, actions: &actions)
        collect(actions, fromServer: false)
    }

    mutating func collect(_ actions: [ControlAction], fromServer: Bool) {
        for action in actions {
            switch action {
            case .sendHandshake(let message, _):
                // The server answers with a response, or with a cookie reply when under load.
                let expected =
                    mode == .wireguard
                    ? (fromServer ? [WireGuardFormat.responseLength, WireGuardFormat.cookieReplyLength] : [WireGuardFormat.initiationLength])
                    : (fromServer ? [WireFormat.responseLength, WireFormat.cookieReplyLength] : [WireFormat.initiationLength])
                require(expected.contains(message.count), "a \(message.count)-byte handshake message from the \(fromServer ? "server" : "client")")
                require(message.count <= WireFormat.initiationLength, "the server sent more than an initiation's length")
                if fromServer { toClient.append(message) } else { toServer.append(message) }
            case .sendKeepalive(let session, _, _):
                seal([], session: session, toServer: !fromServer)
            case .sendQueued(let packets, let session, _, _):
                for p in packets { seal(p, session: session, toServer: !fromServer) }
            case .answerQueued(let answers, let unreachable):
                require(!fromServer && answers.count <= unreachable, "\(answers.count) answers for \(unreachable) queued packets")
                for a in answers { checkUnreachable(a) }
                if trace { print("client: \(answers.count) answers for \(unreachable) queued packets") }
            case .tunnelUp(let a), .addressChanged(let a):
                require(!fromServer && a.dns == dns, "the client's addressing carries DNS settings \(a.dns), not the pushed \(dns)")
                if trace { print("client: \(action)") }
            case .endpointSwitched, .endpointAttempted:
                // One endpoint: the client never moves, and a name is resolved by Control, not here.
                require(!fromServer, "the server reported a client's endpoint: \(action)")
                if trace { print("client: \(action)") }
            case .handshakeCompleted, .handshakeRefused, .handshakeGaveUp, .keysZeroed, .handshakeUnanswered, .unknownClientKey:
                if trace { print("\(fromServer ? "server" : "client"): \(action)") }
            }
        }
    }

    mutating func seal(_ packet: [UInt8], session: Session, toServer: Bool) {
        // WireGuard's frames are padded to a multiple of 16 (never past the MTU); tunvpn's are not.
        let mtu = 1420
        let plaintext = session.frame == .wireGuard ? WireGuardFormat.paddedLength(packet.count, mtu: mtu) : packet.count
        let capacity = DataFrame.headerLength + plaintext + DataFrame.tagLength
        let buffer = GuardedBuffer(count: capacity)
        (buffer.start + DataFrame.headerLength).copyMemory(from: packet, byteCount: packet.count)
        guard let n = DataFrame.seal(buffer.start, packetLength: packet.count, session: session, mtu: mtu) else { return }
        buffer.checkGuards("seal")
        require(n == capacity, "seal length")
        frames.append((Array(buffer.bytes), toServer))
    }

    mutating func handshake(_ message: [UInt8], toServer: Bool, from source: Endpoint) {
        var actions: [ControlAction] = []
        if toServer {
            server.handleHandshake(message, from: source, now: now, wall: wall, random: random, actions: &actions)
        } else {
            client.handleHandshake(message, from: source, now: now, wall: wall, random: random, actions: &actions)
        }
        collect(actions, fromServer: toServer)
        checkServer()
    }

    /// What the engine does with a datagram of type 4.
    mutating func frame(_ datagram: [UInt8], toServer: Bool, from source: Endpoint) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: datagram.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: datagram)
        guard let index = DataFrame.receiverIndex(UnsafeRawBufferPointer(buffer)) else { return }
        let state = toServer ? server : client
        guard let (session, peer) = state.session(forIndex: index) else {
            // The engine answers a frame for an unknown session with a rate-limited session-gone hint.
            if toServer, let hint = server.sessionGoneHint(index: index, from: source.address, now: now) {
                require(hint.count == WireFormat.sessionGoneLength && hint[0] == WireFormat.MessageType.sessionGone.rawValue
                    && Array(hint[4..<8]) == le32(index), "session-gone hint \(hint) for index \(index)")
                toClient.append(hint)
            }
            return
        }
        guard case .packet(let length) = DataFrame.open(buffer, session: session, now: now) else { return }
        require(length == datagram.count - DataFrame.headerLength - DataFrame.tagLength, "opened length")
        let packet = UnsafeRawBufferPointer(rebasing: buffer[DataFrame.headerLength..<(DataFrame.headerLength + length)])
        var actions: [ControlAction] = []
        let decision: ReceiveDecision
        if toServer {
            decision = server.received(packet, on: session, peer: peer, from: source, now: now, wall: wall, random: random, actions: &actions)
        } else {
            decision = client.received(packet, on: session, peer: peer, from: source, now: now, wall: wall, random: random, actions: &actions)
        }
        collect(actions, fromServer: toServer)
        if trace { print("frame to \(toServer ? "server" : "client"): \(decision)") }
        switch decision {
        case .deliver(let n):
            require(n >= 20 && n <= length, "deliver \(n) bytes of a \(length)-byte packet")
            let delivered = Array(packet[0..<n])
            let sent = toServer ? sentByClient : sentByServer
            require(sent.contains(delivered), "delivered a packet the peer never sent")
            if toServer, delivered[0] >> 4 == 6 {
                require(n >= 40, "a delivered IPv6 packet of \(n) bytes")
                let source = delivered.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress! + 8) }
                require(server.peers[peer].address6 == source,
                    "delivered a packet from \(source), peer has \(String(describing: server.peers[peer].address6))")
            } else if toServer {
                // Cryptokey routing: the inner source is the address the server gave this peer.
                let source = IPv4Address(UInt32(delivered[12]) << 24 | UInt32(delivered[13]) << 16 | UInt32(delivered[14]) << 8 | UInt32(delivered[15]))
                require(server.peers[peer].address == source, "delivered a packet from \(source), peer has \(String(describing: server.peers[peer].address))")
            }
        case .keepalive:
            require(length == 0, "a keepalive with \(length) bytes")
        case .drop:
            break
        }
        checkServer()
    }

    mutating func send(_ packet: [UInt8], fromServer: Bool) {
        var actions: [ControlAction] = []
        let decision = packet.withUnsafeBytes { p in
            fromServer
                ? server.route(p, now: now, wall: wall, random: random, actions: &actions)
                : client.route(p, now: now, wall: wall, random: random, actions: &actions)
        }
        if let header = packet.withUnsafeBytes({ IPPacket.parse($0) }) {
            let trimmed = Array(packet[0..<header.totalLength])
            if fromServer { sentByServer.append(trimmed) } else { sentByClient.append(trimmed) }
        }
        if case .answer(let answer) = decision {
            require(!fromServer && packet.first.map { $0 >> 4 } == 6, "an ICMPv6 answer from the \(fromServer ? "server" : "client")")
            checkUnreachable(answer, answering: packet)
        }
        if trace { print("\(fromServer ? "server" : "client") sends \(packet.count) bytes: \(decision)") }
        collect(actions, fromServer: fromServer)
        if case .send(let session, _, _) = decision { seal(packet, session: session, toServer: !fromServer) }
    }

    mutating func tick(_ advance: UInt64, wallStep: Int64) {
        now &+= advance
        let seconds = Int64(bitPattern: wall.seconds) &+ wallStep
        wall = WallTime(seconds: UInt64(max(0, seconds)), nanoseconds: UInt32(advance % 1_000_000_000))
        var a: [ControlAction] = []
        server.tick(now: now, wall: wall, random: random, actions: &a)
        collect(a, fromServer: true)
        var b: [ControlAction] = []
        client.tick(now: now, wall: wall, random: random, actions: &b)
        collect(b, fromServer: false)
        checkServer()
    }

    /// A reload: each key absent (0), without an address (1), or with 10.8.0.(code) (2...6), 3 bits each;
    /// then bits 9... (2 bits each): no IPv6 address (0) or fd00::(code + 1).
    mutating func reload(_ spec: UInt16) {
        var clients: [AllowedClient] = []
        for (i, key) in [FuzzKeys.client, FuzzKeys.otherClient, strangerKey].enumerated() {
            let code = UInt8(spec >> (3 * i) & 7) % 7
            if code == 0 { continue }
            let code6 = UInt64(spec >> (9 + 2 * i) & 3)
            clients.append(
                AllowedClient(
                    key: key.publicKey, address: code == 1 ? nil : IPv4Address(10, 8, 0, code),
                    address6: code6 == 0 ? nil : serverPrefix6.network.advanced(by: code6 + 1)))
        }
        let live = server.peers.filter { !$0.isRemoved }.map(\.key)
        let change = server.replaceAllowList(AllowList(clients: clients))
        if trace { print("reload \(clients.map { "\($0.address.map { "\($0)" } ?? "pool")" }): \(change)") }
        require(change.removed == live.filter { k in !clients.contains { $0.key == k } }.count, "removed count \(change)")
        require(change.added == clients.filter { !live.contains($0.key) }.count, "added count \(change)")
        for eviction in change.evicted {
            let kept: IPAddress? = server.peer(withKey: eviction.key).flatMap { peer in
                eviction.address.ipv4 != nil ? peer.address.map { .v4($0) } : peer.address6.map { .v6($0) }
            }
            require(kept == nil, "evicted \(eviction.key.base64) still has an address of that family")
            require(eviction.address.ipv6 == nil || server.role.hasIPv6, "an IPv6 eviction on a server without IPv6")
            require(server.peer(withKey: eviction.key).map { $0.current == nil && $0.previous == nil && $0.next == nil } ?? true,
                "evicted \(eviction.key.base64) keeps a session")
        }
        for client in clients {
            if let fixed = client.address, clients.filter({ $0.address == fixed }).count == 1 {
                require(server.peer(withKey: client.key)?.address == fixed, "\(client.key.base64) did not get its fixed \(fixed)")
            }
            if server.role.hasIPv6, let fixed = client.address6, clients.filter({ $0.address6 == fixed }).count == 1 {
                require(server.peer(withKey: client.key)?.address6 == fixed, "\(client.key.base64) did not get its fixed \(fixed)")
            }
        }
        checkServer()
    }

    func checkServer() {
        let live = server.peers.filter { !$0.isRemoved }
        require(live.count <= maxPeers, "\(live.count) live peers, at most \(maxPeers)")
        require(Set(live.map(\.key)).count == live.count, "two live peers with one key")
        require(server.liveSessionCount <= 3 * live.count, "\(server.liveSessionCount) live sessions for \(live.count) live peers")
        require(client.liveSessionCount <= 2, "the client keeps \(client.liveSessionCount) sessions")
        let addresses = server.peers.compactMap(\.address)
        require(Set(addresses).count == addresses.count, "two peers share a tunnel address")
        if let violation = server.addressOwnershipViolation() { require(false, "address records disagree: \(violation)") }
        require(addresses.allSatisfy { serverPrefix.contains($0) && $0 != serverPrefix.address }, "an address outside the pool")
        let addresses6 = server.peers.compactMap(\.address6)
        require(Set(addresses6).count == addresses6.count, "two peers share an IPv6 tunnel address")
        require(server.role.hasIPv6 || addresses6.isEmpty, "an IPv6 address on a server without IPv6")
        require(addresses6.allSatisfy { serverPrefix6.contains($0) && $0 != serverPrefix6.address && $0 != serverPrefix6.network },
            "an IPv6 address outside the pool")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    var world = World(flags: input.byte())
    var steps = 0
    while !input.isAtEnd && steps < 200 {
        steps += 1
        let op = input.byte()
        switch (op & 0x0f) % 12 {
        case 0: world.handshake(input.chunk(), toServer: true, from: clientEndpoint)
        case 1: world.handshake(input.chunk(), toServer: false, from: serverEndpoint)
        case 2:
            // Up to 65 s per step in ms steps; the wall clock may step back (high bit of the op).
            let ms = UInt64(input.uint16())
            world.tick(ms * 1_000_000, wallStep: op & 0x80 != 0 ? -Int64(ms / 10) : Int64(ms / 1000))
        case 3, 4:
            let toServer = op & 0x0f == 3
            let mode = input.byte()
            guard let message = toServer ? world.toServer.first : world.toClient.first else { continue }
            if mode & 2 == 0 {
                if toServer { world.toServer.removeFirst() } else { world.toClient.removeFirst() }
            }
            var m = message
            let flipped = mode & 1 == 1
            if flipped { m[Int(input.uint16()) % m.count] ^= 1 << (mode >> 5) }
            let before = toServer ? world.server.liveSessionCount : world.client.liveSessionCount
            // Roaming: the source may change (bit 3).
            let source = mode & 8 != 0
                ? Endpoint(address: IPv4Address(203, 0, 113, mode), port: UInt16(mode) << 8)
                : (toServer ? clientEndpoint : serverEndpoint)
            world.handshake(m, toServer: toServer, from: source)
            let after = toServer ? world.server.liveSessionCount : world.client.liveSessionCount
            if flipped && m != message {
                // mac2 is not checked until cookies exist: only a flip before it must fail.
                let macs =
                    world.mode == .wireguard
                    ? (toServer ? WireGuardFormat.initiationMAC1Offset : WireGuardFormat.responseMAC1Offset) + 16
                    : (toServer ? 144 : 86)
                let position = m.indices.first { m[$0] != message[$0] } ?? 0
                if position < macs {
                    require(after <= before, "a flipped handshake message (byte \(position)) made a session")
                }
            }
        case 5:
            // Another key: the pool client on the allow-list, or a stranger (only with --allow-any-client).
            let key = input.byte() & 1 == 0 ? FuzzKeys.otherClient : strangerKey
            let timestamp = TAI64N(secondsSince1970: world.wall.seconds, nanoseconds: UInt32(steps) << 24)
            let m: [UInt8]
            if world.mode == .wireguard {
                m = WireGuardInitiator(localStatic: key, peerKey: FuzzKeys.server.publicKey)
                    .createInitiation(senderIndex: input.uint32(), timestamp: timestamp, random: world.random).message
            } else {
                m = HandshakeInitiator(localStatic: key, serverKey: FuzzKeys.server.publicKey)
                    .createInitiation(senderIndex: input.uint32(), timestamp: timestamp, random: world.random).message
            }
            world.handshake(m, toServer: true, from: Endpoint(address: IPv4Address(198, 51, 100, 9), port: 1))
        case 6, 7: world.send(Array(input.chunk().prefix(Limits.maxPacketLength)), fromServer: op & 0x0f == 7)
        case 8:
            guard !world.frames.isEmpty else { continue }
            let f = world.frames.removeFirst()
            world.frame(f.bytes, toServer: f.toServer, from: f.toServer ? clientEndpoint : serverEndpoint)
        case 10:
            // A flood: the client's latest initiation replayed from one or many sources, which puts the
            // server under load (cookie replies, mac2, rate limits; Sources/Transport/Cookies.swift).
            let count = Int(input.byte())
            let spread = input.byte()
            guard let message = world.toServer.last else { continue }
            for i in 0..<count {
                let source = spread & 1 == 0
                    ? clientEndpoint : Endpoint(address: IPv4Address(198, 18, UInt8(i & 0xff), spread), port: UInt16(i))
                world.handshake(message, toServer: true, from: source)
            }
        case 11: world.reload(input.uint16())
        default:
            // A forged frame naming a live session (or none): raw bytes with that receiver index.
            var bytes = input.chunk()
            if bytes.count >= 8, let index = world.server.peers.flatMap(\.sessions).first?.localIndex {
                bytes.replaceSubrange(0..<8, with: [4, 0, 0, 0] + le32(index))
            }
            world.frame(bytes, toServer: true, from: clientEndpoint)
        }
        world.checkServer()
    }
    return 0
}

/// The reload opcode's argument for these per-key codes (0 absent, 1 pool, 2...6 10.8.0.code).
func reloadSpec(client: UInt16, other: UInt16, stranger: UInt16) -> UInt16 { client | other << 3 | stranger << 6 }

/// TUNVPN_FUZZ_TRACE=1 prints what each frame came to (for checking that seeds reach the data path).
let trace = getenv("TUNVPN_FUZZ_TRACE") != nil

extension PeerState {
    var sessions: [Session] { [current, previous, next].compactMap { $0 } }
}

extension TunnelState.Role {
    var hasIPv6: Bool {
        if case .server(let s) = self { return s.address6 != nil }
        return false
    }
}

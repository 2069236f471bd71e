// Protocol version 3 (version 2's dual-stack addressing, with the DNS block after it): the version byte, the
// 264-byte response carrying both families' addressing and the IPv6 egress flag, refusal of versions 1 and
// 2 by name, allow-list lines with an IPv6 address, the IPv6
// pool and reload, IPv6 assignment bounds and the default unique local prefix (docs/PROTOCOL.md).

import Crypto
import Testing

@testable import Transport

let ula = IPv6Prefix("fd00:1:2:3::1/64")!

func v6(_ text: String) -> IPv6Address { IPv6Address(text)! }

/// A client/server pair whose server tunnel carries IPv6 (`address6`), and whose client has `bounds`.
func dualStackPair(
    address6: IPv6Prefix? = ula, egress: Bool = true, allowList: AllowList? = nil, allowAnyClient: Bool = false,
    clientKey: PrivateKey? = nil, bounds: AssignmentBounds = AssignmentBounds(), ipv6Disabled: Bool = false
) -> CorePair {
    var pair = CorePair(clientKey: clientKey)
    let key = clientKey ?? pair.f.client
    pair.client = TunnelState(role: .client(ClientSettings(
        initiator: HandshakeInitiator(localStatic: key, serverKey: pair.f.server.publicKey), endpoint: pair.serverEndpoint,
        assignmentBounds: bounds, ipv6Disabled: ipv6Disabled)))
    pair.server = TunnelState(role: .server(ServerSettings(
        responder: HandshakeResponder(localStatic: pair.f.server), address: IPv4Prefix("10.8.0.1/16")!, address6: address6,
        ipv6Egress: egress, allowList: allowList ?? AllowList(clients: [AllowedClient(key: key.publicKey)]),
        allowAnyClient: allowAnyClient)))
    return pair
}

/// Sets mac1 of `message` (at 32 bytes from its end) for the holder of `key`, as a sender would.
func remac(_ message: inout [UInt8], for key: PublicKey) {
    let offset = message.count - 32
    let mac = message.withUnsafeBytes { StaticKeyTags(key).mac1(UnsafeRawBufferPointer(rebasing: $0[0..<offset])) }
    message.replaceSubrange(offset..<(offset + 16), with: mac)
}

@Suite struct DualStackHandshakeTests {
    let f = Fixture()
    let dual = TunnelAssignment(
        client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address(10, 8, 0, 1), client6: IPv6Prefix("fd00:1:2:3::2/64")!,
        server6: v6("fd00:1:2:3::1"), ipv6Egress: true)

    func roundTrip(_ assignment: TunnelAssignment) throws -> (message: [UInt8], client: HandshakeResult) {
        let initiator = f.initiator()
        let (m1, sent) = initiator.createInitiation(senderIndex: 0x0a0b_0c0d, timestamp: f.t1, random: f.random)
        #expect(m1[0] == 1 && m1[1] == 3 && m1[2] == 0 && m1[3] == 0, "type 1, version 3")
        let (m2, server) = f.responder().createResponse(
            to: try f.consume(f.responder(), m1), senderIndex: 0x0102_0304, assignment: assignment)
        #expect(server?.assignment == assignment)
        return (m2, try initiator.consumeResponse(m2, for: sent))
    }

    @Test func theResponseCarriesBothFamiliesAndTheEgressFlag() throws {
        #expect(try roundTrip(dual).client.assignment == dual)
        var noEgress = dual
        noEgress.ipv6Egress = false
        #expect(try roundTrip(noEgress).client.assignment == noEgress)
        let v4only = TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address(10, 8, 0, 1))
        let result = try roundTrip(v4only).client.assignment
        #expect(result == v4only && result.client6 == nil && result.server6 == nil && !result.ipv6Egress)
        // The egress flag means nothing without IPv6: it is not sent.
        var flagOnly = v4only
        flagOnly.ipv6Egress = true
        #expect(try roundTrip(flagOnly).client.assignment == v4only)
    }

    @Test func theResponseHasTheDocumentedLayout() throws {
        let (m2, _) = try roundTrip(dual)
        #expect(WireFormat.responseLength == 264 && WireFormat.responseMAC1Offset == 232 && WireFormat.responsePayloadLength == 172)
        #expect(m2.count == 264)
        #expect(Array(m2[0..<4]) == [2, 3, 0, 0], "type 2, version 3, two zero bytes")
        #expect(Array(m2[4..<8]) == [0x04, 0x03, 0x02, 0x01], "sender index, little-endian")
        #expect(Array(m2[8..<12]) == [0x0d, 0x0c, 0x0b, 0x0a], "receiver index = the initiation's sender index")
        #expect(StaticKeyTags(f.client.publicKey).verifyMAC1(m2, offset: 232), "mac1 over 0..<232")
        #expect(m2[248..<264].allSatisfy { $0 == 0 }, "mac2 zero")
        // The payload before encryption, byte by byte (docs/PROTOCOL.md, "Message 2: response").
        let expected: [UInt8] =
            [0, 1, 10, 8, 0, 2, 16, 10, 8, 0, 1]
            + [0xfd, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2] + [64]
            + [0xfd, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1]
            + [UInt8](repeating: 0, count: 128)  // no DNS pushed: a zero DNS block
        #expect(dual.responsePayload == expected)
        #expect(TunnelAssignment(responsePayload: expected) == dual)
        var none = TunnelAssignment(client: dual.client, server: dual.server).responsePayload
        #expect(none[11..<44].allSatisfy { $0 == 0 } && none[1] == 0, "length 0: no IPv6, every IPv6 byte zero")
        none[20] = 1
        #expect(TunnelAssignment(responsePayload: none) == nil, "IPv6 bytes with length 0 are malformed")
        var wide = expected
        wide[27] = 129
        #expect(TunnelAssignment(responsePayload: wide) == nil)
    }

    @Test func version1And2InitiationsAreRefusedByNameAfterTheUsualChecks() throws {
        let (m1, _) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let responder = f.responder()
        // Versions 1 and 2 sent 160 bytes: mac1 at 128, mac2 at 144 (docs/PROTOCOL.md, "Versions").
        var v1 = Array(m1[0..<128]) + [UInt8](repeating: 0, count: 32)
        v1[1] = 0
        expectFailure(.corrupted, { try responder.precheckInitiation(v1) }, "mac1 no longer matches: still corrupted")
        remac(&v1, for: f.server.publicKey)
        expectFailure(.unsupportedVersion(""), { try responder.precheckInitiation(v1) })
        expectFailure(.unsupportedVersion(""), { _ = try f.consume(responder, v1) })
        #expect(
            "\(HandshakeFailure.unsupportedVersion(initiation: 0))"
                == "protocol version 1 (this server speaks version 3; upgrade the client)")
        var v2 = v1
        v2[1] = 2
        remac(&v2, for: f.server.publicKey)
        expectFailure(.unsupportedVersion(""), { try responder.precheckInitiation(v2) })
        #expect(
            "\(HandshakeFailure.unsupportedVersion(initiation: 2))"
                == "protocol version 2 (this server speaks version 3; upgrade the client)")
        // A 160-byte message claiming version 3 is no message of any version.
        var short3 = v1
        short3[1] = 3
        remac(&short3, for: f.server.publicKey)
        expectFailure(.malformed, { try responder.precheckInitiation(short3) })
        // A message of this length with another version byte (a later version) is refused by name too.
        var v4 = m1
        v4[1] = 4
        remac(&v4, for: f.server.publicKey)
        expectFailure(.unsupportedVersion(""), { try responder.precheckInitiation(v4) })
        // Junk keeps its reason: a wrong key ID is still wrongServerKey, a non-zero byte 2 malformed.
        var junk = v1
        junk[8] ^= 1
        expectFailure(.wrongServerKey, { try responder.precheckInitiation(junk) })
        junk = m1
        junk[2] = 1
        remac(&junk, for: f.server.publicKey)
        expectFailure(.malformed, { try responder.precheckInitiation(junk) })
        // The server core refuses it, counts it under its name and sends nothing.
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.server.handleHandshake(v1, from: pair.clientEndpoint, now: pair.now, wall: pair.wall, random: f.random, actions: &actions)
        #expect(actions.count == 1)
        guard case .handshakeRefused(let reason, _) = actions.first else { Issue.record("no refusal"); return }
        #expect(reason.name == "unsupportedVersion")
        #expect(HandshakeFailure.allCases.contains(.unsupportedVersion("")))
    }

    @Test func aResponseOfAnotherVersionIsRefusedByTheClient() throws {
        let initiator = f.initiator()
        let (m1, sent) = initiator.createInitiation(senderIndex: 7, timestamp: f.t1, random: f.random)
        let (m2, _) = f.responder().createResponse(to: try f.consume(f.responder(), m1), senderIndex: 8, assignment: dual)
        var other = m2
        other[1] = 4
        expectFailure(.corrupted, { _ = try initiator.consumeResponse(other, for: sent) })
        remac(&other, for: f.client.publicKey)
        expectFailure(.unsupportedVersion(""), { _ = try initiator.consumeResponse(other, for: sent) })
        // A version-1-shaped response (102 bytes, byte 1 zero) answering our initiation.
        var v1 = Array(m2[0..<70]) + [UInt8](repeating: 0, count: 32)
        v1[1] = 0
        remac(&v1, for: f.client.publicKey)
        #expect(v1.count == 102)
        expectFailure(.unsupportedVersion(""), { _ = try initiator.consumeResponse(v1, for: sent) })
        #expect(
            "\(HandshakeFailure.unsupportedVersion(response: 0))"
                == "protocol version 1 (this client speaks version 3; run the same tunvpn version on client and server)")
        // A version-2-shaped response (136 bytes, byte 1 = 2).
        var v2 = Array(m2[0..<104]) + [UInt8](repeating: 0, count: 32)
        v2[1] = 2
        remac(&v2, for: f.client.publicKey)
        expectFailure(.unsupportedVersion(""), { _ = try initiator.consumeResponse(v2, for: sent) })
        #expect(
            "\(HandshakeFailure.unsupportedVersion(response: 2))"
                == "protocol version 2 (this client speaks version 3; run the same tunvpn version on client and server)")
        v1[8] ^= 1
        expectFailure(.unexpectedResponse, { _ = try initiator.consumeResponse(v1, for: sent) })
        // The genuine response still works afterwards: refusals leave the handshake in flight.
        #expect(try initiator.consumeResponse(m2, for: sent).assignment == dual)
    }

    @Test func theServerCoreAssignsBothFamiliesAndTheClientConfiguresThem() {
        var pair = dualStackPair()
        pair.start()
        #expect(pair.tunnelUps == [TunnelAssignment(
            client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address(10, 8, 0, 1),
            client6: IPv6Prefix("fd00:1:2:3::2/64")!, server6: v6("fd00:1:2:3::1"), ipv6Egress: true)])
        #expect(pair.server.peer(withKey: pair.f.client.publicKey)?.address6 == v6("fd00:1:2:3::2"))
        #expect(pair.server.addressOwnershipViolation() == nil)
        // Without egress the flag is clear; with --no-ipv6 on the client, IPv6 is not configured at all.
        var noEgress = dualStackPair(egress: false)
        noEgress.start()
        #expect(noEgress.tunnelUps.first?.ipv6Egress == false && noEgress.tunnelUps.first?.client6 != nil)
        var disabled = dualStackPair(ipv6Disabled: true)
        disabled.start()
        #expect(disabled.tunnelUps == [TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address(10, 8, 0, 1))])
        // A server whose tunnel carries no IPv6 sends none.
        var v4only = dualStackPair(address6: nil)
        v4only.start()
        #expect(v4only.tunnelUps.first?.client6 == nil)
    }

    @Test func theDefaultTunnelPrefixIsAStableUniqueLocalSlash64PerServerKey() {
        let a = IPv6Prefix.defaultTunnelPrefix(serverKey: f.server.publicKey)
        #expect(a == IPv6Prefix.defaultTunnelPrefix(serverKey: f.server.publicKey))
        #expect(a.length == 64 && a.address.low == 1 && a.address.high >> 56 == 0xfd && a.address.high & 0xffff == 0)
        var digest = [UInt8](repeating: 0, count: 32)
        (Array("ula-----".utf8) + f.server.publicKey.bytes).withUnsafeBytes { input in
            digest.withUnsafeMutableBytes { Blake2b.hash([input], into: $0) }
        }
        #expect(Array(a.address.networkBytes[1..<6]) == Array(digest[0..<5]), "Global ID = BLAKE2b-256(\"ula-----\" ‖ key)[0..<5]")
        let b = IPv6Prefix.defaultTunnelPrefix(serverKey: f.client.publicKey)
        #expect(b != a && b.address.high >> 56 == 0xfd)
    }
}

@Suite struct DualStackAllowListTests {
    let a = PrivateKey(random: HashRandom(seed: 5)).publicKey
    let b = PrivateKey(random: HashRandom(seed: 6)).publicKey

    @Test func linesTakeAnIPv4AndAnIPv6AddressInEitherOrder() throws {
        let list = try AllowList(parsing: "\(a.base64) 10.8.0.7 fd00::7  # laptop\n\(b.base64) fd00::8/128 10.8.0.8/32\n")
        #expect(list.clients == [
            AllowedClient(key: a, address: IPv4Address(10, 8, 0, 7), address6: v6("fd00::7"), comment: "laptop"),
            AllowedClient(key: b, address: IPv4Address(10, 8, 0, 8), address6: v6("fd00::8")),
        ])
        #expect(list.clients.map(\.line) == [1, 2])
        #expect(try AllowList(parsing: list.text) == list)
        let only6 = try AllowList(parsing: "\(a.base64) fd00::9")
        #expect(only6.clients == [AllowedClient(key: a, address6: v6("fd00::9"))])
    }

    @Test func badLinesAreNamed() {
        #expect(throws: AllowListError(line: 1, message: "two IPv6 addresses (fd00::7 and fd00::8); give at most one of each family")) {
            try AllowList(parsing: "\(a.base64) fd00::7 fd00::8")
        }
        #expect(throws: AllowListError(line: 2, message: "two IPv4 addresses (10.8.0.7 and 10.8.0.8); give at most one of each family")) {
            try AllowList(parsing: "\(b.base64)\n\(a.base64) 10.8.0.7 10.8.0.8")
        }
        #expect(throws: AllowListError(line: 1, message: "'fd00::zz' is not an IPv6 address (e.g. fd00::7)")) {
            try AllowList(parsing: "\(a.base64) fd00::zz")
        }
        #expect(throws: AllowListError(line: 2, message: "address fd00::7 is given to two clients")) {
            try AllowList(parsing: "\(a.base64) fd00::7\n\(b.base64) fd00::7")
        }
        // A line may hold more than three fields (prefixes routed behind the client), but still at most one
        // tunnel address of each family.
        #expect(throws: AllowListError(line: 1, message: "two IPv6 addresses (fd00::7 and fd00::8); give at most one of each family")) {
            try AllowList(parsing: "\(a.base64) 10.8.0.7 fd00::7 fd00::8")
        }
    }

    @Test func addressesOutsideTheirFamilysPrefixAreNamedWithTheirLine() throws {
        let v4 = IPv4Prefix("10.8.0.1/16")!
        let list = try AllowList(parsing: "\(a.base64) 10.8.0.7\n\(b.base64) fd00:1:2:3::9 10.8.0.9")
        #expect(list.outOfPrefix(v4, ula) == nil)
        #expect(list.outOfPrefix(v4, IPv6Prefix("fd00:9::1/64")!) == AllowListError(
            line: 2, message: "address fd00:1:2:3::9 for \(b.base64) is not a client address in fd00:9::1/64"))
        #expect(list.outOfPrefix(v4, nil) == AllowListError(
            line: 2,
            message: "IPv6 address fd00:1:2:3::9 for \(b.base64), but the server's tunnel carries no IPv6 (--no-ipv6); remove it or drop --no-ipv6"))
        let server = try AllowList(parsing: "\(a.base64) fd00:1:2:3::1")
        #expect(server.outOfPrefix(v4, ula)?.message == "address fd00:1:2:3::1 for \(a.base64) is not a client address in \(ula)")
        let network = try AllowList(parsing: "\(a.base64) fd00:1:2:3::")
        #expect(network.outOfPrefix(v4, ula) != nil, "the subnet-router anycast address")
        let outside4 = try AllowList(parsing: "\(a.base64) 10.9.0.7")
        #expect(outside4.outOfPrefix(v4, ula)?.line == 1)
    }
}

@Suite struct DualStackPoolTests {
    @Test func aClientDrawsFromThePoolOfEachFamilyTheListDoesNotFix() {
        let fixed = PrivateKey(random: HashRandom(seed: 140))
        // The server's own address is ::3 here, so the pool (from network + 2) skips it.
        var server = dualStackPair(
            address6: IPv6Prefix("fd00:1:2:3::3/64")!,
            allowList: AllowList(clients: [AllowedClient(key: fixed.publicKey, address6: v6("fd00:1:2:3::2"))]),
            allowAnyClient: true
        ).server
        var assigned: [TunnelAssignment] = []
        for seed in [UInt8(140), 141, 142] {
            var pair = CorePair(clientKey: PrivateKey(random: HashRandom(seed: seed)))
            pair.server = server
            pair.start()
            server = pair.server
            assigned += pair.tunnelUps
        }
        #expect(assigned.map(\.client.address) == [IPv4Address(10, 8, 0, 2), IPv4Address(10, 8, 0, 3), IPv4Address(10, 8, 0, 4)])
        #expect(assigned.map { $0.client6?.address } == [v6("fd00:1:2:3::2"), v6("fd00:1:2:3::4"), v6("fd00:1:2:3::5")])
        #expect(assigned.allSatisfy { $0.server6 == v6("fd00:1:2:3::3") && $0.client6?.length == 64 })
        #expect(server.addressOwnershipViolation() == nil)
    }

    @Test func anEmptyIPv6PoolRefusesTheClientAsAddressPoolExhausted() {
        // A /126 has network + 2 and network + 3 for clients (network + 1 is the server). (Clients refuse
        // a prefix longer than /120; the server's pool does not care, and a small one shows the refusal.)
        var server = dualStackPair(address6: IPv6Prefix("fd00::1/126")!, allowList: AllowList(), allowAnyClient: true).server
        var admitted: [IPv6Address?] = []
        var refused: [HandshakeFailure] = []
        for seed in UInt8(150)..<UInt8(153) {
            let key = PrivateKey(random: HashRandom(seed: seed))
            var pair = CorePair(clientKey: key)
            pair.server = server
            pair.start()
            server = pair.server
            if let peer = server.peer(withKey: key.publicKey) { admitted.append(peer.address6) }
            refused += pair.refusals.filter { $0 != .unsafeAssignment("") }
        }
        #expect(admitted == [v6("fd00::2"), v6("fd00::3")])
        #expect(refused == [.addressPoolExhausted], "plenty of IPv4 addresses are left; the IPv6 pool is empty")
        #expect(server.peers.count == 2, "a refused key does not become a peer")
        #expect(server.addressOwnershipViolation() == nil)
    }

    @Test func aReloadEvictsTheHolderOfAnIPv6AddressAndKeepsItsIPv4One() {
        var fleet = Fleet([AllowedClient(key: keyB.publicKey)])
        fleet.server = dualStackPair(allowList: AllowList(clients: [AllowedClient(key: keyB.publicKey)])).server
        fleet.connect(keyB)
        #expect(fleet.pairs[keyB.publicKey]?.tunnelUps.first?.client6?.address == v6("fd00:1:2:3::2"))
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address6: v6("fd00:1:2:3::2")),
        ]))
        #expect(change == AllowListChange(added: 1, evicted: [.init(address: v6("fd00:1:2:3::2"), key: keyB.publicKey)]))
        #expect(change.description == "1 added, 0 removed, 0 readdressed, 1 evicted (fd00:1:2:3::2 from \(keyB.publicKey.base64))")
        #expect(fleet.server.addressOwnershipViolation() == nil)
        let b = fleet.server.peer(withKey: keyB.publicKey)
        #expect(b?.sessions.isEmpty == true && b?.address6 == nil && b?.address == ip(2), "B keeps its IPv4 address")
        fleet.connect(keyA)
        #expect(fleet.pairs[keyA.publicKey]?.tunnelUps.first?.client6?.address == v6("fd00:1:2:3::2"))
        #expect(fleet.pairs[keyA.publicKey]?.tunnelUps.first?.client.address == ip(3))
        // B reconnects with its IPv4 address and a fresh IPv6 one; the client sees the change.
        fleet.reconnect(keyB, from: ip(2))
        #expect(fleet.server.peer(withKey: keyB.publicKey)?.address6 == v6("fd00:1:2:3::3"))
        #expect(fleet.pairs[keyB.publicKey]?.addressChanges.last?.client6?.address == v6("fd00:1:2:3::3"))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        // A changed fixed IPv6 address is a readdress.
        let again = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address6: v6("fd00:1:2:3::9")),
        ]))
        #expect(again == AllowListChange(readdressed: 1))
        #expect(fleet.server.peer(withKey: keyA.publicKey)?.address6 == v6("fd00:1:2:3::9"))
        #expect(fleet.server.peer(withKey: keyA.publicKey)?.address == ip(3))
        #expect(fleet.server.addressOwnershipViolation() == nil)
    }
}

@Suite struct DualStackBoundsTests {
    let endpoint = Endpoint(address: v6("2001:db8:ffff::1"), port: 51820)

    func assignment(_ client6: String, server6: String) -> TunnelAssignment {
        TunnelAssignment(
            client: IPv4Prefix("10.8.0.2/16")!, server: IPv4Address(10, 8, 0, 1), client6: IPv6Prefix(client6)!,
            server6: v6(server6), ipv6Egress: true)
    }

    @Test func ipv6AssignmentsOutsideTheBoundsAreRefused() {
        let bounds = AssignmentBounds(
            localNetworks6: [.init(IPv6Prefix("2001:db8:1::/64")!, name: "the local network 2001:db8:1::/64 on eth0")],
            routes6: [IPv6Prefix("fd00:5:0:1::/64")!])
        func check(_ a: TunnelAssignment) -> String? { bounds.violation(of: a, endpoint: endpoint) }
        #expect(check(assignment("fd00:1:2:3::2/64", server6: "fd00:1:2:3::1")) == nil)
        #expect(check(assignment("fd00:1:2:3::2/120", server6: "fd00:1:2:3::1")) == nil)
        #expect(check(assignment("fd00:1:2:3::2/48", server6: "fd00:1:2:3::1")) == "fd00:1:2:3::2/48 is not a /64 to /120 prefix")
        #expect(check(assignment("fd00:1:2:3::2/124", server6: "fd00:1:2:3::1")) == "fd00:1:2:3::2/124 is not a /64 to /120 prefix")
        #expect(check(assignment("fd00:1:2:3::2/64", server6: "fd00:9::1")) == "the server's fd00:9::1 is outside fd00:1:2:3::/64")
        #expect(check(assignment("fd00:1:2:3::1/64", server6: "fd00:1:2:3::1")) == "fd00:1:2:3::1 is the server's own address")
        #expect(check(assignment("fe80::2/64", server6: "fe80::1")) == "fe80::/64 is link-local (fe80::/10)")
        #expect(check(assignment("ff02::2/64", server6: "ff02::1")) == "ff02::/64 is multicast (ff00::/8)")
        #expect(check(assignment("::2/120", server6: "::1")) == "::/120 is reserved (::/8)")
        #expect(check(assignment("::ffff:10.0.0.2/120", server6: "::ffff:10.0.0.1")) == "::ffff:10.0.0.0/120 is IPv4-mapped (::ffff:0:0/96)")
        #expect(check(assignment("2001:db8:ffff::2/64", server6: "2001:db8:ffff::3")) == "2001:db8:ffff::/64 contains the server's endpoint 2001:db8:ffff::1")
        #expect(check(assignment("2001:db8:1::2/64", server6: "2001:db8:1::1")) == "2001:db8:1::/64 overlaps the local network 2001:db8:1::/64 on eth0")
        #expect(check(assignment("fd00:5::2/64", server6: "fd00:5::1")) == nil, "beside the route")
        #expect(check(assignment("fd00:5:0:1::2/64", server6: "fd00:5:0:1::1")) == nil, "equal to the route")
        #expect(check(assignment("fd00:5:0:1:1::2/80", server6: "fd00:5:0:1:1::1")) == nil, "inside the route")
        // An IPv4 endpoint is no concern of the IPv6 prefix.
        #expect(bounds.violation(of: assignment("2001:db8:ffff::2/64", server6: "2001:db8:ffff::3"), endpoint: Endpoint(address: IPv4Address(192, 0, 2, 1), port: 1)) == nil)
    }

    @Test func anUnsafeIPv6AssignmentIsRefusedByTheClientCoreAndCounted() {
        var pair = dualStackPair(
            address6: IPv6Prefix("fe80::1/64")!,
            bounds: AssignmentBounds())
        pair.start()
        #expect(pair.tunnelUps.isEmpty)
        #expect(pair.refusals.map(\.name) == ["unsafeAssignment"])
        #expect("\(pair.refusals[0])".contains("fe80::/64 is link-local (fe80::/10)"))
        // The same server prefix is no concern of a client that configures no IPv6.
        var disabled = dualStackPair(address6: IPv6Prefix("fe80::1/64")!, ipv6Disabled: true)
        disabled.start()
        #expect(disabled.tunnelUps.count == 1 && disabled.refusals.isEmpty)
    }
}

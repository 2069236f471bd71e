// Allowed IPs (docs/PROTOCOL.md, "Allowed IPs"): the allow-list grammar of tunnel addresses and prefixes
// routed behind a client, and the server core's cryptokey routing by longest prefix match, its
// inner-source check and reloads.

import Crypto
import Testing

@testable import Transport

private func p(_ text: String) -> IPPrefix { IPPrefix(text)! }

@Suite struct AllowListRoutedPrefixTests {
    let a = PrivateKey(random: HashRandom(seed: 5)).publicKey
    let b = PrivateKey(random: HashRandom(seed: 6)).publicKey
    let v4 = IPv4Prefix("10.8.0.1/16")!
    let v6 = IPv6Prefix("fd00:8::1/64")!

    @Test func commasAndSpacesSeparateAddressesAndPrefixes() throws {
        let wireGuardStyle = try AllowList(
            parsing: "\(a.base64) 10.8.0.5/32,fd00:8::5/128,192.168.50.0/24 # office\n", prefix: v4, prefix6: v6)
        let spaced = try AllowList(parsing: "\(a.base64) 10.8.0.5 fd00:8::5 192.168.50.0/24 # office\n", prefix: v4, prefix6: v6)
        let expected = AllowedClient(
            key: a, address: IPv4Address(10, 8, 0, 5), address6: IPv6Address("fd00:8::5"), routed: [p("192.168.50.0/24")],
            comment: "office")
        #expect(wireGuardStyle.clients == [expected])
        #expect(spaced == wireGuardStyle)
        #expect(try AllowList(parsing: "\(a.base64) 10.8.0.5 , 192.168.50.0/24,fd00:50::/64", prefix: v4, prefix6: v6).clients.first?.routed
            == [p("192.168.50.0/24"), p("fd00:50::/64")])
        #expect(try AllowList(parsing: spaced.text, prefix: v4, prefix6: v6) == spaced, "the text form reads back")
        #expect(spaced.outOfPrefix(v4, v6) == nil)
        #expect(spaced.routedPrefixes == [p("192.168.50.0/24")])
    }

    @Test func hostPrefixesOutsideTheTunnelPrefixAreRoutedWhenThePrefixesAreKnown() throws {
        let line = "\(a.base64) 192.168.50.7/32 10.8.0.5/32 fd00:50::7/128"
        let known = try AllowList(parsing: line, prefix: v4, prefix6: v6)
        #expect(known.clients.first?.address == IPv4Address(10, 8, 0, 5))
        #expect(known.clients.first?.address6 == nil)
        #expect(known.clients.first?.routed == [p("192.168.50.7/32"), p("fd00:50::7/128")])
        // Without the server's prefixes, the first host prefix of a family is the tunnel address.
        let unknown = try AllowList(parsing: line)
        #expect(unknown.clients.first?.address == IPv4Address(192, 168, 50, 7))
        #expect(unknown.clients.first?.address6 == IPv6Address("fd00:50::7"))
        #expect(unknown.clients.first?.routed == [p("10.8.0.5/32")])
        // A bare address is the tunnel address wherever it stands on the line.
        let bare = try AllowList(parsing: "\(a.base64) 192.168.50.7/32 10.8.0.5 fd00:50::7/128")
        #expect(bare.clients.first?.address == IPv4Address(10, 8, 0, 5))
        #expect(bare.clients.first?.address6 == IPv6Address("fd00:50::7"))
        #expect(bare.clients.first?.routed == [p("192.168.50.7/32")])
        #expect(try AllowList(parsing: bare.text) == bare)
    }

    @Test func badPrefixesAreOneLineErrorsNamingTheLineAndAnExample() throws {
        #expect(throws: AllowListError(line: 2, message: "prefix 192.168.50.1/24 has host bits set; give its network, e.g. 192.168.50.0/24")) {
            try AllowList(parsing: "\(b.base64)\n\(a.base64) 10.8.0.5 192.168.50.1/24")
        }
        #expect(throws: AllowListError(
            line: 2,
            message: "prefix 192.168.50.0/24 is already routed behind the client of line 1; a prefix goes behind one client, e.g. remove it from one of the lines")
        ) {
            try AllowList(parsing: "\(b.base64) 192.168.50.0/24\n\(a.base64) 10.8.0.5 192.168.50.0/24")
        }
        #expect(throws: AllowListError(line: 1, message: "prefix fd00:50::/64 is given twice; give it once")) {
            try AllowList(parsing: "\(a.base64) fd00:50::/64,fd00:50::/64")
        }
        #expect(throws: AllowListError(
            line: 1, message: "'192.168.50.0/33' is not an address or prefix (e.g. 10.8.0.7, 192.168.50.0/24 or fd00:50::/64)")
        ) {
            try AllowList(parsing: "\(a.base64) 192.168.50.0/33")
        }
        let overlapping = try AllowList(parsing: "\(b.base64)\n\(a.base64) 10.8.0.5 10.8.4.0/24")
        #expect(overlapping.outOfPrefix(v4, v6) == AllowListError(
            line: 2,
            message: "routed prefix 10.8.4.0/24 for \(a.base64) overlaps the tunnel prefix 10.8.0.1/16; route only networks outside it, e.g. 192.168.50.0/24"))
        let containing = try AllowList(parsing: "\(a.base64) 10.0.0.0/8")
        #expect(containing.outOfPrefix(v4, v6)?.message.contains("overlaps the tunnel prefix 10.8.0.1/16") == true)
        let overlapping6 = try AllowList(parsing: "\(a.base64) fd00:8::/48")
        #expect(overlapping6.outOfPrefix(v4, v6) == AllowListError(
            line: 1,
            message: "routed prefix fd00:8::/48 for \(a.base64) overlaps the tunnel prefix fd00:8::1/64; route only networks outside it, e.g. fd00:50::/64"))
        #expect(try AllowList(parsing: "\(a.base64) fd00:50::/64").outOfPrefix(v4, nil)?.message
            == "IPv6 prefix fd00:50::/64 for \(a.base64), but the server's tunnel carries no IPv6 (--no-ipv6); remove it or drop --no-ipv6")
        for text in ["\(a.base64) 10.8.0.5 192.168.50.1/24", "\(a.base64) 1.2.3.0/24 1.2.3.0/24"] {
            do { _ = try AllowList(parsing: text) } catch { #expect(!"\(error)".contains("\n")) }
        }
    }
}

@Suite struct TunnelStateRoutedPrefixTests {
    /// A's line routes 192.168.0.0/16, B's the longer 192.168.50.0/24 inside it.
    func fleet() -> Fleet {
        var fleet = Fleet([
            AllowedClient(key: keyA.publicKey, address: ip(5), routed: [p("192.168.0.0/16")]),
            AllowedClient(key: keyB.publicKey, address: ip(6), routed: [p("192.168.50.0/24")]),
        ])
        fleet.connect(keyA)
        fleet.connect(keyB)
        return fleet
    }

    @Test func destinationsGoToTheLongestRoutedPrefixAfterTunnelAddresses() {
        var fleet = fleet()
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.serverSendsTo(IPv4Address(192, 168, 50, 2), via: keyB) == keyB.publicKey)
        #expect(fleet.pairs[keyB.publicKey]?.deliveredToClient.last == ipv4(IPv4Address(1, 1, 1, 1), IPv4Address(192, 168, 50, 2)))
        #expect(fleet.serverSendsTo(IPv4Address(192, 168, 7, 1), via: keyA) == keyA.publicKey)
        #expect(fleet.serverSendsTo(ip(6), via: keyB) == keyB.publicKey)
        let nowhere = fleet.on(keyA) { $0.serverSends(ipv4(serverIP, IPv4Address(172, 16, 0, 1))) }
        guard case .drop(.noRoute) = nowhere else {
            Issue.record("172.16.0.1 is routed nowhere, got \(nowhere)")
            return
        }
        // Slots: A is 0, B is 1.
        #expect(fleet.server.routedPeer(for: .v4(IPv4Address(192, 168, 50, 9))) == 1)
        #expect(fleet.server.routedPeer(for: .v4(IPv4Address(192, 168, 51, 9))) == 0)
        #expect(fleet.server.routedPrefixes(ofPeer: 0) == [p("192.168.0.0/16")])
        #expect(fleet.server.routedPrefixes(ofPeer: 1) == [p("192.168.50.0/24")])
    }

    @Test func aClientMaySendFromItsAddressAndWhatItsLongestRoutedPrefixesHoldOnly() {
        var fleet = fleet()
        fleet.on(keyA) { pair in
            pair.drops = []
            pair.clientSends(ipv4(IPv4Address(192, 168, 7, 1), serverIP))
            #expect(pair.deliveredToServer.last == ipv4(IPv4Address(192, 168, 7, 1), serverIP))
            pair.clientSends(ipv4(ip(5), serverIP))
            #expect(pair.deliveredToServer.last == ipv4(ip(5), serverIP))
            #expect(pair.drops.isEmpty)
            let delivered = pair.deliveredToServer.count
            // B's longer prefix, B's address, and a prefix nobody routes: all refused from A.
            for source in [IPv4Address(192, 168, 50, 9), ip(6), IPv4Address(172, 16, 0, 1)] {
                pair.clientSends(ipv4(source, serverIP))
            }
            #expect(pair.drops == [.sourceNotAllowed, .sourceNotAllowed, .sourceNotAllowed])
            #expect(pair.deliveredToServer.count == delivered)
        }
        fleet.on(keyB) { pair in
            pair.drops = []
            pair.clientSends(ipv4(IPv4Address(192, 168, 50, 9), serverIP))
            #expect(pair.drops.isEmpty && pair.deliveredToServer.last == ipv4(IPv4Address(192, 168, 50, 9), serverIP))
        }
    }

    @Test func aReloadMovesRoutedPrefixesAndRemovedKeysLoseTheirs() {
        var fleet = fleet()
        // B leaves; its prefix moves to A, which also gains 172.16.0.0/12; A keeps its session.
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyA.publicKey, address: ip(5), routed: [p("192.168.0.0/16"), p("192.168.50.0/24"), p("172.16.0.0/12")])
        ]))
        #expect(change == AllowListChange(removed: 1))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.serverSendsTo(IPv4Address(192, 168, 50, 2), via: keyA) == keyA.publicKey)
        #expect(fleet.serverSendsTo(IPv4Address(172, 16, 3, 4), via: keyA) == keyA.publicKey)
        fleet.on(keyA) { pair in
            pair.drops = []
            pair.clientSends(ipv4(IPv4Address(192, 168, 50, 9), serverIP))
            #expect(pair.drops.isEmpty, "A may send from the prefix it gained")
        }
        // A new key takes 172.16.0.0/12; A loses it; nothing stale is left behind.
        _ = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyA.publicKey, address: ip(5), routed: [p("192.168.0.0/16")]),
            AllowedClient(key: keyC.publicKey, routed: [p("172.16.0.0/12")]),
        ]))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        fleet.on(keyA) { pair in
            pair.drops = []
            pair.clientSends(ipv4(IPv4Address(172, 16, 3, 4), serverIP))
            #expect(pair.drops == [.sourceNotAllowed])
        }
        let removedB = fleet.server.peer(withKey: keyB.publicKey)
        #expect(removedB == nil)
        #expect(fleet.server.routedPeer(for: .v4(IPv4Address(192, 168, 50, 2))) == 0, "B's prefix is gone; A's shorter one holds it")
        fleet.connect(keyC)
        #expect(fleet.serverSendsTo(IPv4Address(172, 16, 3, 4), via: keyC) == keyC.publicKey)
    }

    @Test func aRoutedPrefixNeverTakesAnotherPeersTunnelAddress() {
        // Built in code (the file's check refuses a routed prefix overlapping the tunnel prefix): A's
        // 10.8.0.0/24 holds B's address, which still goes to B, and A may not send from it.
        var fleet = Fleet([
            AllowedClient(key: keyA.publicKey, address: ip(5), routed: [p("10.8.0.0/24")]),
            AllowedClient(key: keyB.publicKey, address: ip(6)),
        ])
        fleet.connect(keyA)
        fleet.connect(keyB)
        #expect(fleet.serverSendsTo(ip(6), via: keyB) == keyB.publicKey)
        #expect(fleet.serverSendsTo(ip(9), via: keyA) == keyA.publicKey)
        fleet.on(keyA) { pair in
            pair.drops = []
            pair.clientSends(ipv4(ip(9), serverIP))
            #expect(pair.drops.isEmpty)
            pair.clientSends(ipv4(ip(6), serverIP))
            #expect(pair.drops == [.sourceNotAllowed])
        }
    }

    @Test func ipv6PrefixesRouteOnADualStackServerAndAreIgnoredWithoutIPv6() {
        let key = Fixture().client
        let list = AllowList(clients: [AllowedClient(key: key.publicKey, routed: [p("fd00:50::/64"), p("192.168.50.0/24")])])
        var pair = dualStackPair(allowList: list)
        pair.start()
        let lanHost = IPv6Address("fd00:50::2")!
        let server6 = ula.address
        guard case .send = pair.serverSends(ipv6(server6, lanHost)) else {
            Issue.record("fd00:50::2 goes to the client")
            return
        }
        #expect(pair.deliveredToClient.last == ipv6(server6, lanHost))
        pair.drops = []
        pair.clientSends(ipv6(lanHost, server6))
        #expect(pair.drops.isEmpty && pair.deliveredToServer.last == ipv6(lanHost, server6))
        pair.clientSends(ipv6(IPv6Address("fd00:51::2")!, server6))
        #expect(pair.drops == [.sourceNotAllowed])
        let noIPv6 = dualStackPair(address6: nil, allowList: list)
        #expect(noIPv6.server.routedPeer(for: .v6(lanHost)) == nil)
        #expect(noIPv6.server.routedPeer(for: .v4(IPv4Address(192, 168, 50, 2))) == 0)
    }
}

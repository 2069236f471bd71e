// Reloading the server's allow-list: staying clients keep their sessions, removed ones lose them, and a
// tunnel address always has exactly one owner, whose sessions are the only ones that send to it and may
// send from it. A fixed address the new list gives to a key is taken from whoever held it (eviction).

import Crypto
import Testing

@testable import Transport

/// Several clients on one server core. Each client is a `CorePair` that carries the shared server (and
/// the shared clock) while it is in use.
struct Fleet {
    var server: TunnelState
    var pairs: [PublicKey: CorePair] = [:]
    var now: UInt64 = 1_000 * second
    var wall = WallTime(seconds: 1_700_000_000, nanoseconds: 0)

    init(_ clients: [AllowedClient]) { server = CorePair(allowList: AllowList(clients: clients)).server }

    /// Runs `body` on `key`'s client, joined to the shared server.
    @discardableResult
    mutating func on<R>(_ key: PrivateKey, _ body: (inout CorePair) -> R) -> R {
        var pair = pairs[key.publicKey] ?? {
            var p = CorePair(clientKey: key)
            p.clientEndpoint = Endpoint(address: IPv4Address(10, 99, 1, UInt8(pairs.count + 2)), port: 40000)
            return p
        }()
        pair.server = server
        pair.now = now
        pair.wall = wall
        let result = body(&pair)
        server = pair.server
        now = pair.now
        wall = pair.wall
        pairs[key.publicKey] = pair
        return result
    }

    /// The client's first handshake.
    mutating func connect(_ key: PrivateKey) { on(key) { $0.start() } }

    /// A client whose server-side session is gone notices after 15 s of sending unanswered and handshakes again.
    mutating func reconnect(_ key: PrivateKey, from source: IPv4Address) {
        on(key) { pair in
            pair.clientSends(ipv4(source, serverIP))
            pair.advance(16)
            pair.tickBoth()
        }
    }

    /// The server's record of `key`'s tunnel address.
    func address(of key: PrivateKey) -> IPv4Address? { server.peer(withKey: key.publicKey)?.address }

    /// Which peer's session the server seals a packet for `destination` with, if any.
    mutating func serverSendsTo(_ destination: IPv4Address, via key: PrivateKey) -> PublicKey? {
        on(key) { pair in
            if case .send(let session, _, _) = pair.serverSends(ipv4(IPv4Address(1, 1, 1, 1), destination)) { return session.peerKey }
            return nil
        }
    }
}

let keyA = PrivateKey(random: HashRandom(seed: 91))
let keyB = Fixture().client
let keyC = PrivateKey(random: HashRandom(seed: 92))

func ip(_ last: UInt8) -> IPv4Address { IPv4Address(10, 8, 0, last) }

@Suite struct ReloadTests {
    @Test func reloadingTheAllowListKeepsStayingClientsAndDropsRemovedOnes() throws {
        let other = PrivateKey(random: HashRandom(seed: 77))
        var a = CorePair(allowList: AllowList(clients: [AllowedClient(key: Fixture().client.publicKey), AllowedClient(key: other.publicKey)]))
        a.start()
        var b = CorePair(clientKey: other)
        b.server = a.server
        b.clientEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 3), port: 40001)
        b.start()
        a.server = b.server
        let sessionsBefore = a.server.liveSessionCount
        // Remove `other`, keep the fixture's client, add a new key.
        let newcomer = PrivateKey(random: HashRandom(seed: 78))
        let result = a.server.replaceAllowList(AllowList(clients: [AllowedClient(key: Fixture().client.publicKey), AllowedClient(key: newcomer.publicKey)]))
        #expect(result == AllowListChange(added: 1, removed: 1))
        #expect(a.server.liveSessionCount < sessionsBefore)
        // The staying client still reaches the server without a new handshake.
        let completions = a.completions
        a.clientSends(ipv4(clientIP, serverIP))
        #expect(a.deliveredToServer.last == ipv4(clientIP, serverIP))
        #expect(a.completions == completions)
        // The removed client's address no longer routes, and its next initiation is refused.
        #expect({ if case .drop(.noRoute) = a.serverSends(ipv4(serverIP, IPv4Address(10, 8, 0, 3))) { return true } else { return false } }())
        b.server = a.server
        b.refusals = []
        b.drops = []
        b.clientSends(ipv4(IPv4Address(10, 8, 0, 3), serverIP))
        #expect(b.drops == [.unknownSession], "its session is gone on the server")
        b.advance(16)  // data sent, nothing heard: the client starts a new handshake
        b.tickBoth()
        #expect(b.refusals.contains(.unknownClientKey))
        // The newcomer can connect.
        var c = CorePair(clientKey: newcomer)
        c.server = b.server
        c.start()
        #expect(c.tunnelUps.count == 1)
        // It gets the lowest free pool address: the one the removed client gave back.
        #expect(c.tunnelUps.first?.client.address == IPv4Address(10, 8, 0, 3))
    }

    /// The review's case: B took 10.8.0.2 from the pool; a reload gives 10.8.0.2 to a new key A.
    @Test func aFixedAddressGivenToANewKeyIsTakenFromThePoolClientThatHeldIt() {
        var fleet = Fleet([AllowedClient(key: keyB.publicKey)])
        fleet.connect(keyB)
        #expect(fleet.pairs[keyB.publicKey]?.tunnelUps.first?.client.address == ip(2))
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address: ip(2)),
        ]))
        #expect(change == AllowListChange(added: 1, evicted: [.init(address: ip(2), key: keyB.publicKey)]))
        #expect(change.description == "1 added, 0 removed, 0 readdressed, 1 evicted (10.8.0.2 from \(keyB.publicKey.base64))")
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.server.peer(withKey: keyB.publicKey)?.sessions.isEmpty == true, "the evicted client lost its sessions")
        #expect(fleet.address(of: keyB) == nil)
        fleet.connect(keyA)
        #expect(fleet.pairs[keyA.publicKey]?.tunnelUps.first?.client.address == ip(2))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        // Traffic for 10.8.0.2 is sealed to A, and reaches A.
        #expect(fleet.serverSendsTo(ip(2), via: keyA) == keyA.publicKey)
        #expect(fleet.pairs[keyA.publicKey]?.deliveredToClient.last == ipv4(IPv4Address(1, 1, 1, 1), ip(2)))
        // B can no longer send as 10.8.0.2: its session is gone, and after it reconnects it owns another address.
        let deliveredBefore = fleet.pairs[keyB.publicKey]?.deliveredToServer.count
        fleet.on(keyB) { $0.clientSends(ipv4(ip(2), IPv4Address(1, 1, 1, 1))) }
        #expect(fleet.pairs[keyB.publicKey]?.deliveredToServer.count == deliveredBefore)
        fleet.reconnect(keyB, from: ip(2))
        #expect(fleet.address(of: keyB) == ip(3), "a fresh pool address")
        #expect(fleet.server.addressOwnershipViolation() == nil)
        // B's core tells its engine to give the device the new address (the first tunnel-up stays the only one).
        #expect(fleet.pairs[keyB.publicKey]?.tunnelUps.map(\.client.address) == [ip(2)])
        #expect(fleet.pairs[keyB.publicKey]?.addressChanges.map(\.client.address) == [ip(3)])
        fleet.on(keyB) { pair in
            pair.drops = []
            pair.clientSends(ipv4(ip(2), IPv4Address(1, 1, 1, 1)))
            #expect(pair.drops == [.sourceNotAllowed], "B may not spoof A's address")
            pair.clientSends(ipv4(ip(3), IPv4Address(1, 1, 1, 1)))
            #expect(pair.deliveredToServer.last == ipv4(ip(3), IPv4Address(1, 1, 1, 1)))
        }
        // After a rekey B keeps its new address, and 10.8.0.2 still goes to A.
        fleet.on(keyB) { pair in
            let completions = pair.completions
            pair.advance(121)
            pair.clientSends(ipv4(ip(3), IPv4Address(1, 1, 1, 1)))
            #expect(pair.completions > completions, "rekeyed")
        }
        #expect(fleet.address(of: keyB) == ip(3))
        #expect(fleet.serverSendsTo(ip(2), via: keyA) == keyA.publicKey)
        #expect(fleet.serverSendsTo(ip(3), via: keyB) == keyB.publicKey)
        #expect(fleet.server.addressOwnershipViolation() == nil)
    }

    @Test func aLineThatLosesItsFixedAddressToAnotherKeyInOneEditIsEvicted() {
        var fleet = Fleet([AllowedClient(key: keyB.publicKey, address: ip(5))])
        fleet.connect(keyB)
        #expect(fleet.address(of: keyB) == ip(5))
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address: ip(5)),
        ]))
        #expect(change == AllowListChange(added: 1, evicted: [.init(address: ip(5), key: keyB.publicKey)]))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        fleet.connect(keyA)
        fleet.reconnect(keyB, from: ip(5))
        #expect(fleet.address(of: keyA) == ip(5))
        #expect(fleet.address(of: keyB) == ip(2))
        #expect(fleet.serverSendsTo(ip(5), via: keyA) == keyA.publicKey)
        #expect(fleet.server.addressOwnershipViolation() == nil)
    }

    @Test func movingAFixedAddressFromOneKeyToAnotherReaddressesOneAndEvictsTheOther() {
        var fleet = Fleet([AllowedClient(key: keyB.publicKey, address: ip(5)), AllowedClient(key: keyA.publicKey)])
        fleet.connect(keyB)
        fleet.connect(keyA)
        #expect(fleet.address(of: keyA) == ip(2))
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address: ip(5)),
        ]))
        #expect(change == AllowListChange(readdressed: 1, evicted: [.init(address: ip(5), key: keyB.publicKey)]))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.server.liveSessionCount == 0)
        fleet.reconnect(keyA, from: ip(2))
        fleet.reconnect(keyB, from: ip(5))
        #expect(fleet.address(of: keyA) == ip(5))
        #expect(fleet.address(of: keyB) == ip(2), "the address A gave back")
        #expect(fleet.serverSendsTo(ip(5), via: keyA) == keyA.publicKey)
        #expect(fleet.serverSendsTo(ip(2), via: keyB) == keyB.publicKey)
        #expect(fleet.server.addressOwnershipViolation() == nil)
    }

    @Test func twoKeysSwappingFixedAddressesAreTwoReaddressesAndNoEviction() {
        var fleet = Fleet([AllowedClient(key: keyA.publicKey, address: ip(5)), AllowedClient(key: keyB.publicKey, address: ip(6))])
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyA.publicKey, address: ip(6)), AllowedClient(key: keyB.publicKey, address: ip(5)),
        ]))
        #expect(change == AllowListChange(readdressed: 2))
        #expect(fleet.address(of: keyA) == ip(6) && fleet.address(of: keyB) == ip(5))
        #expect(fleet.server.addressOwnershipViolation() == nil)
    }

    /// The review's second variant: the new owner is removed again, and a third client draws from the pool.
    @Test func anAddressFreedByARemovedPeerIsNeverHandedOutWhileAnotherPeerUsesIt() {
        var fleet = Fleet([AllowedClient(key: keyB.publicKey)])
        fleet.connect(keyB)
        _ = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyA.publicKey, address: ip(2)),
        ]))
        fleet.connect(keyA)
        let change = fleet.server.replaceAllowList(AllowList(clients: [
            AllowedClient(key: keyB.publicKey), AllowedClient(key: keyC.publicKey),
        ]))
        #expect(change == AllowListChange(added: 1, removed: 1))
        #expect(fleet.server.addressOwnershipViolation() == nil)
        fleet.connect(keyC)
        fleet.reconnect(keyB, from: ip(2))
        let c = fleet.address(of: keyC)
        let b = fleet.address(of: keyB)
        #expect(c != nil && b != nil && c != b)
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.serverSendsTo(ip(2), via: keyC) == (c == ip(2) ? keyC.publicKey : keyB.publicKey))
    }

    @Test func aListBuiltInCodeWithOneAddressTwiceStillHasOneOwner() {
        let fleet = Fleet([AllowedClient(key: keyA.publicKey, address: ip(5)), AllowedClient(key: keyB.publicKey, address: ip(5))])
        #expect(fleet.server.addressOwnershipViolation() == nil)
        #expect(fleet.address(of: keyB) == ip(5) && fleet.address(of: keyA) == nil)
    }
}

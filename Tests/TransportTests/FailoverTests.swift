// A client core with two endpoints and two server cores with the same key, joined by an in-memory
// network where a server can be "down" (its datagrams are lost), under a manual clock: the client moves
// to the second server after `failoverAfter` of failed handshakes, probes the first while the second
// carries traffic, and moves back when a probe is answered; names re-resolved feed new addresses in.

import Crypto
import Testing

@testable import Transport

struct FailoverNet {
    let f = Fixture()
    var client: TunnelState
    var servers: [TunnelState]
    var up = [true, true]
    var endpoints = [
        Endpoint(address: IPv4Address(192, 0, 2, 1), port: 51820), Endpoint(address: IPv4Address(198, 51, 100, 1), port: 51820),
    ]
    let clientEndpoint = Endpoint(address: IPv4Address(203, 0, 113, 2), port: 40000)
    var now: UInt64 = 1_000 * second
    var wall = WallTime(seconds: 1_700_000_000, nanoseconds: 0)
    var switches: [EndpointSwitch] = []
    var attempted: [Int] = []
    /// Initiations that reached each server (while up), and packets each delivered to its TUN.
    var initiationsAt = [0, 0]
    var deliveredAt = [0, 0]
    var deliveredToClient = 0
    var tunnelUps = 0

    init(failoverAfter: UInt64 = 15, probeInterval: UInt64 = 10, endpoints: [Endpoint?]? = nil) {
        let (serverKey, clientKey) = (f.server, f.client)
        let list = AllowList(clients: [AllowedClient(key: clientKey.publicKey, address: IPv4Address(10, 8, 0, 7))])
        servers = (0..<2).map { _ in
            TunnelState(role: .server(ServerSettings(
                responder: HandshakeResponder(localStatic: serverKey), address: IPv4Prefix("10.8.0.1/16")!, allowList: list,
                allowAnyClient: false)))
        }
        let given = endpoints ?? self.endpoints.map { Optional($0) }
        client = TunnelState(role: .client(ClientSettings(
            initiator: HandshakeInitiator(localStatic: clientKey, serverKey: serverKey.publicKey),
            endpoint: given.compactMap { $0 }.first!, endpoints: given,
            failover: FailoverSettings(failoverAfter: failoverAfter * second, probeInterval: probeInterval * second))))
    }

    func serverIndex(_ e: Endpoint) -> Int? { endpoints.firstIndex(of: e) }

    mutating func advance(millis: UInt64) {
        now += millis * 1_000_000
        wall.seconds = 1_700_000_000 + (now - 1_000 * second) / second
        wall.nanoseconds = UInt32((now - 1_000 * second) % second)
    }

    /// Carries out what the client asked for: datagrams to servers that are up are handled at once.
    mutating func clientActions(_ actions: [ControlAction]) {
        for action in actions {
            switch action {
            case .sendHandshake(let bytes, let to): toServer(bytes, to)
            case .sendKeepalive(let s, let to, _): toServer(CorePair.seal([], s), to)
            case .sendQueued(let packets, let s, let to, _): for p in packets { toServer(CorePair.seal(p, s), to) }
            case .endpointSwitched(let change, _): switches.append(change)
            case .endpointAttempted(let index): attempted.append(index)
            case .tunnelUp: tunnelUps += 1
            default: break
            }
        }
    }

    mutating func toServer(_ datagram: [UInt8], _ to: Endpoint) {
        guard let i = serverIndex(to), up[i] else { return }
        var actions: [ControlAction] = []
        if datagram.first != 4 {
            initiationsAt[i] += 1
            servers[i].handleHandshake(datagram, from: clientEndpoint, now: now, wall: wall, random: f.random, actions: &actions)
        } else {
            var bytes = datagram
            guard let index = bytes.withUnsafeBytes({ DataFrame.receiverIndex($0) }),
                let (session, peer) = servers[i].session(forIndex: index)
            else { return }
            guard case .packet(let n) = bytes.withUnsafeMutableBytes({ DataFrame.open($0, session: session, now: now) }) else { return }
            let plain = Array(bytes[DataFrame.headerLength..<(DataFrame.headerLength + n)])
            let decision = plain.withUnsafeBytes {
                servers[i].received($0, on: session, peer: peer, from: clientEndpoint, now: now, wall: wall, random: f.random, actions: &actions)
            }
            if case .deliver = decision {
                deliveredAt[i] += 1
                // Echo, as a ping's target would: the client hears from the server it uses.
                let reply = ipv4(IPv4Address(10, 8, 0, 1), IPv4Address(10, 8, 0, 7))
                let answer = reply.withUnsafeBytes { servers[i].route($0, now: now, wall: wall, random: f.random, actions: &actions) }
                if case .send(let s, _, _) = answer { toClient(CorePair.seal(reply, s), from: i) }
            }
        }
        for action in actions {
            switch action {
            case .sendHandshake(let bytes, _): toClient(bytes, from: i)
            case .sendKeepalive(let s, _, _): toClient(CorePair.seal([], s), from: i)
            default: break
            }
        }
    }

    mutating func toClient(_ datagram: [UInt8], from i: Int) {
        guard up[i] else { return }
        var actions: [ControlAction] = []
        if datagram.first != 4 {
            client.handleHandshake(datagram, from: endpoints[i], now: now, wall: wall, random: f.random, actions: &actions)
        } else {
            var bytes = datagram
            guard let index = bytes.withUnsafeBytes({ DataFrame.receiverIndex($0) }),
                let (session, peer) = client.session(forIndex: index)
            else { return }
            guard case .packet(let n) = bytes.withUnsafeMutableBytes({ DataFrame.open($0, session: session, now: now) }) else { return }
            let plain = Array(bytes[DataFrame.headerLength..<(DataFrame.headerLength + n)])
            let decision = plain.withUnsafeBytes {
                client.received($0, on: session, peer: peer, from: endpoints[i], now: now, wall: wall, random: f.random, actions: &actions)
            }
            if case .deliver = decision { deliveredToClient += 1 }
        }
        clientActions(actions)
    }

    mutating func start() {
        var actions: [ControlAction] = []
        client.start(now: now, wall: wall, random: f.random, actions: &actions)
        clientActions(actions)
    }

    mutating func tick() {
        var actions: [ControlAction] = []
        client.tick(now: now, wall: wall, random: f.random, actions: &actions)
        clientActions(actions)
        for i in servers.indices {
            var serverActions: [ControlAction] = []
            servers[i].tick(now: now, wall: wall, random: f.random, actions: &serverActions)
        }
    }

    /// The client sends one packet from its TUN device (a ping to the server's tunnel address).
    mutating func ping() {
        var actions: [ControlAction] = []
        let packet = ipv4(IPv4Address(10, 8, 0, 7), IPv4Address(10, 8, 0, 1))
        let decision = packet.withUnsafeBytes { client.route($0, now: now, wall: wall, random: f.random, actions: &actions) }
        clientActions(actions)
        if case .send(let session, let to, _) = decision { toServer(CorePair.seal(packet, session), to) }
    }

    /// Pings every 200 ms for `seconds`, ticking every 100 ms as the engine does.
    mutating func run(seconds: UInt64) {
        for step in 0..<(seconds * 10) {
            advance(millis: 100)
            tick()
            if step % 2 == 0 { ping() }
        }
    }

    /// How long (ms) until server `i` gets a ping again, pinging and ticking as `run` does; nil if not
    /// within `limit` seconds.
    mutating func millisUntilDelivered(at i: Int, limit: UInt64) -> UInt64? {
        let before = deliveredAt[i]
        for step in 0..<(limit * 10) {
            advance(millis: 100)
            tick()
            if step % 2 == 0 { ping() }
            if deliveredAt[i] > before { return (step + 1) * 100 }
        }
        return nil
    }
}

@Suite struct FailoverTests {
    @Test func trafficGoesToTheFirstEndpointWhileItAnswers() {
        var net = FailoverNet()
        net.start()
        net.run(seconds: 60)
        #expect(net.deliveredAt[0] > 100)
        #expect(net.deliveredAt[1] == 0)
        #expect(net.initiationsAt[1] == 0)
        #expect(net.switches.isEmpty)
        #expect(net.client.failover?.active == 0)
    }

    @Test func movesToTheSecondAfterTheHandshakeFailsForFailoverAfter() throws {
        var net = FailoverNet(failoverAfter: 15)
        net.start()
        net.run(seconds: 5)
        net.up[0] = false
        let killedAt = net.now
        // Silence is noticed after KEEPALIVE + REKEY_TIMEOUT (15 s): a handshake starts; 15 s of it failing
        // move the client on.
        let waited1 = net.millisUntilDelivered(at: 1, limit: 60)
        let gap = try #require(waited1)
        #expect(gap >= 30_000 && gap <= 31_000, "gap \(gap) ms")
        let change = try #require(net.switches.first)
        #expect(change.from == 0 && change.to == 1)
        #expect(change.reason == .noResponse(seconds: 15))
        #expect(change.at - killedAt >= 30 * second)
        #expect(net.client.failover?.active == 1)
        #expect(net.client.failover?.switches == 1)
        #expect(net.client.peers[0].endpoint == net.endpoints[1])
        #expect(net.tunnelUps == 1, "the same addressing: no second tunnel-up")
    }

    @Test func failoverAfterIsConfigurable() throws {
        var net = FailoverNet(failoverAfter: 3)
        net.start()
        net.run(seconds: 5)
        net.up[0] = false
        let waited2 = net.millisUntilDelivered(at: 1, limit: 60)
        let gap = try #require(waited2)
        #expect(gap >= 18_000 && gap <= 19_000, "gap \(gap) ms")
        #expect(net.switches.map(\.reason) == [.noResponse(seconds: 3)])
    }

    @Test func probesThePreferredEndpointWithoutDisturbingTheSecond() throws {
        var net = FailoverNet(failoverAfter: 3, probeInterval: 10)
        net.up[0] = false
        net.start()
        net.run(seconds: 5)  // the first never answers: the client moves at 3 s
        #expect(net.client.failover?.active == 1)
        let sessionOnSecond = try #require(net.client.peers[0].current)
        let deliveredBefore = net.deliveredAt[1]
        let attemptsBefore = net.attempted.filter { $0 == 0 }.count
        net.run(seconds: 35)
        // About one probe every 10 s went to the first (dropped: it is down); the session with the second
        // carried every ping meanwhile and was never replaced.
        let probes = net.attempted.filter { $0 == 0 }.count - attemptsBefore
        #expect(probes >= 3 && probes <= 4, "\(probes) probes")
        #expect(net.client.peers[0].current === sessionOnSecond)
        #expect(net.deliveredAt[1] - deliveredBefore >= 170)
        #expect(net.switches.count == 1)
    }

    @Test func returnsToThePreferredEndpointWhenItAnswersAgain() throws {
        var net = FailoverNet(failoverAfter: 3, probeInterval: 10)
        net.start()
        net.run(seconds: 2)
        net.up[0] = false
        let waited3 = net.millisUntilDelivered(at: 1, limit: 60)
        _ = try #require(waited3)
        net.up[0] = true
        // The next probe (at most 10 s away) completes a handshake with the first: traffic moves back.
        let waited4 = net.millisUntilDelivered(at: 0, limit: 15)
        let back = try #require(waited4)
        #expect(back <= 10_200, "back after \(back) ms")
        #expect(net.client.failover?.active == 0)
        #expect(net.switches.map(\.reason) == [.noResponse(seconds: 3), .preferredAnswered])
        #expect(net.switches.last.map { [$0.from, $0.to] } == [1, 0])
        #expect(net.client.failover?.switches == 2)
        // From now on pings go to the first only, even though the second still sends on the old session.
        let second = net.deliveredAt[1]
        net.run(seconds: 20)
        #expect(net.deliveredAt[1] == second)
        #expect(net.client.peers[0].endpoint == net.endpoints[0])
    }

    @Test func wrapsAroundWhenTheLastEndpointFails() throws {
        var net = FailoverNet(failoverAfter: 3, probeInterval: 1_000)
        net.start()
        net.run(seconds: 2)
        net.up[0] = false
        let waited5 = net.millisUntilDelivered(at: 1, limit: 60)
        _ = try #require(waited5)
        net.up = [true, false]
        let waited6 = net.millisUntilDelivered(at: 0, limit: 60)
        _ = try #require(waited6)
        #expect(net.switches.map { [$0.from, $0.to] } == [[0, 1], [1, 0]])
        #expect(net.switches.map(\.reason) == [.noResponse(seconds: 3), .noResponse(seconds: 3)])
    }

    @Test func aReResolvedAddressIsUsedFromTheNextInitiation() throws {
        var net = FailoverNet(failoverAfter: 3)
        net.start()
        net.run(seconds: 2)
        #expect(net.attempted == [0])
        // The first endpoint's name now points at the second server's address; the first server goes away.
        net.client.updateEndpoint(0, to: net.endpoints[1])
        net.up[0] = false
        let waited7 = net.millisUntilDelivered(at: 1, limit: 60)
        _ = try #require(waited7)
        // Reached through the first endpoint (no switch): the re-resolved address took the handshake.
        #expect(net.switches.isEmpty)
        #expect(net.client.failover?.active == 0)
        #expect(net.client.failover?.endpoints[0] == net.endpoints[1])
    }

    @Test func anUnresolvedEndpointIsSkipped() throws {
        var net = FailoverNet(failoverAfter: 3, endpoints: [nil, Endpoint(address: IPv4Address(198, 51, 100, 1), port: 51820)])
        #expect(net.client.failover?.active == 1)
        net.start()
        net.run(seconds: 2)
        #expect(net.deliveredAt[1] > 0)
        // No probe of an endpoint with no address; once its name resolves, it is probed and preferred.
        #expect(!net.attempted.contains(0))
        net.client.updateEndpoint(0, to: net.endpoints[0])
        let waited8 = net.millisUntilDelivered(at: 0, limit: 15)
        _ = try #require(waited8)
        #expect(net.client.failover?.active == 0)
    }

    @Test func noEndpointMayLieInsideTheAssignedPrefix() {
        // The second endpoint's address is inside the tunnel prefix the first server assigns (10.8.0.0/16):
        // a move there would send the tunnel's own frames into the tunnel, so the assignment is refused.
        var net = FailoverNet(endpoints: [
            Endpoint(address: IPv4Address(192, 0, 2, 1), port: 51820), Endpoint(address: IPv4Address(10, 8, 9, 9), port: 51820),
        ])
        net.start()
        net.run(seconds: 2)
        #expect(net.tunnelUps == 0)
        #expect(net.client.peers[0].current == nil)
        #expect(net.initiationsAt[0] >= 1, "the first server answered; its addressing was refused")
    }

    @Test func policyAlone() {
        let a = Endpoint(address: IPv4Address(192, 0, 2, 1), port: 1)
        let b = Endpoint(address: IPv4Address(192, 0, 2, 2), port: 1)
        var f = EndpointFailover(endpoints: [a, nil, b], settings: FailoverSettings(failoverAfter: 10, probeInterval: 5))
        #expect(f.successor() == 2)
        #expect(f.failoverDue(now: 100, attemptsStarted: nil) == nil)
        #expect(f.failoverDue(now: 109, attemptsStarted: 100) == nil)
        #expect(f.failoverDue(now: 110, attemptsStarted: 100)?.to == 2)
        #expect(f.takeProbe(now: 0) == nil, "no probe while the first is in use")
        _ = f.move(to: 2, reason: .noResponse(seconds: 0), now: 200)
        #expect(f.takeProbe(now: 204) == nil)
        #expect(f.takeProbe(now: 205) == a)
        #expect(f.takeProbe(now: 209) == nil)
        #expect(f.takeProbe(now: 210) == a)
        #expect(f.successor() == 0, "wraps")
        let single = EndpointFailover(endpoints: [a])
        #expect(single.failoverDue(now: 1_000_000_000_000, attemptsStarted: 0) == nil, "one endpoint: nowhere to go")
    }
}

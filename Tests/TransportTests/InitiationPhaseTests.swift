// The server's initiation handling in its separate steps (prepare, consume, admit, respond, commit), as
// the engine runs them with its lock released for the two Diffie-Hellman steps: copies of one initiation
// that both got through the DH work are settled at admission against the current state, a response's
// index stays reserved until its commit, and a handshake counts as completed only once the client
// confirmed it with an authenticated frame.

import Crypto
import Synchronization
import Testing

@testable import Transport

/// HashRandom's bytes, except that 4-byte requests (session indexes) take the next value of `indexes`
/// while it lasts.
final class ScriptedIndexRandom: RandomSource, Sendable {
    private let indexes: Mutex<[UInt32]>
    private let bytes = Mutex(HashRandom(seed: 9))
    init(indexes: [UInt32]) { self.indexes = Mutex(indexes) }
    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        if buffer.count == 4, let next = indexes.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            withUnsafeBytes(of: next) { buffer.copyMemory(from: $0) }
            return
        }
        bytes.withLock { $0.fill(buffer) }
    }
}

/// The server of a CorePair, driven one step at a time.
struct Steps {
    var pair = CorePair()
    var actions: [ControlAction] = []

    var refusals: [HandshakeFailure] {
        actions.compactMap { if case .handshakeRefused(let r, _) = $0 { r } else { nil } }
    }
    var responses: [(bytes: [UInt8], to: Endpoint)] {
        actions.compactMap { if case .sendHandshake(let b, let e) = $0 { (b, e) } else { nil } }
    }

    /// An initiation from the pair's client key with timestamp `t`.
    func initiation(_ t: TAI64N) -> [UInt8] {
        pair.f.initiator().createInitiation(senderIndex: 7, timestamp: t, random: pair.f.random).message
    }

    /// Steps 1 and 2: what the engine does before it takes the lock for admission.
    mutating func consume(_ m: [UInt8], from: Endpoint? = nil) -> ConsumedInitiation? {
        let source = from ?? pair.clientEndpoint
        let prepared = pair.server.prepareInitiation(m, from: source, now: pair.now, random: pair.f.random, actions: &actions)
        return prepared?.consume(random: pair.f.random, actions: &actions)
    }

    mutating func admit(_ c: ConsumedInitiation, random: (any RandomSource)? = nil) -> AdmittedInitiation? {
        pair.server.admitInitiation(c, now: pair.now, random: random ?? pair.f.random, actions: &actions)
    }
}

@Suite struct InitiationPhaseTests {
    @Test func aCopyOfAnInitiationThatRacedThroughTheDHWorkIsRefusedAsAReplayAtAdmission() throws {
        var s = Steps()
        let m1 = s.initiation(s.pair.f.t1)
        // Both copies pass the load checks and the DH work, which read no state.
        let firstStep = s.consume(m1)
        let first = try #require(firstStep)
        let secondStep = s.consume(m1)
        let second = try #require(secondStep)
        #expect(s.actions.isEmpty)
        let admittedStep = s.admit(first)
        let admitted = try #require(admittedStep)
        #expect(s.admit(second) == nil)
        #expect(s.refusals == [.replayedInitiation])
        s.pair.server.commitInitiation(admitted.respond(), now: s.pair.now, actions: &s.actions)
        #expect(s.responses.count == 1)
        #expect(s.pair.server.liveSessionCount == 1)
    }

    @Test func anOlderInitiationAdmittedAfterANewerOneIsRefusedAsStale() throws {
        var s = Steps()
        let olderStep = s.consume(s.initiation(s.pair.f.t1))
        let older = try #require(olderStep)
        let newerStep = s.consume(s.initiation(s.pair.f.t2))
        let newer = try #require(newerStep)
        #expect(s.admit(newer) != nil)
        #expect(s.admit(older) == nil)
        #expect(s.refusals == [.replayedInitiation])
    }

    @Test func twoFreshInitiationsAdmittedInOneInstantMeetThePerPeerRateLimit() throws {
        var s = Steps()
        let aStep = s.consume(s.initiation(s.pair.f.t1))
        let a = try #require(aStep)
        let bStep = s.consume(s.initiation(s.pair.f.t2))
        let b = try #require(bStep)
        #expect(s.admit(a) != nil)
        #expect(s.admit(b) == nil)
        #expect(s.refusals == [.rateLimited])
        // A moment later the same client is admitted again.
        s.pair.now += second / Limits.initiationsPerSecondPerPeer
        let cStep = s.consume(s.initiation(TAI64N(secondsSince1970: 1_700_000_002, nanoseconds: 0)))
        let c = try #require(cStep)
        #expect(s.admit(c) != nil)
    }

    @Test func anIndexAdmittedForOneResponseIsNotGivenToAnotherBeforeItsCommit() throws {
        let other = PrivateKey(random: HashRandom(seed: 4))
        let list = AllowList(clients: [AllowedClient(key: Fixture().client.publicKey), AllowedClient(key: other.publicKey)])
        var s = Steps(pair: CorePair(allowList: list))
        let fromClientStep = s.consume(s.initiation(s.pair.f.t1))
        let fromClient = try #require(fromClientStep)
        let m = HandshakeInitiator(localStatic: other, serverKey: s.pair.f.server.publicKey)
            .createInitiation(senderIndex: 8, timestamp: s.pair.f.t1, random: s.pair.f.random).message
        let fromOtherStep = s.consume(m, from: Endpoint(address: IPv4Address(10, 99, 0, 3), port: 40001))
        let fromOther = try #require(fromOtherStep)
        // The random source offers index 0x1111 twice: the second admission must skip it.
        let random = ScriptedIndexRandom(indexes: [0x1111, 0x1111, 0x2222])
        let aStep = s.admit(fromClient, random: random)
        let a = try #require(aStep)
        let bStep = s.admit(fromOther, random: random)
        let b = try #require(bStep)
        #expect(a.localIndex == 0x1111)
        #expect(b.localIndex == 0x2222)
        s.pair.server.commitInitiation(a.respond(), now: s.pair.now, actions: &s.actions)
        s.pair.server.commitInitiation(b.respond(), now: s.pair.now, actions: &s.actions)
        #expect(s.pair.server.session(forIndex: 0x1111)?.session.peerKey == Fixture().client.publicKey)
        #expect(s.pair.server.session(forIndex: 0x2222)?.session.peerKey == other.publicKey)
    }

    @Test func aClientRemovedByAReloadBetweenAdmissionAndCommitGetsNoResponseAndNoSession() throws {
        var s = Steps()
        let cStep = s.consume(s.initiation(s.pair.f.t1))
        let c = try #require(cStep)
        let admittedStep = s.admit(c)
        let admitted = try #require(admittedStep)
        _ = s.pair.server.replaceAllowList(AllowList(clients: []))
        s.pair.server.commitInitiation(admitted.respond(), now: s.pair.now, actions: &s.actions)
        #expect(s.responses.isEmpty)
        #expect(s.refusals == [.unknownClientKey])
        #expect(s.pair.server.liveSessionCount == 0)
    }

    @Test func theServerCountsAHandshakeOnlyWhenTheClientConfirmsIt() throws {
        var pair = CorePair()
        var clientActions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &clientActions)
        guard case .sendHandshake(let m1, _) = clientActions.first else { Issue.record("no initiation"); return }
        var serverActions: [ControlAction] = []
        pair.server.handleHandshake(m1, from: pair.clientEndpoint, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &serverActions)
        guard case .sendHandshake(let m2, _) = serverActions.first else { Issue.record("no response"); return }
        #expect(!serverActions.contains { if case .handshakeCompleted = $0 { true } else { false } })
        let peer = try #require(pair.server.peer(withKey: pair.f.client.publicKey))
        #expect(peer.lastHandshake == nil)
        #expect(peer.stats.lastHandshakeWallSeconds.load(ordering: .relaxed) == 0)

        // The client's confirming keepalive arrives from a new address, a second later.
        pair.advance(1)
        clientActions = []
        pair.client.handleHandshake(m2, from: pair.serverEndpoint, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &clientActions)
        let keepalive = try #require(clientActions.compactMap { if case .sendKeepalive(let s, _, _) = $0 { s } else { nil } }.first)
        let roamed = Endpoint(address: IPv4Address(10, 99, 0, 9), port: 40009)
        pair.deliver(CorePair.seal([], keepalive), toServer: true, from: roamed)
        #expect(pair.completions == 1, "the server's completion, at the confirmation")
        let confirmed = try #require(pair.server.peer(withKey: pair.f.client.publicKey))
        #expect(confirmed.lastHandshake == pair.now)
        #expect(confirmed.stats.lastHandshakeWallSeconds.load(ordering: .relaxed) == pair.wall.seconds)
        #expect(confirmed.endpoint == roamed)
    }

    @Test func anInitiationReplayedAfterTheServerForgotItsTimestampShowsNoCompletedHandshake() throws {
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        pair.deliver(m1, toServer: true, from: pair.clientEndpoint)
        #expect(pair.completions == 2)
        let stamped = pair.wall.seconds
        let handshakeAt = pair.now
        let attacker = Endpoint(address: IPv4Address(203, 0, 113, 9), port: 1)
        for round in 1...2 {
            // The client stays idle; 3 × REJECT_AFTER_TIME later the server zeroes its keys and forgets
            // the client's last timestamp, so the captured m1 is accepted (and answered) again.
            pair.advance(541)
            var tick: [ControlAction] = []
            pair.server.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &tick)
            #expect(tick.contains { if case .keysZeroed = $0 { true } else { false } }, "round \(round)")
            var replay: [ControlAction] = []
            pair.server.handleHandshake(m1, from: attacker, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &replay)
            #expect(replay.contains { if case .sendHandshake(_, let to) = $0 { to == attacker } else { false } }, "round \(round)")
            #expect(!replay.contains { if case .handshakeCompleted = $0 { true } else { false } }, "round \(round)")
            let peer = try #require(pair.server.peer(withKey: pair.f.client.publicKey))
            #expect(peer.stats.lastHandshakeWallSeconds.load(ordering: .relaxed) == stamped, "round \(round)")
            #expect(peer.lastHandshake == handshakeAt, "round \(round)")
            #expect(peer.endpoint == pair.clientEndpoint, "round \(round)")
        }
    }
}

// The tick's schedule: a min-heap of per-peer deadlines with lazy deletion (DeadlineSchedule.swift), and
// a server core with thousands of idle clients whose tick visits only the peers that are due.

import Crypto
import Testing

@testable import Transport

@Suite struct DeadlineScheduleTests {
    @Test func dueSlotsComeOutOnceEachInSlotOrderAndOnlyWhenDue() {
        var s = DeadlineSchedule()
        s.schedule(7, at: 30)
        s.schedule(2, at: 10)
        s.schedule(5, at: 10)
        s.schedule(9, at: nil)
        #expect(s.earliest == 10)
        #expect(s.takeDue(now: 9).isEmpty)
        #expect(s.takeDue(now: 10) == [2, 5])
        #expect(s.takeDue(now: 29).isEmpty)
        #expect(s.deadline(of: 7) == 30)
        #expect(s.takeDue(now: 1_000) == [7])
        #expect(s.takeDue(now: .max).isEmpty)
        #expect(s.entryCount == 0)
    }

    @Test func aLaterDeadlineKeepsTheEarlierOneAndAnEarlierOneReplacesIt() {
        var s = DeadlineSchedule()
        s.schedule(1, at: 100)
        s.schedule(1, at: 200)  // later: the slot still wakes at 100 (a harmless early wakeup)
        #expect(s.deadline(of: 1) == 100)
        #expect(s.entryCount == 1, "a later deadline pushes nothing")
        s.schedule(1, at: 50)  // earlier: replaces it; the entry at 100 is now stale
        #expect(s.deadline(of: 1) == 50)
        #expect(s.takeDue(now: 50) == [1])
        #expect(s.deadline(of: 1) == nil)
        // The stale entry at 100 does not wake the slot again, and a slot taken is listed once even when a
        // fresh entry has the stale one's deadline.
        s.schedule(1, at: 100)
        #expect(s.takeDue(now: 150) == [1])
        #expect(s.takeDue(now: 150).isEmpty)
        #expect(s.entryCount == 0)
    }

    @Test func staleEntriesStayBoundedHoweverOftenADeadlineMovesEarlier() {
        var s = DeadlineSchedule()
        for slot in 0..<10 { s.schedule(slot, at: 1_000_000) }
        for step in 0..<10_000 { s.schedule(step % 10, at: 999_999 - UInt64(step)) }
        #expect(s.entryCount <= 2 * 10 + 64 + 1)
        // Every slot comes out once, at its latest (earliest) deadline.
        #expect(s.takeDue(now: 989_999).isEmpty)
        #expect(s.takeDue(now: 990_009) == Array(0..<10))
        #expect(s.takeDue(now: .max).isEmpty)
    }

    @Test func manyRandomDeadlinesComeOutAsASortedScanWouldFindThem() {
        var s = DeadlineSchedule()
        let random = HashRandom(seed: 17)
        var truth: [Int: UInt64] = [:]
        for _ in 0..<5_000 {
            let slot = Int(random.nextUInt32() % 300)
            let deadline = UInt64(random.nextUInt32() % 10_000)
            s.schedule(slot, at: deadline)
            truth[slot] = min(truth[slot] ?? .max, deadline)
        }
        var now: UInt64 = 0
        while now <= 10_000 {
            let expected = truth.filter { $0.value <= now }.keys.sorted()
            #expect(s.takeDue(now: now) == expected)
            for slot in expected { truth[slot] = nil }
            now += 250
        }
        #expect(truth.isEmpty)
    }
}

@Suite struct TickScaleTests {
    /// Keys for idle clients: distinct bytes, no handshake ever made with them.
    static func idleKeys(_ n: Int) -> [PublicKey] {
        (0..<n).map { i in
            PublicKey(bytes: [UInt8(i & 0xff), UInt8((i >> 8) & 0xff), 0x5a] + [UInt8](repeating: 0x11, count: 29))!
        }
    }

    @Test func aServerWithTenThousandIdleClientsTicksOnlyTheOneThatIsDue() {
        let f = Fixture()
        let clients = [AllowedClient(key: f.client.publicKey)] + Self.idleKeys(10_000).map { AllowedClient(key: $0) }
        var pair = CorePair(allowList: AllowList(clients: clients))
        pair.start()
        #expect(pair.tunnelUps.count == 1)
        pair.clientSends(ipv4(clientIP, serverIP))
        #expect(pair.deliveredToServer.count == 1)
        var actions: [ControlAction] = []
        // Nothing is due: no peer is visited, however many are configured.
        for _ in 0..<5 {
            pair.advance(1)
            pair.server.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
            #expect(pair.server.peersVisitedByLastTick == 0)
        }
        // The server received data and sent nothing back: after KEEPALIVE_TIMEOUT (10 s) its keepalive is
        // due, for that one client only.
        pair.advance(5)
        pair.server.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        #expect(pair.server.peersVisitedByLastTick == 1)
        #expect(actions.count == 1)
        #expect({ if case .sendKeepalive = actions.first { return true } else { return false } }())
        actions.removeAll()
        // Its sessions expire at REJECT_AFTER_TIME (180 s) and its keys are zeroed at 3 × that, with the
        // tick visiting only it (sooner wakeups are allowed; none visits an idle client).
        var visited = 0
        var zeroed: [PublicKey] = []
        for _ in 0..<60 {
            pair.advance(10)
            pair.server.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
            visited = max(visited, pair.server.peersVisitedByLastTick)
            for case .keysZeroed(let key) in actions { zeroed.append(key) }
            actions.removeAll()
            if pair.now - 1_000 * second >= 181 * second { #expect(pair.server.liveSessionCount == 0) }
        }
        #expect(visited == 1)
        #expect(zeroed == [f.client.publicKey])
    }

    @Test func peersDueAtTheSameTickAreHandledInSlotOrder() {
        // Two clients' keys are zeroed in the same tick: the actions come in allow-list order, as a scan
        // of every peer gave them, whatever order their deadlines were set in.
        let second = PrivateKey(random: HashRandom(seed: 42))
        let list = AllowList(clients: [AllowedClient(key: Fixture().client.publicKey), AllowedClient(key: second.publicKey)])
        var b = CorePair(allowList: list, clientKey: second)
        b.clientEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 3), port: 40001)
        b.start()  // the second client's handshake first
        var a = CorePair(allowList: list)
        a.server = b.server
        a.advance(1)
        a.start()
        var actions: [ControlAction] = []
        a.advance(3 * 180 + 1)
        a.server.tick(now: a.now, wall: a.wall, random: a.f.random, actions: &actions)
        let zeroed = actions.compactMap { action -> PublicKey? in
            if case .keysZeroed(let key) = action { return key }
            return nil
        }
        #expect(zeroed == [Fixture().client.publicKey, second.publicKey])
    }
}

// Denial-of-service defences: cookie replies under load, mac2, per-source rate limits.

import Crypto
import Testing

@testable import Transport

@Suite struct CookieTests {
    let f = Fixture()

    @Test func aCookieFromTheServerLetsTheClientStampAMAC2ThatOnlyItsAddressPasses() throws {
        var checker = CookieChecker(serverKey: f.server.publicKey)
        var jar = CookieJar(serverKey: f.server.publicKey)
        let source = Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)
        let (m1, _) = f.initiator().createInitiation(senderIndex: 42, timestamp: f.t1, random: f.random)
        let now: UInt64 = 5 * second
        let v101 = checker.verifyMAC2(m1, source: source, now: now, random: f.random)
        #expect(!v101, "no mac2 yet")
        let reply = checker.makeReply(to: m1, source: source, now: now, random: f.random)
        #expect(reply.count == WireFormat.cookieReplyLength && reply[0] == 3)
        let r1 = jar.consumeReply(reply, answering: m1, senderIndex: 43, now: now)
        #expect(!r1, "misaddressed")
        var forged = reply
        forged[40] ^= 1
        let r2 = jar.consumeReply(forged, answering: m1, senderIndex: 42, now: now)
        #expect(!r2, "forged")
        let r3 = jar.consumeReply(reply, answering: m1, senderIndex: 42, now: now)
        #expect(r3)
        var stamped = f.initiator().createInitiation(senderIndex: 44, timestamp: f.t2, random: f.random).message
        jar.stamp(&stamped, now: now + second)
        let v102 = checker.verifyMAC2(stamped, source: source, now: now + second, random: f.random)
        #expect(v102)
        let v103 = checker.verifyMAC2(stamped, source: Endpoint(address: source.address, port: 40001), now: now + second, random: f.random)
        #expect(!v103)
        // The server's secret changes every 120 s, so old cookies stop working.
        let v104 = checker.verifyMAC2(stamped, source: source, now: now + 121 * second, random: f.random)
        #expect(!v104)
    }

    @Test func underAFloodTheServerAnswersWithCookiesAndTheLegitimateClientStillConnects() throws {
        var pair = CorePair()
        var refusals: [HandshakeFailure] = []
        var cookieReplies = 0
        func flood(_ count: Int) {
            for i in 0..<count {
                // Well-formed initiations with valid mac1 from unknown keys: the expensive kind of forgery.
                let attacker = HandshakeInitiator(localStatic: PrivateKey(random: HashRandom(seed: UInt8(100 + i % 150))), serverKey: pair.f.server.publicKey)
                let m = attacker.createInitiation(senderIndex: UInt32(i), timestamp: pair.f.t1, random: pair.f.random).message
                var actions: [ControlAction] = []
                let from = Endpoint(address: IPv4Address(10, 66, UInt8(i / 250), UInt8(i % 250 + 1)), port: 9999)
                pair.server.handleHandshake(m, from: from, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
                for a in actions {
                    if case .handshakeRefused(let r, _) = a { refusals.append(r) }
                    if case .sendHandshake(let bytes, _) = a, bytes.first == 3 { cookieReplies += 1 }
                }
            }
        }
        flood(300)
        #expect(refusals.filter { $0 == .unknownClientKey }.count == Limits.underLoadInitiationsPerSecond, "DH work only until load is detected")
        #expect(refusals.filter { $0 == .cookieRequired }.count == 300 - Limits.underLoadInitiationsPerSecond)
        #expect(cookieReplies == 300 - Limits.underLoadInitiationsPerSecond)
        // The legitimate client's first initiation gets a cookie; its retransmission carries mac2 and succeeds.
        pair.start()
        #expect(pair.refusals == [.cookieRequired], "the server asked for a cookie instead of doing DH work")
        #expect(pair.tunnelUps.isEmpty)
        pair.advance(5)
        flood(300)  // still under load
        var tries = 0
        while pair.tunnelUps.isEmpty && tries < 20 {
            pair.now += second / 2
            pair.tickBoth()
            tries += 1
        }
        #expect(pair.tunnelUps.count == 1, "connected while the flood went on")
    }

    @Test func underLoadEachSourceAddressGetsABurstOfFiveThenTwentyPerSecond() {
        var limiter = SourceRateLimiter()
        let a = IPAddress.v4(IPv4Address(10, 0, 0, 1))
        let now: UInt64 = 1_000 * second
        var burst = 0
        for _ in 0..<5 where limiter.allow(a, now: now) { burst += 1 }
        #expect(burst == 5)
        let r4 = limiter.allow(a, now: now)
        #expect(!r4)
        let r5 = limiter.allow(.v4(IPv4Address(10, 0, 0, 2)), now: now)
        #expect(r5, "other sources are not affected")
        let r6 = limiter.allow(a, now: now + second / 20)
        #expect(r6, "one token back every 50 ms")
        let r7 = limiter.allow(a, now: now + second / 20)
        #expect(!r7)
    }

    @Test func theLoadMeterTripsAboveTheThresholdAndRecoversAfterAQuietSecond() {
        var meter = LoadMeter()
        let t: UInt64 = 10 * second
        var results: [Bool] = []
        for _ in 0..<(Limits.underLoadInitiationsPerSecond + 1) { results.append(meter.record(now: t)) }
        #expect(!results.dropLast().contains(true) && results.last == true)
        let r8 = meter.record(now: t + second + 1)
        #expect(r8, "the previous second still counts")
        let r9 = meter.record(now: t + 3 * second)
        #expect(!r9, "quiet again")
    }
}

// The tunvpn handshake end to end in memory: success, negotiation, and every named failure reason.

import Crypto
import Testing

@testable import Transport

/// Deterministic bytes (BLAKE2b of a seed and a counter), so handshakes reproduce.
final class HashRandom: RandomSource, @unchecked Sendable {
    private var counter: UInt64 = 0
    private let seed: UInt8
    init(seed: UInt8) { self.seed = seed }
    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var offset = 0
        while offset < buffer.count {
            counter += 1
            var input = [seed]
            withUnsafeBytes(of: counter) { input += $0 }
            let block = Blake2b.hash(input)
            for b in block where offset < buffer.count {
                buffer[offset] = b
                offset += 1
            }
        }
    }
}

struct Fixture {
    let server = PrivateKey(random: HashRandom(seed: 1))
    let client = PrivateKey(random: HashRandom(seed: 2))
    let random = HashRandom(seed: 3)
    let assignment = TunnelAssignment(
        client: IPv4Prefix(address: IPv4Address(10, 8, 0, 2), length: 16), server: IPv4Address(10, 8, 0, 1))
    let t1 = TAI64N(secondsSince1970: 1_700_000_000, nanoseconds: 0)
    let t2 = TAI64N(secondsSince1970: 1_700_000_001, nanoseconds: 0)

    func initiator(serverKey: PublicKey? = nil, psk: SecretBytes? = nil, suites: [any CipherSuite.Type]? = nil)
        -> HandshakeInitiator
    {
        HandshakeInitiator(
            localStatic: client, serverKey: serverKey ?? server.publicKey, settings: HandshakeSettings(psk: psk),
            offeredSuites: suites ?? CipherSuites.available)
    }

    func responder(psk: SecretBytes? = nil, suites: [any CipherSuite.Type]? = nil) -> HandshakeResponder {
        HandshakeResponder(
            localStatic: server, settings: HandshakeSettings(psk: psk), acceptedSuites: suites ?? CipherSuites.available)
    }

    func consume(_ r: HandshakeResponder, _ m: [UInt8], allowed: Bool = true, last: TAI64N? = nil) throws(
        HandshakeFailure
    ) -> HandshakeResponder.InitiationConsumed {
        try r.consumeInitiation(m, isAllowed: { _ in allowed }, lastTimestamp: { _ in last }, random: random)
    }
}

func expectFailure(_ expected: HandshakeFailure, _ body: () throws -> Void, _ note: Comment? = nil) {
    do {
        try body()
        Issue.record("expected \(expected), but it succeeded. \(note?.rawValue ?? "")")
    } catch let error as HandshakeFailure {
        #expect(error == expected, note)
    } catch {
        Issue.record("unexpected error \(error)")
    }
}

@Suite struct HandshakeTests {
    let f = Fixture()

    @Test func aHandshakeGivesBothSidesMatchingKeysTheAddressAndTheClientsPreferredSuite() throws {
        let initiator = f.initiator(suites: [ChaCha20Poly1305.self, XChaCha20Poly1305.self])
        let (m1, sent) = initiator.createInitiation(senderIndex: 0x1111_2222, timestamp: f.t1, random: f.random)
        #expect(m1.count == WireFormat.initiationLength)
        let consumed = try f.consume(f.responder(), m1)
        #expect(consumed.clientKey == f.client.publicKey)
        #expect(consumed.timestamp == f.t1)
        let (m2, serverResult) = f.responder().createResponse(
            to: consumed, senderIndex: 0x3333_4444, assignment: f.assignment)
        let server = try #require(serverResult)
        #expect(m2.count == WireFormat.responseLength)
        let client = try initiator.consumeResponse(m2, for: sent)
        #expect(client.suite.name == "chacha20poly1305" && server.suite.name == "chacha20poly1305")
        #expect(client.assignment == f.assignment)
        #expect(client.localIndex == 0x1111_2222 && client.remoteIndex == 0x3333_4444)
        #expect(server.localIndex == 0x3333_4444 && server.remoteIndex == 0x1111_2222)
        #expect(client.sendKey.constantTimeEquals(server.receiveKey))
        #expect(client.receiveKey.constantTimeEquals(server.sendKey))
        #expect(!client.sendKey.constantTimeEquals(client.receiveKey))
        #expect(client.peerKey == f.server.publicKey && server.peerKey == f.client.publicKey)
    }

    @Test func plainIKWorksWithTheSameCode() throws {
        var settings = HandshakeSettings()
        settings.pattern = .ik
        let initiator = HandshakeInitiator(localStatic: f.client, serverKey: f.server.publicKey, settings: settings)
        let responder = HandshakeResponder(localStatic: f.server, settings: settings)
        let (m1, sent) = initiator.createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let consumed = try f.consume(responder, m1)
        let (m2, s) = responder.createResponse(to: consumed, senderIndex: 2, assignment: f.assignment)
        let c = try initiator.consumeResponse(m2, for: sent)
        #expect(try #require(s).receiveKey.constantTimeEquals(c.sendKey))
    }

    @Test func anInitiationForAnotherServerKeyFailsAsWrongServerKey() {
        let other = PrivateKey(random: HashRandom(seed: 9)).publicKey
        let (m1, _) = f.initiator(serverKey: other).createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        expectFailure(.wrongServerKey) { _ = try f.consume(f.responder(), m1) }
    }

    @Test func aClientNotOnTheAllowListFailsAsUnknownClientKey() {
        let (m1, _) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        expectFailure(.unknownClientKey) { _ = try f.consume(f.responder(), m1, allowed: false) }
    }

    @Test func aReplayedOrOlderInitiationFailsAsReplayedInitiation() throws {
        let (m1, _) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let first = try f.consume(f.responder(), m1)
        expectFailure(.replayedInitiation) { _ = try f.consume(f.responder(), m1, last: first.timestamp) }
        expectFailure(.replayedInitiation) { _ = try f.consume(f.responder(), m1, last: f.t2) }
        let (newer, _) = f.initiator().createInitiation(senderIndex: 2, timestamp: f.t2, random: f.random)
        #expect(try f.consume(f.responder(), newer, last: f.t1).timestamp == f.t2)
    }

    @Test func everyCorruptedByteOfAnInitiationIsRefused() {
        let (m1, _) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        // Bytes 4..<8 (sender index) are covered only by mac1; 8..<12 is the key ID; the rest is Noise or MACs.
        for i in 4..<(WireFormat.initiationMAC1Offset + 16) {
            var m = m1
            m[i] ^= 0x01
            let expected: HandshakeFailure = (8..<12).contains(i) ? .wrongServerKey : .corrupted
            expectFailure(expected, { _ = try f.consume(f.responder(), m) }, "byte \(i)")
        }
    }

    @Test func rewritingTheSuiteOfferBreaksTheHandshakeEvenWithAValidMAC1() {
        // An attacker knows the server's public key, so it can recompute mac1; the offer is still bound by
        // the Noise transcript, so changing it cannot downgrade the suite.
        let (m1, _) = f.initiator(suites: [XChaCha20Poly1305.self]).createInitiation(
            senderIndex: 1, timestamp: f.t1, random: f.random)
        let tags = StaticKeyTags(f.server.publicKey)
        let suiteOffset = 12 + 32 + 48 + TAI64N.length  // first offered suite ID inside the encrypted payload
        for flip: UInt8 in [0x01, 0x03, 0x02] {
            var m = m1
            m[suiteOffset] ^= flip
            let mac = m.withUnsafeBytes { tags.mac1(UnsafeRawBufferPointer(rebasing: $0[0..<WireFormat.initiationMAC1Offset])) }
            m.replaceSubrange(WireFormat.initiationMAC1Offset..<(WireFormat.initiationMAC1Offset + 16), with: mac)
            #expect(tags.verifyMAC1(m, offset: WireFormat.initiationMAC1Offset))
            expectFailure(.corrupted) { _ = try f.consume(f.responder(), m) }
        }
    }

    @Test func truncatedOversizedAndWrongTypeMessagesAreMalformed() {
        let (m1, sent) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        expectFailure(.malformed) { _ = try f.consume(f.responder(), Array(m1.dropLast())) }
        expectFailure(.malformed) { _ = try f.consume(f.responder(), m1 + [0]) }
        expectFailure(.malformed) { _ = try f.consume(f.responder(), []) }
        var wrongType = m1
        wrongType[0] = 2
        expectFailure(.malformed) { _ = try f.consume(f.responder(), wrongType) }
        var reserved = m1
        reserved[2] = 1
        expectFailure(.malformed) { _ = try f.consume(f.responder(), reserved) }
        expectFailure(.malformed) { _ = try f.initiator().consumeResponse(Array(repeating: 2, count: 50), for: sent) }
    }

    @Test func noCommonSuiteIsReportedToTheClientInAnAuthenticatedResponse() throws {
        let initiator = f.initiator(suites: [ChaCha20Poly1305.self])
        let responder = f.responder(suites: [XChaCha20Poly1305.self])
        let (m1, sent) = initiator.createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let consumed = try f.consume(responder, m1)
        #expect(responder.chooseSuite(for: consumed.offeredSuiteIDs) == nil)
        let (m2, result) = responder.createResponse(to: consumed, senderIndex: 2, assignment: f.assignment)
        #expect(result == nil)
        expectFailure(.noCommonSuite) { _ = try initiator.consumeResponse(m2, for: sent) }
    }

    @Test func aCorruptedOrMisaddressedResponseIsRefused() throws {
        let initiator = f.initiator()
        let (m1, sent) = initiator.createInitiation(senderIndex: 7, timestamp: f.t1, random: f.random)
        let (m2, _) = f.responder().createResponse(to: try f.consume(f.responder(), m1), senderIndex: 8, assignment: f.assignment)
        for i in [4, 12, 40, 50, 69, 70, 85] {
            var m = m2
            m[i] ^= 0x80
            expectFailure(.corrupted, { _ = try initiator.consumeResponse(m, for: sent) }, "byte \(i)")
        }
        var other = m2
        other[8] ^= 1
        expectFailure(.unexpectedResponse) { _ = try initiator.consumeResponse(other, for: sent) }
        #expect(try initiator.consumeResponse(m2, for: sent).remoteIndex == 8)
    }

    @Test func aPreSharedKeyMismatchFailsTheResponse() throws {
        let initiator = f.initiator(psk: SecretBytes(copying: [UInt8](repeating: 7, count: 32)))
        let (m1, sent) = initiator.createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let responder = f.responder()  // no psk: 32 zero bytes
        let (m2, _) = responder.createResponse(to: try f.consume(responder, m1), senderIndex: 2, assignment: f.assignment)
        expectFailure(.corrupted) { _ = try initiator.consumeResponse(m2, for: sent) }
    }

    @Test func allowListParsesKeysAddressesAndCommentsAndNamesTheBadLine() throws {
        let a = PrivateKey(random: HashRandom(seed: 5)).publicKey
        let b = PrivateKey(random: HashRandom(seed: 6)).publicKey
        let list = try AllowList(parsing: "# clients\n\n\(a.base64) 10.8.0.7  # laptop\n\(b.base64)\n")
        #expect(list.clients == [
            AllowedClient(key: a, address: IPv4Address(10, 8, 0, 7), comment: "laptop"), AllowedClient(key: b),
        ])
        #expect(try AllowList(parsing: list.text) == list)
        #expect(throws: AllowListError(line: 2, message: "public key is not base64 (expected 44 characters, as `tunvpn keygen` or `wg genkey` write)")) {
            try AllowList(parsing: "\(a.base64)\nnot-a-key\n")
        }
        #expect(throws: AllowListError(line: 1, message: "'10.8.0.300' is not an IPv4 address")) {
            try AllowList(parsing: "\(a.base64) 10.8.0.300")
        }
        #expect(throws: AllowListError(line: 2, message: "key \(a.base64) is listed twice")) {
            try AllowList(parsing: "\(a.base64)\n\(a.base64)")
        }
    }

    @Test func timestampsCompareInTimeOrder() {
        #expect(f.t1 < f.t2)
        #expect(TAI64N(secondsSince1970: 5, nanoseconds: 900_000_000) < TAI64N(secondsSince1970: 6, nanoseconds: 0))
        #expect(f.t1.secondsSince1970 == 1_700_000_000)
    }

    @Test func timestampsDecodeTheirNanosecondsRoundedDownToAGranule() {
        let t = TAI64N(secondsSince1970: 9, nanoseconds: 3 * TAI64N.granule + 12_345)
        #expect(t.nanoseconds == 3 * TAI64N.granule)
        #expect(t.secondsSince1970 == 9)
        #expect(TAI64N(bytes: t.bytes) == t)
    }

    @Test func aTimestampAfterAnotherIsItselfWhenLaterElseOneGranuleOn() {
        let last = TAI64N(secondsSince1970: 100, nanoseconds: 5 * TAI64N.granule)
        // Later: kept as is. None before: kept as is.
        let later = TAI64N(secondsSince1970: 101, nanoseconds: 0)
        #expect(later.after(last) == later)
        #expect(later.after(nil) == later)
        // The same granule, or a clock that stepped back: one granule after `last`.
        let same = TAI64N(secondsSince1970: 100, nanoseconds: 5 * TAI64N.granule + 1_000)
        let expected = TAI64N(secondsSince1970: 100, nanoseconds: 6 * TAI64N.granule)
        #expect(same.after(last) == expected)
        #expect(TAI64N(secondsSince1970: 3, nanoseconds: 0).after(last) == expected)
        // The last granule of a second moves on to the next second.
        let lastGranule = TAI64N(secondsSince1970: 100, nanoseconds: 999_999_999)
        #expect(lastGranule.nanoseconds + TAI64N.granule >= 1_000_000_000)
        #expect(lastGranule.after(lastGranule) == TAI64N(secondsSince1970: 101, nanoseconds: 0))
        #expect(lastGranule < lastGranule.nextGranule)
    }
}

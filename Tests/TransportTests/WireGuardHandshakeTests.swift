// WireGuard mode's handshake and frames in the pure core: sizes and layout, both halves against each
// other, the data frame's empty associated data, cookies with BLAKE2s, and the named refusals.

import Crypto
import Testing
import TestSupport

@testable import Transport

@Suite struct WireGuardHandshakeTests {
    let f = Fixture()
    let now: UInt64 = 7 * second

    func initiator(peerKey: PublicKey? = nil, psk: SecretBytes? = nil) -> WireGuardInitiator {
        WireGuardInitiator(localStatic: f.client, peerKey: peerKey ?? f.server.publicKey, psk: psk)
    }

    var responder: WireGuardResponder { WireGuardResponder(localStatic: f.server) }

    func handshake(psk: SecretBytes? = nil) throws -> (client: WireGuardKeys, server: WireGuardKeys, m1: [UInt8], m2: [UInt8]) {
        let (m1, sent) = initiator(psk: psk).createInitiation(senderIndex: 0x0102_0304, timestamp: f.t1, random: f.random)
        let consumed = try responder.consumeInitiation(m1, isAllowed: { _ in true }, lastTimestamp: { _ in nil }, random: f.random)
        let (m2, serverKeys) = responder.createResponse(to: consumed, senderIndex: 0xa0b0_c0d0, psk: psk)
        let clientKeys = try initiator(psk: psk).consumeResponse(m2, for: sent)
        return (clientKeys, serverKeys, m1, m2)
    }

    @Test func theConstantsAreWireGuards() {
        #expect(WireGuardFormat.construction == "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
        #expect(WireGuardFormat.identifier == Array("WireGuard v1 zx2c4 Jason@zx2c4.com".utf8))
        #expect(WireGuardFormat.initiationLength == 148 && WireGuardFormat.responseLength == 92)
        #expect(WireGuardFormat.cookieReplyLength == 64 && WireGuardFormat.minimumDataLength == 32)
        #expect(WireGuardFormat.paddedLength(0, mtu: 1420) == 0)
        #expect(WireGuardFormat.paddedLength(1, mtu: 1420) == 16)
        #expect(WireGuardFormat.paddedLength(84, mtu: 1420) == 96)
        #expect(WireGuardFormat.paddedLength(1419, mtu: 1420) == 1420, "never past the MTU")
    }

    @Test func theInitialChainingKeyAndHashAreWireGuards() throws {
        // Whitepaper §5.4.2: C_i = HASH(CONSTRUCTION), H_i = HASH(C_i ‖ IDENTIFIER), then H_i = HASH(H_i ‖
        // S_r^pub). The expected values are the constants WireGuard's implementations publish for these
        // steps (the last one for the responder key 09 00 … 00).
        let ck = Blake2s.hash(Array(WireGuardFormat.construction.utf8))
        #expect(ck == (try Hex.bytes("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")))
        #expect(Blake2s.hash(ck + WireGuardFormat.identifier) == (try Hex.bytes("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")))
        let responderKey = try #require(PublicKey(bytes: [9] + [UInt8](repeating: 0, count: 31)))
        let noise = NoiseHandshake(
            pattern: .ikpsk2, hash: .blake2s, initiator: true, prologue: WireGuardFormat.identifier, localStatic: f.client,
            localEphemeral: f.server, remoteStatic: responderKey, psk: SecretBytes(zeros: 32))
        #expect(noise.handshakeHash == (try Hex.bytes("575bad75a5a30f85f58df113422a55d41873e357b40a3a2ea91f456c9508211a")))
    }

    @Test func bothHalvesAgreeOnKeysAndTheMessagesHaveWireGuardsLayout() throws {
        let (c, s, m1, m2) = try handshake()
        #expect(m1.count == 148 && m1[0] == 1 && m1[1...3] == [0, 0, 0])
        #expect(m1[4..<8] == [4, 3, 2, 1], "sender index, little-endian")
        #expect(m1[132..<148].allSatisfy { $0 == 0 }, "mac2 is zero without a cookie")
        #expect(m2.count == 92 && m2[0] == 2 && m2[4..<8] == [0xd0, 0xc0, 0xb0, 0xa0] && m2[8..<12] == [4, 3, 2, 1])
        #expect(c.sendKey.constantTimeEquals(s.receiveKey) && c.receiveKey.constantTimeEquals(s.sendKey))
        #expect(!c.sendKey.constantTimeEquals(c.receiveKey))
        #expect(c.localIndex == 0x0102_0304 && c.remoteIndex == 0xa0b0_c0d0 && s.remoteIndex == c.localIndex)
        #expect(s.peerKey == f.client.publicKey && c.peerKey == f.server.publicKey)
    }

    @Test func aPSKOnBothSidesWorksAndAMismatchIsCorrupted() throws {
        let psk = SecretBytes(copying: [UInt8](repeating: 7, count: 32))
        let (c, s, _, _) = try handshake(psk: psk)
        #expect(c.sendKey.constantTimeEquals(s.receiveKey))
        let (m1, sent) = initiator(psk: psk).createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        let consumed = try responder.consumeInitiation(m1, random: f.random)
        let (m2, _) = responder.createResponse(to: consumed, senderIndex: 2, psk: nil)
        #expect(throws: HandshakeFailure.corrupted) { try initiator(psk: psk).consumeResponse(m2, for: sent) }
    }

    @Test func dataFramesUseEmptyAssociatedDataAndTheCounterAsNonce() throws {
        let (c, s, _, _) = try handshake()
        let sender = c.session(createdAt: now)
        let receiver = s.session(createdAt: now)
        let packet: [UInt8] = [0x45, 0, 0, 20] + [UInt8](repeating: 9, count: 16)
        // Garbage after the packet: sealing pads with zeros itself (whitepaper §5.4.6: to a multiple of 16).
        var buffer = [UInt8](repeating: 0, count: 16) + packet + [UInt8](repeating: 0xee, count: 12 + 16)
        let n = try #require(buffer.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: packet.count, session: sender, mtu: 1420) })
        #expect(n == 16 + 32 + 16 && buffer[0..<4] == [4, 0, 0, 0])
        #expect(buffer[4..<8] == [0xd0, 0xc0, 0xb0, 0xa0] && buffer[8..<16] == [0, 0, 0, 0, 0, 0, 0, 0])
        // The same bytes from the Noise CipherState (ChaCha20-Poly1305, nonce 0, ad empty) under the send key.
        var reference = NoiseCipherState(key: c.sendKey)
        #expect(Array(buffer[16..<n]) == reference.encrypt(packet + [UInt8](repeating: 0, count: 12), ad: []))
        let opened = buffer.withUnsafeMutableBytes { DataFrame.open(UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), session: receiver, now: now) }
        #expect(opened == .packet(length: 32))
        #expect(Array(buffer[16..<(16 + packet.count)]) == packet)
        // The header is not authenticated in WireGuard, but its counter is the nonce: a changed counter fails.
        var again = [UInt8](repeating: 0, count: 16) + packet + [UInt8](repeating: 0, count: 12 + 16)
        let m = try #require(again.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: packet.count, session: sender, mtu: 1420) })
        again[8] ^= 1
        let tampered = again.withUnsafeMutableBytes { DataFrame.open(UnsafeMutableRawBufferPointer(rebasing: $0[0..<m]), session: receiver, now: now) }
        #expect(tampered == .dropped(.authentication))
    }

    @Test func paddingStopsAtTheMTUAndKeepalivesStayEmpty() throws {
        let (c, _, _, _) = try handshake()
        let sender = c.session(createdAt: now)
        for (length, mtu, expected) in [(0, 1420, 0), (1, 1420, 16), (16, 1420, 16), (1410, 1420, 1420), (1420, 1420, 1420), (100, 1420, 112)] {
            var buffer = [UInt8](repeating: 0, count: 16 + max(length, mtu) + 16)
            let n = try #require(buffer.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: length, session: sender, mtu: mtu) })
            #expect(n == 16 + expected + 16, "\(length) bytes under MTU \(mtu)")
        }
    }

    @Test func refusalsCarryTunvpnsNamedReasons() throws {
        let (m1, sent) = initiator().createInitiation(senderIndex: 5, timestamp: f.t2, random: f.random)
        var badMAC1 = m1
        badMAC1[120] ^= 1
        #expect(throws: HandshakeFailure.corrupted) { try responder.consumeInitiation(badMAC1, random: f.random) }
        #expect(throws: HandshakeFailure.malformed) { try responder.consumeInitiation(Array(m1.dropLast()), random: f.random) }
        var reserved = m1
        reserved[2] = 1
        #expect(throws: HandshakeFailure.malformed) { try responder.consumeInitiation(reserved, random: f.random) }
        // An initiation made for another responder's key fails its mac1 here: WireGuard has no key ID.
        let other = PrivateKey(random: HashRandom(seed: 99)).publicKey
        let (wrongKey, _) = initiator(peerKey: other).createInitiation(senderIndex: 6, timestamp: f.t2, random: f.random)
        #expect(throws: HandshakeFailure.corrupted) { try responder.consumeInitiation(wrongKey, random: f.random) }
        #expect(throws: HandshakeFailure.unknownClientKey) {
            try responder.consumeInitiation(m1, isAllowed: { _ in false }, lastTimestamp: { _ in nil }, random: f.random)
        }
        #expect(throws: HandshakeFailure.replayedInitiation) {
            try responder.consumeInitiation(m1, isAllowed: { _ in true }, lastTimestamp: { _ in f.t2 }, random: f.random)
        }
        let consumed = try responder.consumeInitiation(m1, isAllowed: { _ in true }, lastTimestamp: { _ in f.t1 }, random: f.random)
        let (m2, _) = responder.createResponse(to: consumed, senderIndex: 8, psk: nil)
        let (_, otherSent) = initiator().createInitiation(senderIndex: 77, timestamp: f.t2, random: f.random)
        #expect(throws: HandshakeFailure.unexpectedResponse) { try initiator().consumeResponse(m2, for: otherSent) }
        var badResponse = m2
        badResponse[70] ^= 1
        #expect(throws: HandshakeFailure.corrupted) { try initiator().consumeResponse(badResponse, for: sent) }
        var badAEAD = m2
        badAEAD[50] ^= 1
        #expect(throws: HandshakeFailure.corrupted) { try initiator().consumeResponse(badAEAD, for: sent) }
        #expect(throws: HandshakeFailure.malformed) { try initiator().consumeResponse(Array(m2.dropLast()), for: sent) }
    }

    @Test func cookieRepliesAndMac2UseBlake2sAndWireGuardsOffsets() throws {
        var checker = CookieChecker(serverKey: f.server.publicKey, layout: .wireGuard)
        var jar = CookieJar(serverKey: f.server.publicKey, layout: .wireGuard)
        let source = Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)
        let (m1, _) = initiator().createInitiation(senderIndex: 42, timestamp: f.t1, random: f.random)
        let before = checker.verifyMAC2(m1, source: source, now: now, random: f.random)
        #expect(!before)
        let reply = checker.makeReply(to: m1, source: source, now: now, random: f.random)
        #expect(reply.count == 64 && reply[0] == 3 && reply[4..<8] == [42, 0, 0, 0])
        let taken = jar.consumeReply(reply, answering: m1, senderIndex: 42, now: now)
        #expect(taken)
        // A tunvpn-layout jar (BLAKE2b keys) cannot open it.
        var tunvpnJar = CookieJar(serverKey: f.server.publicKey)
        let takenByTunvpn = tunvpnJar.consumeReply(reply, answering: m1, senderIndex: 42, now: now)
        #expect(!takenByTunvpn)
        var stamped = initiator().createInitiation(senderIndex: 43, timestamp: f.t2, random: f.random).message
        jar.stamp(&stamped, now: now + second)
        #expect(!stamped[132..<148].allSatisfy { $0 == 0 })
        let good = checker.verifyMAC2(stamped, source: source, now: now + second, random: f.random)
        #expect(good)
        let otherPort = checker.verifyMAC2(stamped, source: Endpoint(address: source.address, port: 40001), now: now + second, random: f.random)
        #expect(!otherPort)
        // mac1 still verifies: mac2 comes after it.
        #expect(try responder.consumeInitiation(stamped, random: f.random).senderIndex == 43)
    }
}

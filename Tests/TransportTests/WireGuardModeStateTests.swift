// The protocol core in WireGuard mode (`ProtocolMode.wireguard`): the same TunnelState, phases, cookies,
// sessions and timers as tunvpn's protocol, with WireGuard's messages on the wire. A client and a server
// core talk to each other here; the interop tests run the same code against wireguard-go.

import Crypto
import Testing

@testable import Transport

@Suite struct WireGuardModeStateTests {
    @Test func aClientAndAServerInWireGuardModeHandshakeAndCarryPacketsBothWays() throws {
        var pair = CorePair(protocolMode: .wireguard)
        let packet = ipv4(clientIP, serverIP)
        #expect({ if case .queued = pair.clientSends(packet) { return true } else { return false } }())
        // The client's own addressing comes up (nothing is pushed in WireGuard).
        #expect(pair.tunnelUps == [TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: .any)])
        #expect(pair.completions == 2 && pair.refusals.isEmpty)
        #expect(pair.deliveredToServer == [packet])
        pair.serverSends(ipv4(serverIP, clientIP, payload: [9, 9, 9]))
        #expect(pair.deliveredToClient == [ipv4(serverIP, clientIP, payload: [9, 9, 9])])
        #expect(pair.drops.isEmpty)
    }

    @Test func theMessagesHaveWireGuardsTypesSizesAndZeroReservedBytes() throws {
        var pair = CorePair(protocolMode: .wireguard)
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        #expect(m1.count == WireGuardFormat.initiationLength && m1[0..<4] == [1, 0, 0, 0])
        // An independent responder (WireGuard.swift's, not the core) accepts it and learns the client key.
        let consumed = try WireGuardResponder(localStatic: pair.f.server).consumeInitiation(m1, random: pair.f.random)
        #expect(consumed.peerKey == pair.f.client.publicKey)
        var serverActions: [ControlAction] = []
        pair.server.handleHandshake(m1, from: pair.clientEndpoint, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &serverActions)
        guard case .sendHandshake(let m2, _) = serverActions.first else { Issue.record("no response"); return }
        #expect(m2.count == WireGuardFormat.responseLength && m2[0..<4] == [2, 0, 0, 0])
        // The data frames are WireGuard's: plaintext padded to 16, header not authenticated.
        pair.perform(serverActions, fromServer: true)
        let session = try #require(pair.client.peers[0].current)
        #expect(session.frame == .wireGuard && session.suite.name == "chacha20poly1305")
    }

    @Test func aPreSharedKeyMustMatchOnBothSides() throws {
        let psk = SecretBytes(randomCount: 32, using: HashRandom(seed: 40))
        var pair = CorePair(protocolMode: .wireguard, psk: psk)
        pair.start()
        #expect(pair.tunnelUps.count == 1 && pair.refusals.isEmpty)
        // With another psk on the server, the client's check of message 2 fails (WireGuard mixes the psk
        // into message 2 only).
        var other = CorePair(protocolMode: .wireguard, psk: psk, serverPSK: SecretBytes(randomCount: 32, using: HashRandom(seed: 41)))
        other.start()
        #expect(other.tunnelUps.isEmpty && other.refusals == [.corrupted])
    }

    @Test func refusalsCarryTheNamedReasonsOfTunvpnMode() throws {
        // A key not on the list: refused, even with allowAnyClient (WireGuard mode has no pool).
        let stranger = PrivateKey(random: HashRandom(seed: 77))
        var unknown = CorePair(clientKey: stranger, protocolMode: .wireguard, allowAnyClient: true)
        unknown.start()
        #expect(unknown.refusals == [.unknownClientKey] && unknown.unknownKeys == [stranger.publicKey])

        var pair = CorePair(protocolMode: .wireguard)
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        func refusal(_ m: [UInt8]) -> [HandshakeFailure] {
            var a: [ControlAction] = []
            pair.server.handleHandshake(m, from: pair.clientEndpoint, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &a)
            return a.compactMap { if case .handshakeRefused(let r, _) = $0 { r } else { nil } }
        }
        var badMAC1 = m1
        badMAC1[WireGuardFormat.initiationMAC1Offset] ^= 1
        #expect(refusal(badMAC1) == [.corrupted])
        #expect(refusal(Array(m1.prefix(147))) == [.malformed])
        #expect(refusal(m1) == [])
        pair.now += second  // past the per-peer rate limit
        #expect(refusal(m1) == [.replayedInitiation], "the same timestamp again")
        // tunvpn's own initiation is no WireGuard message.
        let tunvpn = pair.f.initiator().createInitiation(senderIndex: 3, timestamp: pair.f.t2, random: pair.f.random).message
        #expect(refusal(tunvpn) == [.malformed])
    }

    @Test func aTunvpnServerRefusesAWireGuardInitiationAsMalformed() throws {
        var wg = CorePair(protocolMode: .wireguard)
        var actions: [ControlAction] = []
        wg.client.start(now: wg.now, wall: wg.wall, random: wg.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        var tunvpn = CorePair()
        var a: [ControlAction] = []
        tunvpn.server.handleHandshake(m1, from: tunvpn.clientEndpoint, now: tunvpn.now, wall: tunvpn.wall, random: tunvpn.f.random, actions: &a)
        let refusals: [HandshakeFailure] = a.compactMap { if case .handshakeRefused(let r, _) = $0 { r } else { nil } }
        #expect(refusals == [.malformed])
    }

    @Test func underLoadTheServerSendsAWireGuardCookieReplyAndTheClientRetriesWithMAC2() throws {
        var pair = CorePair(protocolMode: .wireguard)
        var cookieReplies = 0
        func flood(_ count: Int) {
            for i in 0..<count {
                let attacker = WireGuardInitiator(
                    localStatic: PrivateKey(random: HashRandom(seed: UInt8(100 + i % 150))), peerKey: pair.f.server.publicKey)
                let m = attacker.createInitiation(senderIndex: UInt32(i), timestamp: pair.f.t1, random: pair.f.random).message
                var actions: [ControlAction] = []
                let from = Endpoint(address: IPv4Address(10, 66, UInt8(i / 250), UInt8(i % 250 + 1)), port: 9999)
                pair.server.handleHandshake(m, from: from, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
                for a in actions {
                    if case .sendHandshake(let bytes, _) = a, bytes.first == 3 {
                        cookieReplies += 1
                        #expect(bytes.count == WireGuardFormat.cookieReplyLength)
                    }
                }
            }
        }
        flood(300)
        #expect(cookieReplies == 300 - Limits.underLoadInitiationsPerSecond)
        pair.start()
        #expect(pair.refusals == [.cookieRequired] && pair.tunnelUps.isEmpty)
        pair.advance(5)
        flood(300)
        var tries = 0
        while pair.tunnelUps.isEmpty && tries < 20 {
            pair.now += second / 2
            pair.tickBoth()
            tries += 1
        }
        #expect(pair.tunnelUps.count == 1, "connected with mac2 while the flood went on")
    }

    @Test func noSessionGoneHintIsSentInWireGuardMode() {
        var wg = CorePair(protocolMode: .wireguard)
        #expect(wg.server.sessionGoneHint(index: 7, from: .v4(IPv4Address(10, 99, 0, 2)), now: wg.now) == nil)
        var tunvpn = CorePair()
        #expect(tunvpn.server.sessionGoneHint(index: 7, from: .v4(IPv4Address(10, 99, 0, 2)), now: tunvpn.now) != nil)
    }

    @Test func aRekeyAfterRekeyAfterTimeKeepsTrafficFlowing() throws {
        var pair = CorePair(protocolMode: .wireguard)
        pair.clientSends(ipv4(clientIP, serverIP))
        let first = try #require(pair.client.peers[0].current)
        pair.advance(121)
        pair.clientSends(ipv4(clientIP, serverIP))
        pair.clientSends(ipv4(clientIP, serverIP))
        let second = try #require(pair.client.peers[0].current)
        #expect(first !== second && second.frame == .wireGuard)
        pair.serverSends(ipv4(serverIP, clientIP))
        #expect(pair.deliveredToClient.count == 1 && pair.drops.isEmpty)
    }
}

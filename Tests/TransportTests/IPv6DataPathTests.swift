// IPv6 in the data path: the header checks and trim (RFC 8200 §3), cryptokey routing of IPv6 packets, and
// the client's ICMPv6 destination unreachable for IPv6 the tunnel does not carry (RFC 4443 §3.1, with the
// rules of §2.4: no answer to errors or to a packet from no single node, at most 1280 bytes, rate-limited).

import Crypto
import Testing
import TestSupport

@testable import Transport

let client6 = IPv6Address("fd00:8::2")!
let server6 = IPv6Address("fd00:8::1")!
let internet6 = IPv6Address("2001:db8::7")!

/// A UDP/IPv6 packet from `src` to `dst` (valid checksum, no extension headers).
func ipv6(_ src: IPv6Address, _ dst: IPv6Address, payload: [UInt8] = [1, 2, 3, 4]) -> [UInt8] {
    PacketBuilder.ipv6UDP(from: Endpoint(address: src, port: 5000), to: Endpoint(address: dst, port: 53), payload: payload)
}

/// An IPv6 packet whose upper layer is `upper` after the chain of extension headers `chain` (next-header
/// values, each header 8 bytes long; a fragment header is a first fragment unless `fragmentOffset`).
func ipv6(_ src: IPv6Address, _ dst: IPv6Address, chain: [UInt8], upperLayer: UInt8, upper: [UInt8], fragmentOffset: UInt16 = 0) -> [UInt8] {
    var packet = [UInt8](repeating: 0, count: 40)
    packet[0] = 0x60
    packet[6] = chain.first ?? upperLayer
    packet[7] = 64
    packet.replaceSubrange(8..<24, with: src.networkBytes)
    packet.replaceSubrange(24..<40, with: dst.networkBytes)
    for (i, header) in chain.enumerated() {
        var ext = [UInt8](repeating: 0, count: 8)
        ext[0] = i + 1 < chain.count ? chain[i + 1] : upperLayer
        if header == 44 {
            ext[2] = UInt8(fragmentOffset >> 5)
            ext[3] = UInt8((fragmentOffset << 3) & 0xff)
        }
        packet += ext
    }
    packet += upper
    let payload = packet.count - 40
    packet[4] = UInt8(payload >> 8)
    packet[5] = UInt8(payload & 0xff)
    return packet
}

/// `packet`'s ICMPv6 checksum verifies (the sum over the pseudo-header and the message is all ones).
func icmpv6ChecksumVerifies(_ packet: [UInt8]) -> Bool {
    PacketBuilder.internetChecksum(
        packet[40...], initial: PacketBuilder.ipv6PseudoHeaderSum(packet, upperLayerLength: packet.count - 40, nextHeader: 58)) == 0
}

func answer(_ packet: [UInt8], from source: IPv6Address? = nil) -> [UInt8]? {
    packet.withUnsafeBytes { ICMPv6Unreachable.answer(to: $0, from: source) }
}

extension SendDecision {
    var answerBytes: [UInt8]? { if case .answer(let bytes) = self { bytes } else { nil } }
    var dropReason: DropReason? { if case .drop(let reason) = self { reason } else { nil } }
    var isQueued: Bool { if case .queued = self { true } else { false } }
}

@Suite struct IPv6HeaderTests {
    @Test func anIPv6PacketIsReadAndTrimmedToFortyPlusItsPayloadLength() {
        let packet = ipv6(client6, internet6, payload: [9, 9, 9])
        let padded = packet + [0xee, 0xee, 0xee, 0xee]
        let parsed = padded.withUnsafeBytes { IPv6Header.parse($0) }
        #expect(parsed?.source == client6 && parsed?.destination == internet6)
        #expect(parsed?.totalLength == packet.count)
        let either = padded.withUnsafeBytes { IPPacket.parse($0) }
        #expect(either?.source == .v6(client6) && either?.destination == .v6(internet6) && either?.totalLength == packet.count)
        let four = ipv4(clientIP, serverIP)
        #expect(four.withUnsafeBytes { IPPacket.parse($0) }.map { "\($0.source) \($0.destination) \($0.totalLength)" }
            == "10.8.0.2 10.8.0.1 24")
    }

    @Test func malformedIPv6PacketsAreRefused() {
        let packet = ipv6(client6, internet6)
        var jumbo = packet
        jumbo[4] = 0
        jumbo[5] = 0
        var long = packet
        long[5] &+= 1
        var version5 = packet
        version5[0] = 0x50
        for bad in [jumbo, long, version5, Array(packet.prefix(39)), []] {
            #expect(bad.withUnsafeBytes { IPv6Header.parse($0) } == nil)
            #expect(bad.withUnsafeBytes { IPPacket.parse($0) } == nil)
        }
        #expect(Array(packet.prefix(40)).withUnsafeBytes { IPv6Header.destination($0) } == internet6)
        #expect(Array(packet.prefix(39)).withUnsafeBytes { IPv6Header.destination($0) } == nil)
    }
}

@Suite struct ICMPv6UnreachableTests {
    @Test func theAnswerIsADestinationUnreachableCodeOneWithTheInvokingPacketAndAValidChecksum() throws {
        let packet = ipv6(client6, internet6, payload: Array(0..<100))
        let a = try #require(answer(packet, from: server6))
        #expect(a.count == 48 + packet.count)
        #expect(Array(a[0..<4]) == [0x60, 0, 0, 0], "version 6, traffic class and flow label 0")
        #expect(Int(a[4]) << 8 | Int(a[5]) == 8 + packet.count, "payload length")
        #expect(a[6] == 58 && a[7] == 64, "ICMPv6, hop limit 64")
        #expect(Array(a[8..<24]) == server6.networkBytes && Array(a[24..<40]) == client6.networkBytes)
        #expect(a[40] == 1 && a[41] == 1, "type 1 (destination unreachable), code 1 (administratively prohibited)")
        #expect(Array(a[44..<48]) == [0, 0, 0, 0], "unused")
        #expect(Array(a[48...]) == packet)
        #expect(icmpv6ChecksumVerifies(a))
        var corrupted = a
        corrupted[60] ^= 1
        #expect(!icmpv6ChecksumVerifies(corrupted))
        // Without a tunnel address of its own the client answers from the address that was not reached.
        let b = try #require(answer(packet))
        #expect(Array(b[8..<24]) == internet6.networkBytes && icmpv6ChecksumVerifies(b))
    }

    @Test func theAnswerCarriesAsMuchOfTheInvokingPacketAsFitsIn1280Bytes() throws {
        let big = ipv6(client6, internet6, payload: Array(repeating: 0xab, count: 1400))
        let a = try #require(answer(big, from: server6))
        #expect(a.count == 1280)
        #expect(Int(a[4]) << 8 | Int(a[5]) == 1240)
        #expect(Array(a[48...]) == Array(big.prefix(1232)))
        #expect(icmpv6ChecksumVerifies(a))
        // One byte under the limit is carried whole; an odd length still checksums.
        let fits = ipv6(client6, internet6, payload: Array(repeating: 1, count: 1232 - 48 - 1))
        let b = try #require(answer(fits))
        #expect(b.count == 1279 && Array(b[48...]) == fits && icmpv6ChecksumVerifies(b))
    }

    @Test func icmpv6ErrorsAndPacketsFromNoSingleNodeGetNoAnswer() {
        // Errors (type < 128) and redirects are never answered (RFC 4443 §2.4 (e.1), (e.2)); informational
        // messages such as an echo request are.
        for type: UInt8 in [1, 2, 3, 4, 127, 137] {
            #expect(answer(ipv6(client6, internet6, chain: [], upperLayer: 58, upper: [type, 0, 0, 0, 0, 0, 0, 0])) == nil, "type \(type)")
        }
        #expect(answer(ipv6(client6, internet6, chain: [], upperLayer: 58, upper: [128, 0, 0, 0, 0, 1, 0, 1])) != nil)
        // Behind extension headers, too; a later fragment (whose type is unknown) or a cut chain is not answered.
        #expect(answer(ipv6(client6, internet6, chain: [0, 60], upperLayer: 58, upper: [1, 0, 0, 0, 0, 0, 0, 0])) == nil)
        #expect(answer(ipv6(client6, internet6, chain: [44], upperLayer: 58, upper: [3, 0, 0, 0, 0, 0, 0, 0])) == nil)
        #expect(answer(ipv6(client6, internet6, chain: [0, 44], upperLayer: 17, upper: Array(repeating: 0, count: 8))) != nil)
        #expect(answer(ipv6(client6, internet6, chain: [44], upperLayer: 17, upper: [], fragmentOffset: 100)) == nil)
        #expect(answer(Array(ipv6(client6, internet6, chain: [0], upperLayer: 17, upper: []).prefix(41))) == nil)
        // From the unspecified address or a multicast address, or to a multicast address (e.3, e.6).
        #expect(answer(ipv6(.any, internet6)) == nil)
        #expect(answer(ipv6(IPv6Address("ff02::1")!, internet6)) == nil)
        #expect(answer(ipv6(client6, IPv6Address("ff0e::1")!)) == nil)
        // Not IPv6 at all.
        #expect(answer(ipv4(clientIP, serverIP)) == nil)
        #expect(answer(Array(ipv6(client6, internet6).prefix(39))) == nil)
    }
}

/// A client core with `settings`' IPv6 options, talking to a server that gives out no IPv6 address (as
/// long as the server has no IPv6 prefix).
func ipv6Pair(ipv6Disabled: Bool = false, address6: IPv6Prefix? = nil, egress: Bool = false) -> CorePair {
    var pair = CorePair()
    let initiator = HandshakeInitiator(localStatic: pair.f.client, serverKey: pair.f.server.publicKey)
    pair.client = TunnelState(role: .client(ClientSettings(
        initiator: initiator, endpoint: pair.serverEndpoint, ipv6Disabled: ipv6Disabled)))
    pair.server = TunnelState(role: .server(ServerSettings(
        responder: HandshakeResponder(localStatic: pair.f.server), address: IPv4Prefix("10.8.0.1/16")!,
        address6: address6, ipv6Egress: egress,
        allowList: AllowList(clients: [AllowedClient(key: pair.f.client.publicKey)]), allowAnyClient: false)))
    return pair
}

@Suite struct ClientIPv6Tests {
    @Test func withNoIPv6EveryIPv6PacketIsAnsweredAtOnceEvenBeforeTheTunnelIsUp() throws {
        var pair = ipv6Pair(ipv6Disabled: true, address6: IPv6Prefix("fd00:8::1/64"), egress: true)
        let packet = ipv6(client6, internet6)
        let before = try #require(pair.clientSends(packet).answerBytes)
        #expect(before[40] == 1 && before[41] == 1 && Array(before[48...]) == packet)
        #expect(pair.client.assignmentInForce == nil, "no handshake was started for it")
        pair.start()
        #expect(pair.tunnelUps.count == 1)
        #expect(pair.clientSends(ipv6(client6, server6)).answerBytes != nil, "not even the server's own address")
        #expect(pair.clientSends(ipv4(clientIP, serverIP)).isSend)
        #expect(pair.deliveredToServer.count == 1)
    }

    @Test func aTunnelWithoutIPv6AnswersIPv6AndQueuedIPv6PacketsAreAnsweredWhenItComesUp() throws {
        var pair = ipv6Pair()
        // Before the first handshake the client cannot know: packets of both families wait.
        let waiting6 = ipv6(client6, internet6, payload: [6])
        let waiting4 = ipv4(clientIP, serverIP, payload: [4])
        var actions: [ControlAction] = []
        for packet in [waiting6, waiting4] {
            let d = packet.withUnsafeBytes { pair.client.route($0, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions) }
            #expect(d.isQueued)
        }
        pair.perform(actions, fromServer: false)  // the initiation: the handshake completes, the queue is sorted
        #expect(pair.tunnelUps.first.map { $0.client6 == nil } == true)
        #expect(pair.refusedQueued == 1)
        #expect(pair.answeredQueued.count == 1 && Array(pair.answeredQueued[0][48...]) == waiting6)
        #expect(pair.deliveredToServer == [waiting4])
        // Once up, an IPv6 packet is answered right away.
        let a = try #require(pair.clientSends(ipv6(client6, internet6)).answerBytes)
        #expect(Array(a[8..<24]) == internet6.networkBytes, "no server IPv6 address: from the destination")
        #expect(pair.deliveredToServer.count == 1)
    }

    @Test func multicastAndLinkLocalDestinationsAreDroppedUnanswered() {
        for disabled in [false, true] {
            var pair = ipv6Pair(ipv6Disabled: disabled)
            pair.start()
            for destination in ["ff02::2", "ff0e::1", "fe80::1", "febf::1"] {
                #expect(pair.clientSends(ipv6(client6, IPv6Address(destination)!)).dropReason == .noRoute, "\(destination)")
            }
            #expect(pair.clientSends(ipv6(client6, IPv6Address("fec0::1")!)).answerBytes != nil, "outside fe80::/10")
        }
    }

    @Test func theVerdictFollowsTheAssignmentsIPv6AndEgress() {
        let policy = ClientIPv6Policy(ipv6Disabled: false)
        let prefix = IPv6Prefix(address: client6, length: 64)
        let base = TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: serverIP)
        let noEgress = TunnelAssignment(client: base.client, server: serverIP, client6: prefix, server6: server6, ipv6Egress: false)
        let egress = TunnelAssignment(client: base.client, server: serverIP, client6: prefix, server6: server6, ipv6Egress: true)
        #expect(policy.verdict(destination: internet6, assignment: nil) == .carry)
        #expect(policy.verdict(destination: internet6, assignment: base) == .unreachable)
        #expect(policy.verdict(destination: internet6, assignment: noEgress) == .unreachable)
        #expect(policy.verdict(destination: server6, assignment: noEgress) == .carry)
        #expect(policy.verdict(destination: IPv6Address("fd00:8::99")!, assignment: noEgress) == .carry)
        #expect(policy.verdict(destination: IPv6Address("fd00:9::1")!, assignment: noEgress) == .unreachable)
        #expect(policy.verdict(destination: internet6, assignment: egress) == .carry)
        #expect(ClientIPv6Policy(ipv6Disabled: true).verdict(destination: server6, assignment: egress) == .unreachable)
        #expect(policy.verdict(destination: IPv6Address("ff02::1")!, assignment: egress) == .noRoute)
    }

    @Test func answersAreLimitedTo200AtOnceAnd1000ASecond() {
        var pair = ipv6Pair(ipv6Disabled: true)
        let packet = ipv6(client6, internet6)
        for i in 0..<200 { #expect(pair.clientSends(packet).answerBytes != nil, "answer \(i)") }
        #expect(pair.clientSends(packet).dropReason == .ipv6Unreachable, "the 201st at the same instant")
        pair.now += 1_000_000  // 1 ms: one more token
        #expect(pair.clientSends(packet).answerBytes != nil)
        #expect(pair.clientSends(packet).dropReason == .ipv6Unreachable)
        pair.now += 1_000_000_000
        for _ in 0..<200 { #expect(pair.clientSends(packet).answerBytes != nil) }
        #expect(pair.clientSends(packet).dropReason == .ipv6Unreachable, "a long pause refills at most the burst")
    }

    @Test func anIPv6ErrorTheTunnelDoesNotCarryIsDroppedUnanswered() {
        var pair = ipv6Pair(ipv6Disabled: true)
        let error = ipv6(client6, internet6, chain: [], upperLayer: 58, upper: [1, 4, 0, 0, 0, 0, 0, 0])
        #expect(pair.clientSends(error).dropReason == .ipv6Unreachable)
    }
}

@Suite struct IPv6CryptokeyRoutingTests {
    @Test func theClientDeliversIPv6FromTheServerTrimmedToItsPayloadLength() throws {
        var pair = ipv6Pair()
        pair.start()
        let session = try #require(pair.server.peers[0].current)
        let packet = ipv6(internet6, client6, payload: [7, 7])
        pair.deliver(CorePair.seal(packet + [0, 0, 0], session), toServer: false, from: pair.serverEndpoint)
        #expect(pair.deliveredToClient == [packet])
        var bad = packet
        bad[5] &+= 10  // payload length past the end
        pair.deliver(CorePair.seal(bad, session), toServer: false, from: pair.serverEndpoint)
        pair.deliver(CorePair.seal([0x50] + Array(repeating: 0, count: 40), session), toServer: false, from: pair.serverEndpoint)
        #expect(pair.drops == [.notIP, .notIP])
    }

    @Test func theServerDropsIPv6FromAnAddressThePeerDoesNotOwn() throws {
        var pair = ipv6Pair(address6: IPv6Prefix("fd00:8::1/64"))
        pair.start()
        let session = try #require(pair.client.peers[0].current)
        let owned = pair.server.peers[0].address6
        let spoofed = ipv6(IPv6Address("fd00:8::66")!, server6)
        #expect(owned != IPv6Address("fd00:8::66")!)
        pair.deliver(CorePair.seal(spoofed, session), toServer: true, from: pair.clientEndpoint)
        #expect(pair.drops == [.sourceNotAllowed])
        #expect(pair.deliveredToServer.isEmpty)
        // An IPv6 destination no peer owns has no route on the server.
        #expect(pair.serverSends(ipv6(server6, IPv6Address("fd00:8::99")!)).dropReason == .noRoute)
        #expect(pair.serverSends([0x70] + Array(repeating: 0, count: 40)).dropReason == .notIP)
    }

    @Test
    func theServerRoutesIPv6ByDestinationAndChecksTheInnerSource() throws {
        var pair = ipv6Pair(address6: IPv6Prefix("fd00:8::1/64"), egress: false)
        pair.start()
        let assignment = try #require(pair.tunnelUps.first)
        let mine = try #require(assignment.client6?.address)
        let server = try #require(assignment.server6)
        #expect(pair.server.peers[0].address6 == mine)
        // Inside the tunnel's prefix the client sends even without egress; the server checks the source.
        let up = ipv6(mine, server, payload: [1])
        #expect(pair.clientSends(up).isSend)
        #expect(pair.deliveredToServer == [up])
        #expect(pair.clientSends(ipv6(mine, internet6)).answerBytes != nil, "no egress: answered")
        // The server routes by the IPv6 destination to the client that owns it.
        let down = ipv6(server, mine, payload: [2])
        guard case .send(_, let endpoint, _) = pair.serverSends(down) else {
            Issue.record("no route to \(mine)")
            return
        }
        #expect(endpoint == pair.clientEndpoint)
        #expect(pair.deliveredToClient == [down])
    }
}

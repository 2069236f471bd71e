// TUN offloads over IPv6: TCP/IPv6 (gso_type TCPV6) and UDP/IPv6 (GSO_UDP_L4) super-packets split into
// valid packets, runs of one flow merged back, and what is refused: IPv6 extension headers, payload
// lengths that disagree with the buffer, other flows. Packets come from TestSupport's PacketBuilder,
// whose checksums (RFC 8200 section 8.1 pseudo-header) are computed independently of Platform's.

import Testing
import TestSupport
import Transport

@testable import Platform

private let clientAddress = IPv6Address("fd00:77::2")!
private let serverAddress = IPv6Address("fd00:77::1")!
private let client = Endpoint(address: clientAddress, port: 40000)
private let server = Endpoint(address: serverAddress, port: 5201)
/// NOP, NOP, timestamps: 12 option bytes, so the TCP header is 32 bytes.
private let timestamps: [UInt8] = [1, 1, 8, 10, 0, 1, 0xe2, 0x40, 0, 0, 0x30, 0x39]

private func tcp6(
    seq: UInt32, flags: UInt8, payload: [UInt8], from: Endpoint = client, to: Endpoint = server, hopLimit: UInt8 = 64,
    trafficClass: UInt8 = 0x28, flowLabel: UInt32 = 0x1_2345
) -> [UInt8] {
    PacketBuilder.ipv6TCP(
        from: from, to: to, sequence: seq, acknowledgment: 0x3039, flags: flags, window: 501, options: timestamps,
        payload: payload, hopLimit: hopLimit, trafficClass: trafficClass, flowLabel: flowLabel)
}

/// Every packet `segment` makes of `packet`, each into a buffer of exactly `ip + transport + size` bytes.
private func splitAll(_ packet: [UInt8], ip: Int, transport: Int, size: Int, udp: Bool) -> [[UInt8]] {
    var out: [[UInt8]] = []
    for index in 0..<100 {
        var buffer = [UInt8](repeating: 0xee, count: ip + transport + size)
        let n = packet.withUnsafeBytes { p in
            buffer.withUnsafeMutableBytes { o in
                udp
                    ? UDPSegmentation.segment(p.baseAddress!, length: p.count, ipHeader: ip, size: size, index: index, into: o.baseAddress!)
                    : TCPSegmentation.segment(
                        p.baseAddress!, length: p.count, ipHeader: ip, tcpHeader: transport, mss: size, index: index,
                        into: o.baseAddress!)
            }
        }
        if n == 0 { break }
        out.append(Array(buffer.prefix(n)))
    }
    return out
}

private func be16(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) << 8 | Int(b[at + 1]) }

@Suite struct IPv6OffloadTests {
    @Test func aTCPv6SuperPacketSplitsIntoValidSegmentsThatCarryItsPayloadInOrder() throws {
        var random = SeededRandom(seed: 61)
        let payload = (0..<5000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let superPacket = tcp6(seq: 0xffff_f000, flags: 0x10 | 0x08 | 0x01 | 0x80, payload: payload)  // ACK PSH FIN CWR
        let h = try #require(superPacket.withUnsafeBytes { TCPSegmentation.ipv6Headers($0.baseAddress!, length: $0.count) })
        #expect(h.ip == 40 && h.tcp == 32)
        #expect(superPacket.withUnsafeBytes { TCPSegmentation.anyHeaders($0.baseAddress!, length: $0.count) }.map { $0 == h } == true)
        #expect(superPacket.withUnsafeBytes { TCPSegmentation.headers($0.baseAddress!, length: $0.count) } == nil, "not IPv4")

        let segments = splitAll(superPacket, ip: 40, transport: 32, size: 1380, udp: false)
        #expect(segments.map(\.count) == [1452, 1452, 1452, 72 + 860])
        var joined: [UInt8] = []
        for (i, s) in segments.enumerated() {
            let parsed = try #require(PacketBuilder.parseIPv6TCP(s), "segment \(i) parses (payload length agrees)")
            #expect(parsed.checksumValid, "segment \(i): TCP checksum over the IPv6 pseudo-header")
            #expect(be16(s, 4) == s.count - 40, "segment \(i): payload length")
            #expect(parsed.sequence == 0xffff_f000 &+ UInt32(i * 1380), "segment \(i): sequence numbers wrap correctly")
            let last = i == segments.count - 1
            #expect((parsed.flags & 0x09 != 0) == last, "FIN and PSH only on the last segment")
            #expect((parsed.flags & 0x80 != 0) == (i == 0), "CWR only on the first")
            #expect(parsed.flags & 0x10 != 0, "ACK on every segment")
            #expect(parsed.options == timestamps && parsed.acknowledgment == 0x3039 && parsed.window == 501)
            #expect(parsed.trafficClass == 0x28 && parsed.flowLabel == 0x1_2345 && parsed.hopLimit == 64)
            #expect(parsed.source == client && parsed.destination == server)
            // Every header byte but the payload length, sequence number, flags and checksum is copied.
            for at in 0..<72 where ![4, 5, 44, 45, 46, 47, 53, 56, 57].contains(at) {
                #expect(s[at] == superPacket[at], "segment \(i): header byte \(at)")
            }
            joined += parsed.payload
        }
        #expect(joined == payload)
    }

    @Test func aSegmentWithoutPayloadAndAnExactMultipleSplitRight() throws {
        let empty = tcp6(seq: 7, flags: 0x11, payload: [])
        let one = splitAll(empty, ip: 40, transport: 32, size: 1000, udp: false)
        #expect(one.count == 1 && one[0] == empty, "a super-packet without payload is one segment, unchanged")
        let exact = tcp6(seq: 7, flags: 0x18, payload: [UInt8](repeating: 9, count: 3000))
        let three = splitAll(exact, ip: 40, transport: 32, size: 1000, udp: false)
        #expect(three.count == 3)
        #expect(three.allSatisfy { PacketBuilder.parseIPv6TCP($0)?.checksumValid == true })
        #expect(three.map { $0[53] } == [0x10, 0x10, 0x18], "PSH only on the last")
    }

    @Test func consecutiveTCPv6SegmentsMergeIntoASuperPacketThatSplitsBackIntoThem() throws {
        let chunks = (0..<4).map { i in [UInt8](repeating: UInt8(i + 1), count: i == 3 ? 500 : 1380) }
        let packets = chunks.enumerated().map { i, c in tcp6(seq: 1000 + UInt32(i * 1380), flags: i == 3 ? 0x18 : 0x10, payload: c) }
        let h = (ip: 40, tcp: 32)
        var expected: UInt32 = 1000 + 1380
        for i in 1..<4 {
            let ok = packets[0].withUnsafeBytes { a in
                packets[i].withUnsafeBytes { b in
                    TCPSegmentation.canFollow(a.baseAddress!, h, b.baseAddress!, h, expectedSequence: expected)
                }
            }
            #expect(ok, "segment \(i) follows")
            expected += UInt32(chunks[i].count)
        }
        #expect(packets[0].withUnsafeBytes { TCPSegmentation.canStartRun($0.baseAddress!, h, length: $0.count) })
        let total = 72 + chunks.reduce(0) { $0 + $1.count }
        var merged = packets[0]
        let header = merged.withUnsafeMutableBytes {
            TCPSegmentation.finishMerge($0.baseAddress!, headers: h, totalLength: total, mss: 1380, pushLast: true)
        }
        #expect(header.gsoType == VirtioNetHeader.gsoTCPv6 && header.gsoSize == 1380 && header.flags == VirtioNetHeader.needsChecksum)
        #expect(header.checksumStart == 40 && header.checksumOffset == 16 && header.headerLength == 72)
        for i in 1..<4 { merged += packets[i][72...] }
        #expect(merged.count == total && be16(merged, 4) == total - 40, "payload length of the merged packet")
        #expect(merged[53] & 0x08 != 0, "the last segment's PSH is kept")
        // Completing the partial checksum, as the kernel does, gives a valid packet.
        #expect(merged.withUnsafeMutableBytes { InternetChecksum.completePartial($0.baseAddress!, length: $0.count, start: 40, offset: 16) })
        let parsed = try #require(PacketBuilder.parseIPv6TCP(merged))
        #expect(parsed.checksumValid)
        #expect(parsed.payload == chunks.flatMap { $0 })
        // Split as the kernel would split it for a receiver: the very segments that went in.
        #expect(splitAll(merged, ip: 40, transport: 32, size: 1380, udp: false) == packets)
    }

    @Test func tcpv6SegmentsOfAnotherFlowOrWithOtherIPv6FieldsDoNotMerge() {
        let h = (ip: 40, tcp: 32)
        let first = tcp6(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 100))
        func follows(_ next: [UInt8], _ seq: UInt32 = 101) -> Bool {
            guard let nh = next.withUnsafeBytes({ TCPSegmentation.anyHeaders($0.baseAddress!, length: $0.count) }) else { return false }
            return first.withUnsafeBytes { a in
                next.withUnsafeBytes { b in
                    TCPSegmentation.canFollow(a.baseAddress!, h, b.baseAddress!, nh, expectedSequence: seq)
                }
            }
        }
        #expect(follows(tcp6(seq: 101, flags: 0x10, payload: [2])))
        #expect(follows(tcp6(seq: 101, flags: 0x18, payload: [2])), "PSH may end a run")
        #expect(!follows(tcp6(seq: 102, flags: 0x10, payload: [2])), "a gap")
        #expect(!follows(tcp6(seq: 101, flags: 0x11, payload: [2])), "FIN")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], hopLimit: 63)), "another hop limit")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], trafficClass: 0)), "another traffic class")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], flowLabel: 0x1_2346)), "another flow label")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], from: Endpoint(address: clientAddress, port: 40001))), "another port")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], from: Endpoint(address: IPv6Address("fd00:77::3")!, port: 40000))),
            "another source")
        #expect(!follows(tcp6(seq: 101, flags: 0x10, payload: [2], to: Endpoint(address: IPv6Address("fd00:78::1")!, port: 5201))),
            "another destination")
        #expect(!follows(tcpPacket(seq: 101, flags: 0x10, payload: [2])), "an IPv4 segment")
        // Nor does an IPv4 run take an IPv6 segment.
        let v4 = tcpPacket(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 100))
        let next6 = tcp6(seq: 101, flags: 0x10, payload: [2])
        #expect(!v4.withUnsafeBytes { a in
            next6.withUnsafeBytes { b in
                TCPSegmentation.canFollow(a.baseAddress!, (20, 32), b.baseAddress!, h, expectedSequence: 101)
            }
        })
    }

    @Test func ipv6PacketsWithExtensionHeadersOrBadLengthsAreNotTaken() {
        let plain = tcp6(seq: 1, flags: 0x10, payload: [UInt8](repeating: 5, count: 200))
        func tcpHeaders(_ p: [UInt8]) -> (ip: Int, tcp: Int)? {
            p.withUnsafeBytes { TCPSegmentation.anyHeaders($0.baseAddress!, length: $0.count) }
        }
        #expect(tcpHeaders(plain) != nil)
        // A hop-by-hop options header (next header 0, 8 bytes: next header TCP, length 0, PadN) in front
        // of the same TCP segment.
        var hopByHop = Array(plain[0..<40]) + [6, 0, 1, 4, 0, 0, 0, 0] + Array(plain[40...])
        hopByHop[6] = 0
        hopByHop[5] &+= 8
        #expect(tcpHeaders(hopByHop) == nil, "extension headers")
        var routing = hopByHop
        routing[6] = 43  // a routing header
        #expect(tcpHeaders(routing) == nil)
        var jumbo = plain
        jumbo[4] = 0
        jumbo[5] = 0
        #expect(tcpHeaders(jumbo) == nil, "payload length 0 (a jumbogram's)")
        var short = plain
        short[5] &-= 1
        #expect(tcpHeaders(short) == nil, "payload length short of the buffer")
        #expect(tcpHeaders(Array(plain[0..<59])) == nil, "no whole TCP header")
        var longOptions = plain
        longOptions[52] = 0xf0  // a 60-byte TCP header in a packet with 32 + 200 bytes: fits, taken
        #expect(tcpHeaders(longOptions)?.tcp == 60)
        #expect(tcpHeaders(Array(longOptions[0..<90]).withPayloadLength(50)) == nil, "a TCP header longer than the packet")
        var notTCP = plain
        notTCP[6] = 17
        #expect(tcpHeaders(notTCP) == nil)

        let datagram = PacketBuilder.ipv6UDP(from: client, to: server, payload: [UInt8](repeating: 3, count: 100))
        func udpHeader(_ p: [UInt8]) -> Int? { p.withUnsafeBytes { UDPSegmentation.anyIPHeader($0.baseAddress!, length: $0.count) } }
        func mergeable(_ p: [UInt8]) -> Bool { p.withUnsafeBytes { UDPSegmentation.mergeable($0.baseAddress!, length: $0.count) } }
        #expect(udpHeader(datagram) == 40 && mergeable(datagram))
        var udpHopByHop = Array(datagram[0..<40]) + [17, 0, 1, 4, 0, 0, 0, 0] + Array(datagram[40...])
        udpHopByHop[6] = 0
        udpHopByHop[5] &+= 8
        #expect(udpHeader(udpHopByHop) == nil && !mergeable(udpHopByHop), "extension headers")
        var shortUDP = datagram
        shortUDP[45] -= 4  // UDP length 4 bytes short of the packet
        #expect(udpHeader(shortUDP) == 40 && !mergeable(shortUDP))
        #expect(!mergeable(datagram + [0, 0]), "payload length short of the buffer")
        #expect(udpHeader(Array(datagram[0..<47]).withPayloadLength(7)) == nil, "no whole UDP header")
    }

    @Test func udpv6DatagramsMergeIntoASuperPacketThatSplitsBackIntoThem() throws {
        let datagrams = (0..<5).map { i in
            PacketBuilder.ipv6UDP(from: client, to: server, payload: [UInt8](repeating: UInt8(i), count: i == 4 ? 300 : 1000))
        }
        func follows(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            a.withUnsafeBytes { x in b.withUnsafeBytes { UDPSegmentation.canFollow(x.baseAddress!, $0.baseAddress!) } }
        }
        #expect(datagrams.dropFirst().allSatisfy { follows(datagrams[0], $0) })
        #expect(datagrams[0].withUnsafeBytes { UDPSegmentation.mergeHeaderLength($0.baseAddress!) } == 48)
        #expect(!follows(datagrams[0], PacketBuilder.ipv6UDP(from: client, to: Endpoint(address: serverAddress, port: 5202), payload: [1])))
        #expect(!follows(datagrams[0], PacketBuilder.ipv6UDP(from: client, to: server, payload: [1], hopLimit: 1)), "hop limit")
        var otherFlowLabel = datagrams[1]
        otherFlowLabel[3] = 1
        #expect(!follows(datagrams[0], otherFlowLabel), "flow label")
        var otherClass = datagrams[1]
        otherClass[1] = 0x80
        #expect(!follows(datagrams[0], otherClass), "traffic class")
        #expect(!follows(datagrams[0], PacketBuilder.ipv4UDP(
            from: Endpoint(address: IPv4Address(10, 8, 0, 2), port: 40000), to: Endpoint(address: IPv4Address(10, 8, 0, 1), port: 5201),
            payload: [UInt8](repeating: 1, count: 100))), "an IPv4 datagram")

        var merged = datagrams[0]
        for d in datagrams.dropFirst() { merged += d[48...] }
        let header = merged.withUnsafeMutableBytes { UDPSegmentation.finishMerge($0.baseAddress!, totalLength: $0.count, size: 1000) }
        #expect(header.gsoType == UDPSegmentation.gsoUDPL4 && header.gsoSize == 1000 && header.flags == VirtioNetHeader.needsChecksum)
        #expect(header.headerLength == 48 && header.checksumStart == 40 && header.checksumOffset == 6)
        #expect(be16(merged, 4) == merged.count - 40 && be16(merged, 44) == merged.count - 40, "payload and UDP lengths")
        var completed = merged
        #expect(completed.withUnsafeMutableBytes { InternetChecksum.completePartial($0.baseAddress!, length: $0.count, start: 40, offset: 6) })
        #expect(PacketBuilder.parseIPv6UDP(completed)?.udpChecksumValid == true)
        let split = splitAll(merged, ip: 40, transport: 8, size: 1000, udp: true)
        #expect(split.count == 5)
        for (i, d) in split.enumerated() {
            let parsed = try #require(PacketBuilder.parseIPv6UDP(d))
            #expect(parsed.udpChecksumValid, "datagram \(i)")
            #expect(be16(d, 4) == d.count - 40, "datagram \(i): payload length")
        }
        #expect(split == datagrams, "byte for byte the datagrams that went in")
    }

    @Test func theReaderSplitsOnlySuperPacketsWhoseHeadersAreWhatTheirGSOTypeSays() {
        func plan(_ gso: UInt8, size: UInt16 = 1000, _ packet: [UInt8]) -> (ip: Int, transport: Int, udp: Bool)? {
            var header = VirtioNetHeader()
            header.flags = VirtioNetHeader.needsChecksum
            header.gsoType = gso
            header.gsoSize = size
            return packet.withUnsafeBytes { TunDevice.splitPlan(header, $0.baseAddress!, length: $0.count) }
        }
        let tcp = tcp6(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 3000))
        let udp = PacketBuilder.ipv6UDP(from: client, to: server, payload: [UInt8](repeating: 2, count: 3000))
        let tcp4 = tcpPacket(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 3000))
        #expect(plan(VirtioNetHeader.gsoTCPv6, tcp).map { [$0.ip, $0.transport] } == [40, 32])
        #expect(plan(VirtioNetHeader.gsoTCPv6 | VirtioNetHeader.gsoECN, tcp) != nil, "ECN")
        #expect(plan(UDPSegmentation.gsoUDPL4, udp).map { [$0.ip, $0.transport] } == [40, 8])
        #expect(plan(UDPSegmentation.gsoUDPL4, udp)?.udp == true)
        #expect(plan(VirtioNetHeader.gsoTCPv4, tcp4).map { [$0.ip, $0.transport] } == [20, 32])
        #expect(plan(VirtioNetHeader.gsoTCPv4, tcp) == nil, "TCPV4 over an IPv6 packet")
        #expect(plan(VirtioNetHeader.gsoTCPv6, tcp4) == nil, "TCPV6 over an IPv4 packet")
        #expect(plan(VirtioNetHeader.gsoTCPv6, udp) == nil, "TCPV6 over UDP")
        #expect(plan(VirtioNetHeader.gsoTCPv6, size: 0, tcp) == nil, "gso_size 0")
        #expect(plan(3, udp) == nil, "UFO (gso_type UDP) is not split")
        var hopByHop = Array(tcp[0..<40]) + [6, 0, 1, 4, 0, 0, 0, 0] + Array(tcp[40...])
        hopByHop[6] = 0
        hopByHop[5] &+= 8
        #expect(plan(VirtioNetHeader.gsoTCPv6, hopByHop) == nil, "extension headers")
        #expect(plan(VirtioNetHeader.gsoTCPv6, Array(tcp[0..<50])) == nil, "cut short")
        #expect(plan(VirtioNetHeader.gsoTCPv6, [0x60]) == nil, "one byte")
        let huge = tcp6(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 65535 - 32))
        #expect(plan(VirtioNetHeader.gsoTCPv6, huge) == nil, "longer than 65535 bytes")
    }
}

extension Array where Element == UInt8 {
    /// The IPv6 packet with its payload length field set to `length`.
    fileprivate func withPayloadLength(_ length: Int) -> [UInt8] {
        var p = self
        p[4] = UInt8(length >> 8)
        p[5] = UInt8(length & 0xff)
        return p
    }
}

// TCP segmentation and merging for TUN offloads: checksums against a naive reference, super-packets split
// into valid segments, and segments merged back into the super-packet the kernel expects.

import Platform
import Testing
import TestSupport

/// Naive RFC 1071 checksum: 16-bit words, one at a time.
func naiveSum(_ bytes: [UInt8]) -> UInt32 {
    var s: UInt32 = 0
    var i = 0
    while i + 1 < bytes.count {
        s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { s += UInt32(bytes[i]) << 8 }
    while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
    return s
}

/// A TCP/IPv4 packet with a timestamp option: 20 + 32 header bytes, then `payload`.
func tcpPacket(seq: UInt32, flags: UInt8, payload: [UInt8], id: UInt16 = 0x1234, srcPort: UInt16 = 40000) -> [UInt8] {
    let total = 20 + 32 + payload.count
    var p: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), UInt8(id >> 8), UInt8(id & 0xff), 0x40, 0, 64, 6, 0, 0,
        10, 8, 0, 2, 198, 51, 100, 2]
    p += [UInt8(srcPort >> 8), UInt8(srcPort & 0xff), 0x14, 0x51]
    p += [UInt8(seq >> 24), UInt8((seq >> 16) & 0xff), UInt8((seq >> 8) & 0xff), UInt8(seq & 0xff)]
    p += [0, 0, 0x30, 0x39, 0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]
    p += [1, 1, 8, 10, 0, 1, 0xe2, 0x40, 0, 0, 0x30, 0x39]  // NOP NOP timestamps
    p += payload
    // IPv4 checksum and a full TCP checksum.
    p.withUnsafeMutableBytes { b in
        InternetChecksum.fixIPv4Header(b.baseAddress!, headerLength: 20)
        let tcpLength = total - 20
        let s = InternetChecksum.sum(b.baseAddress! + 20, tcpLength, initial: InternetChecksum.pseudoHeader(b.baseAddress!, protocol: 6, length: tcpLength))
        let c = ~InternetChecksum.fold(s)
        b[36] = UInt8(c >> 8)
        b[37] = UInt8(c & 0xff)
    }
    return p
}

func checksumsAreValid(_ p: [UInt8]) -> Bool {
    let ipOK = naiveSum(Array(p[0..<20])) == 0xffff
    let tcpLength = p.count - 20
    let pseudo = Array(p[12..<20]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)]
    return ipOK && naiveSum(pseudo + Array(p[20...])) == 0xffff
}

@Suite struct TCPOffloadTests {
    @Test func theFastChecksumAgreesWithANaiveOneOnRandomData() {
        var random = SeededRandom(seed: 11)
        for _ in 0..<500 {
            let bytes = (0..<Int(random.next() % 3000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let fast = bytes.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0.baseAddress!, $0.count)) }
            #expect(UInt32(fast) == naiveSum(bytes) || (fast == 0xffff && naiveSum(bytes) == 0) || (fast == 0 && naiveSum(bytes) == 0xffff))
        }
    }

    @Test func theFastChecksumAgreesAtAnyAlignmentWithAnInitialSum() {
        var random = SeededRandom(seed: 12)
        for round in 0..<600 {
            let skip = round % 8  // start 0–7 bytes into the buffer
            let bytes = (0..<(skip + Int(random.next() % 2100))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let initial = UInt16(truncatingIfNeeded: random.next())
            let body = Array(bytes[skip...])
            let fast = bytes.withUnsafeBytes {
                InternetChecksum.fold(InternetChecksum.sum($0.baseAddress! + skip, body.count, initial: UInt64(initial)))
            }
            // The naive sum of the initial word followed by the body, as 16-bit big-endian words.
            let expected = naiveSum([UInt8(initial >> 8), UInt8(initial & 0xff)] + body)
            #expect(UInt32(fast) == expected || (fast == 0xffff && expected == 0) || (fast == 0 && expected == 0xffff),
                "\(body.count) bytes at offset \(skip), initial \(initial)")
        }
    }

    @Test func aSuperPacketSplitsIntoValidSegmentsThatCarryItsPayloadInOrder() throws {
        var random = SeededRandom(seed: 3)
        let payload = (0..<5000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let superPacket = tcpPacket(seq: 0xffff_f000, flags: 0x10 | 0x08 | 0x01 | 0x80, payload: payload)  // ACK PSH FIN CWR
        let h = try #require(superPacket.withUnsafeBytes { TCPSegmentation.headers($0.baseAddress!, length: $0.count) })
        #expect(h.ip == 20 && h.tcp == 32)
        var segments: [[UInt8]] = []
        for index in 0..<10 {
            var out = [UInt8](repeating: 0, count: 1500)
            let n = superPacket.withUnsafeBytes { s in
                out.withUnsafeMutableBytes { o in
                    TCPSegmentation.segment(s.baseAddress!, length: s.count, ipHeader: 20, tcpHeader: 32, mss: 1380, index: index, into: o.baseAddress!)
                }
            }
            if n == 0 { break }
            segments.append(Array(out.prefix(n)))
        }
        #expect(segments.map { $0.count } == [1432, 1432, 1432, 52 + 860])
        var joined: [UInt8] = []
        for (i, s) in segments.enumerated() {
            #expect(checksumsAreValid(s), "segment \(i)")
            let seq = UInt32(s[24]) << 24 | UInt32(s[25]) << 16 | UInt32(s[26]) << 8 | UInt32(s[27])
            #expect(seq == 0xffff_f000 &+ UInt32(i * 1380), "sequence numbers wrap correctly")
            #expect(UInt16(s[4]) << 8 | UInt16(s[5]) == 0x1234 &+ UInt16(i))
            let flags = s[33]
            let last = i == segments.count - 1
            #expect((flags & 0x09 != 0) == last, "FIN and PSH only on the last segment")
            #expect((flags & 0x80 != 0) == (i == 0), "CWR only on the first")
            #expect(Array(s[40..<52]) == Array(superPacket[40..<52]), "options copied")
            joined += s[52...]
        }
        #expect(joined == payload)
    }

    @Test func consecutiveSegmentsMergeBackIntoOneSuperPacketWithAPartialChecksum() throws {
        let chunks = (0..<4).map { i in [UInt8](repeating: UInt8(i + 1), count: i == 3 ? 500 : 1380) }
        var packets = chunks.enumerated().map { i, c in tcpPacket(seq: 1000 + UInt32(i * 1380), flags: i == 3 ? 0x18 : 0x10, payload: c, id: UInt16(i)) }
        let h = (ip: 20, tcp: 32)
        var expected: UInt32 = 1000 + 1380
        for i in 1..<4 {
            let ok = packets[0].withUnsafeBytes { a in packets[i].withUnsafeBytes { b in
                TCPSegmentation.canFollow(a.baseAddress!, h, b.baseAddress!, h, expectedSequence: expected)
            } }
            #expect(ok, "segment \(i) follows")
            expected += UInt32(chunks[i].count)
        }
        let total = 52 + chunks.reduce(0) { $0 + $1.count }
        let header = packets[0].withUnsafeMutableBytes { TCPSegmentation.finishMerge($0.baseAddress!, headers: h, totalLength: total, mss: 1380, pushLast: true) }
        #expect(header.gsoType == VirtioNetHeader.gsoTCPv4 && header.gsoSize == 1380 && header.flags == VirtioNetHeader.needsChecksum)
        #expect(header.checksumStart == 20 && header.checksumOffset == 16 && header.headerLength == 52)
        var merged = packets[0]
        for i in 1..<4 { merged += packets[i][52...] }
        #expect(merged.count == total)
        #expect(Int(merged[2]) << 8 | Int(merged[3]) == total)
        #expect(merged[33] & 0x08 != 0, "the last segment's PSH is kept")
        // Completing the partial checksum (as the kernel would) gives a valid packet.
        #expect(merged.withUnsafeMutableBytes { InternetChecksum.completePartial($0.baseAddress!, length: $0.count, start: 20, offset: 16) })
        #expect(checksumsAreValid(merged))
        packets[0] = merged
    }

    @Test func segmentsOfAnotherFlowOrOutOfOrderOrWithOtherFlagsDoNotMerge() {
        let h = (ip: 20, tcp: 32)
        let first = tcpPacket(seq: 1, flags: 0x10, payload: [UInt8](repeating: 1, count: 100))
        func follows(_ next: [UInt8], _ seq: UInt32 = 101) -> Bool {
            first.withUnsafeBytes { a in next.withUnsafeBytes { b in
                TCPSegmentation.canFollow(a.baseAddress!, h, b.baseAddress!, h, expectedSequence: seq)
            } }
        }
        #expect(follows(tcpPacket(seq: 101, flags: 0x10, payload: [2])))
        #expect(!follows(tcpPacket(seq: 102, flags: 0x10, payload: [2])), "a gap")
        #expect(!follows(tcpPacket(seq: 101, flags: 0x10, payload: [2], srcPort: 40001)), "another flow")
        #expect(!follows(tcpPacket(seq: 101, flags: 0x11, payload: [2])), "FIN")
        #expect(!follows(tcpPacket(seq: 101, flags: 0x02, payload: [2])), "SYN")
        var otherTimestamp = tcpPacket(seq: 101, flags: 0x10, payload: [2])
        otherTimestamp[45] ^= 1
        #expect(!follows(otherTimestamp), "different options")
    }

    @Test func aPartialChecksumIsCompleted() {
        // A UDP packet whose checksum field holds the pseudo-header sum, as CHECKSUM_PARTIAL leaves it.
        var p: [UInt8] = [0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 8, 0, 2, 10, 8, 0, 1, 0x9c, 0x40, 0x00, 0x35, 0, 12, 0, 0]
        p += [0xde, 0xad, 0xbe, 0xef]
        let pseudo = InternetChecksum.fold(p.withUnsafeBytes { InternetChecksum.pseudoHeader($0.baseAddress!, protocol: 17, length: 12) })
        p[26] = UInt8(pseudo >> 8)
        p[27] = UInt8(pseudo & 0xff)
        #expect(p.withUnsafeMutableBytes { InternetChecksum.completePartial($0.baseAddress!, length: $0.count, start: 20, offset: 6) })
        let udp = Array(p[20...])
        #expect(naiveSum(Array(p[12..<20]) + [0, 17, 0, 12] + udp) == 0xffff)
    }

    @Test func theVirtioHeaderRoundTrips() {
        var h = VirtioNetHeader()
        h.flags = 1
        h.gsoType = 1
        h.headerLength = 52
        h.gsoSize = 1380
        h.checksumStart = 20
        h.checksumOffset = 16
        var bytes = [UInt8](repeating: 0, count: 10)
        bytes.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        #expect(bytes == [1, 1, 52, 0, 0x64, 0x05, 20, 0, 16, 0])
        #expect(bytes.withUnsafeBytes { VirtioNetHeader(reading: $0.baseAddress!) } == h)
    }
}

/// A UDP/IPv4 packet with a valid checksum.
func udpPacket(payload: [UInt8], id: UInt16 = 7, dstPort: UInt16 = 5201) -> [UInt8] {
    let total = 28 + payload.count
    var p: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), UInt8(id >> 8), UInt8(id & 0xff), 0x40, 0, 64, 17, 0, 0,
        10, 8, 0, 2, 10, 8, 0, 1, 0x9c, 0x41, UInt8(dstPort >> 8), UInt8(dstPort & 0xff), UInt8((8 + payload.count) >> 8),
        UInt8((8 + payload.count) & 0xff), 0, 0]
    p += payload
    p.withUnsafeMutableBytes { b in
        InternetChecksum.fixIPv4Header(b.baseAddress!, headerLength: 20)
        let s = InternetChecksum.sum(b.baseAddress! + 20, total - 20, initial: InternetChecksum.pseudoHeader(b.baseAddress!, protocol: 17, length: total - 20))
        let c = ~InternetChecksum.fold(s)
        b[26] = UInt8(c >> 8)
        b[27] = UInt8(c & 0xff)
    }
    return p
}

func udpChecksumsAreValid(_ p: [UInt8]) -> Bool {
    let udpLength = p.count - 20
    let pseudo = Array(p[12..<20]) + [0, 17, UInt8(udpLength >> 8), UInt8(udpLength & 0xff)]
    return naiveSum(Array(p[0..<20])) == 0xffff && naiveSum(pseudo + Array(p[20...])) == 0xffff
        && Int(p[24]) << 8 | Int(p[25]) == udpLength && Int(p[2]) << 8 | Int(p[3]) == p.count
}

@Suite struct UDPOffloadTests {
    @Test func equalSizedDatagramsMergeIntoASuperPacketThatSplitsBackIntoThem() throws {
        let datagrams = (0..<5).map { i in udpPacket(payload: [UInt8](repeating: UInt8(i), count: i == 4 ? 300 : 1000), id: UInt16(10 + i)) }
        for d in datagrams { #expect(udpChecksumsAreValid(d)) }
        #expect(datagrams.dropFirst().allSatisfy { d in
            datagrams[0].withUnsafeBytes { a in d.withUnsafeBytes { UDPSegmentation.canFollow(a.baseAddress!, $0.baseAddress!) } }
        })
        let other = udpPacket(payload: [1], dstPort: 5202)
        #expect(!datagrams[0].withUnsafeBytes { a in other.withUnsafeBytes { UDPSegmentation.canFollow(a.baseAddress!, $0.baseAddress!) } })
        var merged = datagrams[0]
        for d in datagrams.dropFirst() { merged += d[28...] }
        let header = merged.withUnsafeMutableBytes { UDPSegmentation.finishMerge($0.baseAddress!, totalLength: $0.count, size: 1000) }
        #expect(header.gsoType == UDPSegmentation.gsoUDPL4 && header.gsoSize == 1000 && header.checksumOffset == 6)
        // Split it back as the reader would (the kernel hands over such packets when USO is on).
        var out: [[UInt8]] = []
        for index in 0..<10 {
            var buffer = [UInt8](repeating: 0, count: 1100)
            let n = merged.withUnsafeBytes { m in
                buffer.withUnsafeMutableBytes { UDPSegmentation.segment(m.baseAddress!, length: m.count, ipHeader: 20, size: 1000, index: index, into: $0.baseAddress!) }
            }
            if n == 0 { break }
            out.append(Array(buffer.prefix(n)))
        }
        #expect(out.count == 5)
        for (i, d) in out.enumerated() {
            #expect(udpChecksumsAreValid(d), "datagram \(i)")
            #expect(Array(d[28...]) == Array(datagrams[i][28...]))
        }
    }

    @Test func onlyDatagramsWhoseLengthsAgreeWithThePacketAreMerged() {
        func mergeable(_ p: [UInt8], length: Int? = nil) -> Bool {
            p.withUnsafeBytes { UDPSegmentation.mergeable($0.baseAddress!, length: length ?? p.count) }
        }
        let plain = udpPacket(payload: [UInt8](repeating: 7, count: 100))
        #expect(mergeable(plain))
        var shortUDP = plain
        shortUDP[25] -= 4  // UDP length 4 bytes short of the packet: trailing bytes past the datagram
        #expect(!mergeable(shortUDP))
        #expect(!mergeable(plain + [0, 0, 0, 0], length: plain.count + 4), "IP total length short of the buffer")
        var fragment = plain
        fragment[6] = 0x20  // more fragments
        #expect(!mergeable(fragment))
        var options = plain
        options[0] = 0x46  // a 24-byte IP header
        #expect(!mergeable(options))
    }
}

// Naive references for inner packets, shared by the targets that see them.

import Transport

/// Checks an ICMPv6 destination unreachable the client built (RFC 4443 §3.1 and §2.4): IPv6, at most 1280
/// bytes, payload length right, type 1 code 1, a checksum that verifies by a naive sum over the RFC 8200
/// §8.1 pseudo-header; when `invoking` is given, the answer goes back to its source and carries as much of
/// it as fits.
public func checkUnreachable(_ a: [UInt8], answering invoking: [UInt8]? = nil) {
    require(a.count >= 48 && a.count <= 1280, "an ICMPv6 answer of \(a.count) bytes")
    require(a[0] == 0x60 && a[1] == 0 && a[2] == 0 && a[3] == 0, "answer: version 6, traffic class and flow label 0")
    require(Int(a[4]) << 8 | Int(a[5]) == a.count - 40, "answer: payload length")
    require(a[6] == 58 && a[7] == 64 && a[40] == 1 && a[41] == 1, "answer: ICMPv6 type 1 code 1, hop limit 64")
    require(a[44] == 0 && a[45] == 0 && a[46] == 0 && a[47] == 0, "answer: unused bytes")
    var sum: UInt32 = 0
    for i in stride(from: 8, to: 40, by: 2) { sum += UInt32(a[i]) << 8 | UInt32(a[i + 1]) }
    sum += UInt32(a.count - 40) + 58
    var i = 40
    while i < a.count {
        sum += UInt32(a[i]) << 8 | (i + 1 < a.count ? UInt32(a[i + 1]) : 0)
        i += 2
    }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    require(sum == 0xffff, "answer: the ICMPv6 checksum does not verify")
    if let invoking {
        require(Array(a[24..<40]) == Array(invoking[8..<24]), "answer: not sent back to the invoking packet's source")
        require(Array(a[48...]) == Array(invoking.prefix(1280 - 48)), "answer: body is not the invoking packet's start")
        require(invoking[8] != 0xff && invoking[24] != 0xff, "answered a packet from or to a multicast address")
        require(invoking[8..<24].contains { $0 != 0 }, "answered a packet from the unspecified address")
    }
}

/// IPv6Header and IPPacket against a naive reading of RFC 8200's fixed header.
public func checkIPv6(_ packet: [UInt8], buffer: UnsafeRawBufferPointer) {
    let parsed = IPv6Header.parse(buffer)
    var expected: (source: [UInt8], destination: [UInt8], total: Int)? = nil
    if packet.count >= 40, packet[0] >> 4 == 6 {
        let payload = Int(packet[4]) << 8 | Int(packet[5])
        if payload > 0, 40 + payload <= packet.count {
            expected = (Array(packet[8..<24]), Array(packet[24..<40]), 40 + payload)
        }
    }
    switch (parsed, expected) {
    case (nil, nil): break
    case (let p?, let e?):
        require(p.source.networkBytes == e.source && p.destination.networkBytes == e.destination && p.totalLength == e.total,
            "IPv6Header.parse read the wrong fields")
    default:
        fatalError("invariant broken: IPv6Header.parse says \(String(describing: parsed)), reference \(String(describing: expected))")
    }
    let looksIPv6 = packet.count >= 40 && packet[0] >> 4 == 6
    if let destination = IPv6Header.destination(buffer) {
        require(looksIPv6 && destination.networkBytes == Array(packet[24..<40]), "IPv6Header.destination")
    } else {
        require(!looksIPv6, "IPv6Header.destination refused an IPv6 packet")
    }
    // The receive path's parser agrees with the family's own.
    let either = IPPacket.parse(buffer)
    if packet.first.map({ $0 >> 4 }) == 6 {
        require(either?.totalLength == parsed?.totalLength && either?.source == parsed.map { .v6($0.source) },
            "IPPacket.parse and IPv6Header.parse disagree")
    } else if packet.first.map({ $0 >> 4 }) == 4 {
        require(either?.totalLength == IPv4Header.parse(buffer)?.totalLength, "IPPacket.parse and IPv4Header.parse disagree")
    } else {
        require(either == nil, "IPPacket.parse accepted a packet of version \(packet.first.map { $0 >> 4 } ?? 0)")
    }
    // An answer, when one is allowed, is well formed.
    if let answer = ICMPv6Unreachable.answer(to: buffer, from: nil) {
        require(looksIPv6, "an ICMPv6 answer to a packet that is not IPv6")
        checkUnreachable(answer, answering: packet)
    }
}

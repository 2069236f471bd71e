// The client's answer to an IPv6 packet its tunnel does not carry: an ICMPv6 destination unreachable,
// code 1, "communication with destination administratively prohibited" (RFC 4443 §3.1), written back to
// the TUN device so that the application fails at once (and falls back to IPv4) instead of timing out,
// and nothing leaves the host outside the tunnel.
//
// RFC 4443 §2.4 rules kept here: no answer to an ICMPv6 error message (type < 128) or a redirect (e.2),
// to a packet sent to a multicast address (e.3), or to a packet whose source does not identify one node:
// the unspecified address or a multicast address (e.6); the answer carries as much of the invoking packet
// as fits a 1280-byte IPv6 packet (c); its checksum covers the IPv6 pseudo-header (RFC 8200 §8.1). The
// caller rate-limits answers (e.g. with a `TokenBucket`; §2.4 (f)).
//
//   IPv6 header (40)  version 6, traffic class 0, flow label 0, payload length, next header 58, hop limit 64,
//                     source, destination = the invoking packet's source
//   ICMPv6 (8)        type 1, code 1, checksum, 4 unused zero bytes
//   body              the invoking packet, cut to keep the whole answer at most 1280 bytes

/// Builds ICMPv6 destination-unreachable answers (pure; no state).
public enum ICMPv6Unreachable {
    /// The longest answer: the IPv6 minimum MTU (RFC 8200 §5).
    public static let maximumLength = 1280
    /// ICMPv6 message type 1, destination unreachable.
    public static let type: UInt8 = 1
    /// Code 1: communication with destination administratively prohibited.
    public static let code: UInt8 = 1
    /// The hop limit of every answer.
    public static let hopLimit: UInt8 = 64
    /// IPv6 next-header value of ICMPv6.
    public static let nextHeader: UInt8 = 58
    /// The answer's headers: IPv6 (40) and ICMPv6 (8).
    public static let headerLength = IPv6Header.length + 8

    /// True for an address in ff00::/8 (RFC 4291 §2.7).
    public static func isMulticast(_ a: IPv6Address) -> Bool { a.high >> 56 == 0xff }

    /// True for an address in fe80::/10 (RFC 4291 §2.5.6).
    public static func isLinkLocal(_ a: IPv6Address) -> Bool { a.high >> 54 == 0xfe80 >> 6 }

    /// The answer to the IPv6 packet `packet` (as read from the device), sent from `source` (the
    /// server's tunnel address when the tunnel has one; nil = the invoking packet's destination), or nil
    /// when RFC 4443 §2.4 forbids an answer or `packet` is not an IPv6 packet.
    public static func answer(to packet: UnsafeRawBufferPointer, from source: IPv6Address? = nil) -> [UInt8]? {
        guard packet.count >= IPv6Header.length, let p = packet.baseAddress, p.load(as: UInt8.self) >> 4 == 6 else {
            return nil
        }
        let invokingSource = IPv6Address(networkBytes: p + 8)
        let invokingDestination = IPv6Address(networkBytes: p + 24)
        guard invokingSource != .any, !isMulticast(invokingSource), !isMulticast(invokingDestination),
            !mayBeICMPv6Error(packet)
        else { return nil }
        let bodyLength = min(packet.count, maximumLength - headerLength)
        let payloadLength = 8 + bodyLength
        var answer = [UInt8](repeating: 0, count: IPv6Header.length + payloadLength)
        answer.withUnsafeMutableBytes { out in
            guard let o = out.baseAddress else { return }
            o.storeBytes(of: 0x60, as: UInt8.self)
            o.storeBytes(of: UInt16(payloadLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            o.storeBytes(of: nextHeader, toByteOffset: 6, as: UInt8.self)
            o.storeBytes(of: hopLimit, toByteOffset: 7, as: UInt8.self)
            (source ?? invokingDestination).write(networkBytesTo: o + 8)
            invokingSource.write(networkBytesTo: o + 24)
            o.storeBytes(of: type, toByteOffset: 40, as: UInt8.self)
            o.storeBytes(of: code, toByteOffset: 41, as: UInt8.self)
            (o + headerLength).copyMemory(from: p, byteCount: bodyLength)
            let sum = checksum(UnsafeRawBufferPointer(out))
            o.storeBytes(of: sum.bigEndian, toByteOffset: 42, as: UInt16.self)
        }
        return answer
    }

    /// The ICMPv6 checksum of the IPv6 packet `packet` (RFC 8200 §8.1): the one's complement of the
    /// one's complement sum of the pseudo-header (source, destination, upper-layer length, next header 58)
    /// and the ICMPv6 message, with the checksum field read as it is (zero while building).
    public static func checksum(_ packet: UnsafeRawBufferPointer) -> UInt16 {
        var sum: UInt64 = 0
        for offset in stride(from: 8, to: 40, by: 2) { sum += UInt64(word(packet, offset)) }
        let upper = packet.count - IPv6Header.length
        sum += UInt64(upper >> 16) + UInt64(upper & 0xffff) + UInt64(nextHeader)
        var offset = IPv6Header.length
        while offset + 1 < packet.count {
            sum += UInt64(word(packet, offset))
            offset += 2
        }
        if offset < packet.count { sum += UInt64(packet[offset]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    @inline(__always)
    private static func word(_ packet: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1])
    }

    /// True unless `packet` is certainly not an ICMPv6 error or redirect: its header chain (hop-by-hop,
    /// routing, destination options, fragment and authentication headers, RFC 8200 §4 and RFC 4302) is
    /// followed to the upper layer; a chain that is cut short, or a fragment other than the first (whose
    /// upper-layer header is elsewhere), counts as a possible error, so it gets no answer.
    static func mayBeICMPv6Error(_ packet: UnsafeRawBufferPointer) -> Bool {
        var next = packet[6]
        var offset = IPv6Header.length
        for _ in 0..<8 {
            switch next {
            case nextHeader:
                guard offset < packet.count else { return true }
                let type = packet[offset]
                return type < 128 || type == 137  // errors, and redirect (RFC 4443 §2.4 (e.2))
            case 0, 43, 60:  // hop-by-hop, routing, destination options: (length + 1) × 8 bytes
                guard offset + 2 <= packet.count else { return true }
                next = packet[offset]
                offset += (Int(packet[offset + 1]) + 1) * 8
            case 44:  // fragment: 8 bytes; only the first fragment holds the upper-layer header
                guard offset + 8 <= packet.count else { return true }
                if (UInt16(packet[offset + 2]) << 8 | UInt16(packet[offset + 3])) >> 3 != 0 { return true }
                next = packet[offset]
                offset += 8
            case 51:  // authentication header: (length + 2) × 4 bytes
                guard offset + 2 <= packet.count else { return true }
                next = packet[offset]
                offset += (Int(packet[offset + 1]) + 2) * 4
            default:
                return false
            }
        }
        return true
    }
}

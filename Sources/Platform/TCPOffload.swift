// TCP segmentation and coalescing for a TUN device opened with IFF_VNET_HDR and TSO .
//
// With offloads on, the kernel hands the TUN reader TCP "super-packets" of up to 64 KiB with a
// virtio_net_hdr in front (gso_type TCPV4 or TCPV6, gso_size = MSS), and lets it write such super-packets back.
// One read then carries what took ~45 reads before, and the receiving TCP stack handles one large skb
// instead of dozens: the same idea as wireguard-go's tun/offload_linux.go. These are the pure parts:
// the header, Internet checksums (RFC 1071), splitting a super-packet into MSS-sized packets with every
// header and checksum fixed, and merging consecutive segments of one flow back into a super-packet.
//
// Both families are handled. IPv6 packets are taken only with a 40-byte header whose next header is TCP
// or UDP itself (RFC 8200 section 4: no extension headers), whose payload length agrees with the buffer
// (0, a jumbogram's, never does), and their checksums cover the RFC 8200 section 8.1 pseudo-header.

/// `struct virtio_net_hdr` (10 bytes, native/little endian on the hosts we run on; linux/virtio_net.h).
public struct VirtioNetHeader: Equatable, Sendable {
    public static let length = 10
    public static let needsChecksum: UInt8 = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    public static let gsoTCPv4: UInt8 = 1  // VIRTIO_NET_HDR_GSO_TCPV4
    public static let gsoTCPv6: UInt8 = 4  // VIRTIO_NET_HDR_GSO_TCPV6
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init() {}

    public init(reading p: UnsafeRawPointer) {
        flags = p.load(as: UInt8.self)
        gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: flags, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }
}

/// Internet checksum arithmetic (RFC 1071): 16-bit big-endian words summed with end-around carry.
public enum InternetChecksum {
    /// Adds `count` bytes at `p`, as big-endian 16-bit words, to `initial`; the result is not folded.
    ///
    /// One's-complement sums do not depend on byte order (RFC 1071, section 2): the words are added in
    /// little-endian order, 32 bytes a round into four independent 64-bit accumulators (32-bit halves, so
    /// no carry is lost for inputs up to 4 GiB), folded to 16 bits, and byte-swapped once at the end.
    @inline(__always)
    public static func sum(_ p: UnsafeRawPointer, _ count: Int, initial: UInt64 = 0) -> UInt64 {
        @inline(__always) func halves(_ offset: Int) -> UInt64 {
            let v = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            return (v >> 32) &+ (v & 0xffff_ffff)
        }
        var a0: UInt64 = 0
        var a1: UInt64 = 0
        var a2: UInt64 = 0
        var a3: UInt64 = 0
        var i = 0
        while i + 32 <= count {
            a0 &+= halves(i)
            a1 &+= halves(i + 8)
            a2 &+= halves(i + 16)
            a3 &+= halves(i + 24)
            i += 32
        }
        while i + 8 <= count {
            a0 &+= halves(i)
            i += 8
        }
        while i + 2 <= count {
            a1 &+= UInt64(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
            i += 2
        }
        // A trailing odd byte is the high byte of a big-endian word: the low byte of a little-endian one.
        if i < count { a2 &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        return initial &+ UInt64(fold(a0 &+ a1 &+ a2 &+ a3).byteSwapped)
    }

    /// Folds a sum to 16 bits (not complemented).
    @inline(__always)
    public static func fold(_ s: UInt64) -> UInt16 {
        var x = s
        while x > 0xffff { x = (x & 0xffff) &+ (x >> 16) }
        return UInt16(x)
    }

    /// The IPv4 pseudo-header sum for `protocol` and `length` bytes of transport header + data.
    @inline(__always)
    public static func pseudoHeader(_ ip: UnsafeRawPointer, protocol proto: UInt8, length: Int) -> UInt64 {
        sum(ip + 12, 8) &+ UInt64(proto) &+ UInt64(length)
    }

    /// The IPv6 pseudo-header sum (RFC 8200 section 8.1: source, destination, upper-layer length, next
    /// header) for `protocol` and `length` bytes of transport header + data.
    @inline(__always)
    public static func pseudoHeader6(_ ip: UnsafeRawPointer, protocol proto: UInt8, length: Int) -> UInt64 {
        sum(ip + 8, 32) &+ UInt64(proto) &+ UInt64(length)
    }

    /// The pseudo-header sum of an IPv4 or IPv6 packet (by its version nibble, which the caller checked).
    @inline(__always)
    static func pseudoHeader(packet ip: UnsafeRawPointer, protocol proto: UInt8, length: Int) -> UInt64 {
        isIPv6(ip) ? pseudoHeader6(ip, protocol: proto, length: length) : pseudoHeader(ip, protocol: proto, length: length)
    }

    /// Whether the packet at `p` (at least one byte) says version 6.
    @inline(__always)
    static func isIPv6(_ p: UnsafeRawPointer) -> Bool { p.load(as: UInt8.self) >> 4 == 6 }

    /// Whether an IPv6 packet of `length` bytes (at least 40) has a payload length that agrees with it.
    @inline(__always)
    static func ipv6LengthAgrees(_ p: UnsafeRawPointer, length: Int) -> Bool {
        Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) == length - 40
    }

    @inline(__always)
    static func store(_ value: UInt16, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: value.bigEndian, as: UInt16.self)
    }

    /// Recomputes an IPv4 header's checksum in place.
    @inline(__always)
    public static func fixIPv4Header(_ ip: UnsafeMutableRawPointer, headerLength: Int) {
        store(0, at: ip + 10)
        store(~fold(sum(ip, headerLength)), at: ip + 10)
    }

    /// Completes a CHECKSUM_PARTIAL packet: the field at `start + offset` holds the pseudo-header sum;
    /// the checksum over `packet[start...]` (including that field) goes there, complemented.
    public static func completePartial(_ packet: UnsafeMutableRawPointer, length: Int, start: Int, offset: Int) -> Bool {
        guard start + offset + 2 <= length else { return false }
        let at = packet + start + offset
        let initial = UInt64(UInt16(bigEndian: at.loadUnaligned(as: UInt16.self)))
        store(0, at: at)
        var c = ~fold(sum(packet + start, length - start, initial: initial))
        // A UDP checksum of zero means "none"; RFC 768 sends it as all ones. (TCP cannot tell them apart.)
        if c == 0 { c = 0xffff }
        store(c, at: at)
        return true
    }
}

/// Splits and merges TCP/IPv4 and TCP/IPv6 packets.
public enum TCPSegmentation {
    static let tcpFIN: UInt8 = 0x01
    static let tcpPSH: UInt8 = 0x08
    static let tcpACK: UInt8 = 0x10
    static let tcpCWR: UInt8 = 0x80

    /// Header lengths of a TCP/IPv4 packet, or nil if it is not one.
    @inline(__always)
    public static func headers(_ p: UnsafeRawPointer, length: Int) -> (ip: Int, tcp: Int)? {
        guard length >= 40, p.load(as: UInt8.self) >> 4 == 4, p.load(fromByteOffset: 9, as: UInt8.self) == 6 else { return nil }
        let ihl = Int(p.load(as: UInt8.self) & 0x0f) * 4
        guard ihl >= 20, length >= ihl + 20 else { return nil }
        let thl = Int(p.load(fromByteOffset: ihl + 12, as: UInt8.self) >> 4) * 4
        guard thl >= 20, length >= ihl + thl else { return nil }
        return (ihl, thl)
    }

    /// Header lengths of a TCP/IPv6 packet, or nil if it is not one: a 40-byte IPv6 header whose next
    /// header is TCP (a packet with extension headers is not taken), a payload length that agrees with
    /// `length`, and a whole TCP header.
    @inline(__always)
    public static func ipv6Headers(_ p: UnsafeRawPointer, length: Int) -> (ip: Int, tcp: Int)? {
        guard length >= 60, InternetChecksum.isIPv6(p), p.load(fromByteOffset: 6, as: UInt8.self) == 6,
            InternetChecksum.ipv6LengthAgrees(p, length: length)
        else { return nil }
        let thl = Int(p.load(fromByteOffset: 40 + 12, as: UInt8.self) >> 4) * 4
        guard thl >= 20, length >= 40 + thl else { return nil }
        return (40, thl)
    }

    /// `headers` or `ipv6Headers`, by the packet's version.
    @inline(__always)
    public static func anyHeaders(_ p: UnsafeRawPointer, length: Int) -> (ip: Int, tcp: Int)? {
        guard length >= 1 else { return nil }
        return InternetChecksum.isIPv6(p) ? ipv6Headers(p, length: length) : headers(p, length: length)
    }

    /// Writes segment number `index` (payload bytes `[index × mss, …)`) of the TCP super-packet
    /// `superPacket` (headers as `headers` or `ipv6Headers` found them) to `out`: for IPv4 with its total
    /// length, ID and header checksum fixed, for IPv6 with its payload length fixed, and with its TCP
    /// sequence number, flags and checksum fixed. Returns the segment's length, or 0 when `index` is past
    /// the end.
    public static func segment(
        _ superPacket: UnsafeRawPointer, length: Int, ipHeader ihl: Int, tcpHeader thl: Int, mss: Int, index: Int,
        into out: UnsafeMutableRawPointer
    ) -> Int {
        let headerLength = ihl + thl
        let payloadTotal = length - headerLength
        let start = index * mss
        guard start < payloadTotal || (payloadTotal == 0 && index == 0) else { return 0 }
        let chunk = min(mss, payloadTotal - start)
        let isLast = start + chunk >= payloadTotal
        out.copyMemory(from: superPacket, byteCount: headerLength)
        if chunk > 0 { (out + headerLength).copyMemory(from: superPacket + headerLength + start, byteCount: chunk) }
        let total = headerLength + chunk
        if InternetChecksum.isIPv6(superPacket) {
            // IPv6: the payload length; there is no ID and no header checksum.
            InternetChecksum.store(UInt16(total - ihl), at: out + 4)
        } else {
            // IPv4: total length, identification (consecutive, as the kernel's segmentation does), checksum.
            InternetChecksum.store(UInt16(total), at: out + 2)
            let id = UInt16(bigEndian: superPacket.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            InternetChecksum.store(id &+ UInt16(truncatingIfNeeded: index), at: out + 4)
            InternetChecksum.fixIPv4Header(out, headerLength: ihl)
        }
        // TCP: sequence number; FIN and PSH only on the last segment, CWR only on the first.
        let tcp = out + ihl
        let seq = UInt32(bigEndian: superPacket.loadUnaligned(fromByteOffset: ihl + 4, as: UInt32.self))
        tcp.storeBytes(of: (seq &+ UInt32(truncatingIfNeeded: start)).bigEndian, toByteOffset: 4, as: UInt32.self)
        var flags = tcp.load(fromByteOffset: 13, as: UInt8.self)
        if !isLast { flags &= ~(tcpFIN | tcpPSH) }
        if index > 0 { flags &= ~tcpCWR }
        tcp.storeBytes(of: flags, toByteOffset: 13, as: UInt8.self)
        InternetChecksum.store(0, at: tcp + 16)
        let pseudo = InternetChecksum.pseudoHeader(packet: out, protocol: 6, length: thl + chunk)
        let s = InternetChecksum.sum(tcp, thl + chunk, initial: pseudo)
        InternetChecksum.store(~InternetChecksum.fold(s), at: tcp + 16)
        return total
    }

    /// Whether `next` continues `first`'s flow right after `previousEnd` so the two can be merged:
    /// same addresses, ports and IP fields (IPv4: version, IHL, TOS, flags, TTL; IPv6: traffic class, flow
    /// label, next header, hop limit), ACK (± PSH) only, identical ack number, window and options, and a
    /// sequence number exactly where the previous segment ended.
    @inline(__always)
    public static func canFollow(
        _ first: UnsafeRawPointer, _ firstHeaders: (ip: Int, tcp: Int), _ next: UnsafeRawPointer,
        _ nextHeaders: (ip: Int, tcp: Int), expectedSequence: UInt32
    ) -> Bool {
        guard firstHeaders == nextHeaders else { return false }
        if InternetChecksum.isIPv6(first) {
            // IPv6: version, traffic class and flow label (0..<4), next header and hop limit (6..<8),
            // addresses (8..<40) must match. Lengths differ; `ipv6Headers` checked them against the buffer.
            guard firstHeaders.ip == 40,
                first.loadUnaligned(as: UInt32.self) == next.loadUnaligned(as: UInt32.self),
                first.loadUnaligned(fromByteOffset: 6, as: UInt16.self) == next.loadUnaligned(fromByteOffset: 6, as: UInt16.self),
                memcmpBytes(first + 8, next + 8, 32)
            else { return false }
        } else {
            guard firstHeaders.ip == 20 else { return false }
            // IPv4: version/IHL/TOS (0..<2), flags/fragment offset (6..<8: DF only, no fragments), TTL and
            // protocol (8..<10), addresses (12..<20) must match.
            guard first.loadUnaligned(as: UInt16.self) == next.loadUnaligned(as: UInt16.self),
                first.loadUnaligned(fromByteOffset: 6, as: UInt16.self) == next.loadUnaligned(fromByteOffset: 6, as: UInt16.self),
                UInt16(bigEndian: next.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3fff == 0,
                first.loadUnaligned(fromByteOffset: 8, as: UInt16.self) == next.loadUnaligned(fromByteOffset: 8, as: UInt16.self),
                first.loadUnaligned(fromByteOffset: 12, as: UInt64.self) == next.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
            else { return false }
        }
        let ft = first + firstHeaders.ip
        let nt = next + firstHeaders.ip
        // Ports, ack number, data offset, window; flags checked separately.
        guard ft.loadUnaligned(as: UInt32.self) == nt.loadUnaligned(as: UInt32.self),
            ft.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == nt.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
            ft.load(fromByteOffset: 12, as: UInt8.self) == nt.load(fromByteOffset: 12, as: UInt8.self),
            ft.loadUnaligned(fromByteOffset: 14, as: UInt16.self) == nt.loadUnaligned(fromByteOffset: 14, as: UInt16.self),
            UInt32(bigEndian: nt.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == expectedSequence
        else { return false }
        let nextFlags = nt.load(fromByteOffset: 13, as: UInt8.self)
        guard nextFlags & ~tcpPSH == tcpACK else { return false }
        // Options (timestamps included) must be identical, as the kernel's GRO requires.
        let options = firstHeaders.tcp - 20
        if options > 0 && memcmpBytes(ft + 20, nt + 20, options) == false { return false }
        return true
    }

    @inline(__always)
    static func memcmpBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
        for i in 0..<n where a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) {
            return false
        }
        return true
    }

    /// True when a packet can start a merge run: TCP/IPv4 without IP options and not a fragment, or
    /// TCP/IPv6 without extension headers (headers from `anyHeaders`); ACK (± PSH) only, with data.
    @inline(__always)
    public static func canStartRun(_ p: UnsafeRawPointer, _ h: (ip: Int, tcp: Int), length: Int) -> Bool {
        guard length > h.ip + h.tcp else { return false }
        if InternetChecksum.isIPv6(p) {
            guard h.ip == 40 else { return false }
        } else {
            guard h.ip == 20, UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3fff == 0 else {
                return false
            }
        }
        let flags = p.load(fromByteOffset: h.ip + 13, as: UInt8.self)
        return flags & ~tcpPSH == tcpACK
    }

    /// Rewrites the first packet of a merged run so that, followed by the other segments' payloads, it is
    /// a valid TCP/IPv4 or TCP/IPv6 super-packet of `totalLength` bytes, and returns the virtio header to
    /// write in front of it (gso_type TCPV4 or TCPV6, NEEDS_CSUM with the pseudo-header sum in place, as
    /// the kernel's CHECKSUM_PARTIAL expects). `pushLast` carries the last segment's PSH flag onto the
    /// merged packet.
    public static func finishMerge(
        _ first: UnsafeMutableRawPointer, headers h: (ip: Int, tcp: Int), totalLength: Int, mss: Int, pushLast: Bool
    ) -> VirtioNetHeader {
        let v6 = InternetChecksum.isIPv6(first)
        if v6 {
            InternetChecksum.store(UInt16(totalLength - h.ip), at: first + 4)
        } else {
            InternetChecksum.store(UInt16(totalLength), at: first + 2)
            InternetChecksum.fixIPv4Header(first, headerLength: h.ip)
        }
        if pushLast {
            let f = first.load(fromByteOffset: h.ip + 13, as: UInt8.self)
            first.storeBytes(of: f | tcpPSH, toByteOffset: h.ip + 13, as: UInt8.self)
        }
        let pseudo = InternetChecksum.fold(InternetChecksum.pseudoHeader(packet: first, protocol: 6, length: totalLength - h.ip))
        InternetChecksum.store(pseudo, at: first + h.ip + 16)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.needsChecksum
        header.gsoType = v6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4
        header.headerLength = UInt16(h.ip + h.tcp)
        header.gsoSize = UInt16(mss)
        header.checksumStart = UInt16(h.ip)
        header.checksumOffset = 16
        return header
    }
}

/// UDP segmentation and merging for TUN devices with UDP segmentation offload (TUN_F_USO4 and
/// TUN_F_USO6, Linux 6.2+): the kernel may hand the reader a UDP super-packet (gso_type UDP_L4, over
/// IPv4 or IPv6) to split, and a writer may merge consecutive equal-sized datagrams of one flow into one
/// write, which the kernel splits again only when it delivers them, instead of running each through the
/// IP stack on its own.
public enum UDPSegmentation {
    public static let gsoUDPL4: UInt8 = 5  // VIRTIO_NET_HDR_GSO_UDP_L4
    /// A 20-byte IPv4 header (no options) and the 8-byte UDP header: the headers of every UDP/IPv4
    /// datagram `mergeable` accepts, and the shortest UDP/IPv4 packet.
    public static let headerLength = 28
    /// The 40-byte IPv6 header and the 8-byte UDP header: the headers of every UDP/IPv6 packet taken.
    public static let ipv6HeaderLength = 48

    /// IPv4 header length of a UDP/IPv4 packet without fragmentation, or nil.
    @inline(__always)
    public static func ipHeader(_ p: UnsafeRawPointer, length: Int) -> Int? {
        guard length >= headerLength, p.load(as: UInt8.self) >> 4 == 4, p.load(fromByteOffset: 9, as: UInt8.self) == 17 else { return nil }
        let ihl = Int(p.load(as: UInt8.self) & 0x0f) * 4
        guard ihl >= 20, length >= ihl + 8,
            UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3fff == 0
        else { return nil }
        return ihl
    }

    /// 40 for a UDP/IPv6 packet without extension headers whose payload length agrees with `length`, or nil.
    @inline(__always)
    public static func ipv6Header(_ p: UnsafeRawPointer, length: Int) -> Int? {
        guard length >= ipv6HeaderLength, InternetChecksum.isIPv6(p), p.load(fromByteOffset: 6, as: UInt8.self) == 17,
            InternetChecksum.ipv6LengthAgrees(p, length: length)
        else { return nil }
        return 40
    }

    /// `ipHeader` or `ipv6Header`, by the packet's version.
    @inline(__always)
    public static func anyIPHeader(_ p: UnsafeRawPointer, length: Int) -> Int? {
        guard length >= 1 else { return nil }
        return InternetChecksum.isIPv6(p) ? ipv6Header(p, length: length) : ipHeader(p, length: length)
    }

    /// Writes datagram `index` (payload bytes `[index × size, …)`) of the UDP super-packet to `out` with
    /// its IP lengths (IPv4: total length, ID and header checksum; IPv6: payload length) and its UDP length
    /// and checksum fixed; 0 past the end.
    public static func segment(
        _ superPacket: UnsafeRawPointer, length: Int, ipHeader ihl: Int, size: Int, index: Int,
        into out: UnsafeMutableRawPointer
    ) -> Int {
        let headerLength = ihl + 8
        let payloadTotal = length - headerLength
        let start = index * size
        guard start < payloadTotal else { return 0 }
        let chunk = min(size, payloadTotal - start)
        out.copyMemory(from: superPacket, byteCount: headerLength)
        (out + headerLength).copyMemory(from: superPacket + headerLength + start, byteCount: chunk)
        let total = headerLength + chunk
        if InternetChecksum.isIPv6(superPacket) {
            InternetChecksum.store(UInt16(8 + chunk), at: out + 4)
        } else {
            InternetChecksum.store(UInt16(total), at: out + 2)
            let id = UInt16(bigEndian: superPacket.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            InternetChecksum.store(id &+ UInt16(truncatingIfNeeded: index), at: out + 4)
            InternetChecksum.fixIPv4Header(out, headerLength: ihl)
        }
        let udp = out + ihl
        InternetChecksum.store(UInt16(8 + chunk), at: udp + 4)
        InternetChecksum.store(0, at: udp + 6)
        let pseudo = InternetChecksum.pseudoHeader(packet: out, protocol: 17, length: 8 + chunk)
        let s = InternetChecksum.sum(udp, 8 + chunk, initial: pseudo)
        let c = ~InternetChecksum.fold(s)
        InternetChecksum.store(c == 0 ? 0xffff : c, at: udp + 6)
        return total
    }

    /// Whether a UDP packet can be part of a merged write: UDP/IPv4 with a 20-byte IP header and no
    /// fragmentation, or UDP/IPv6 without extension headers; and IP and UDP lengths that both agree with
    /// `length` (a datagram with trailing bytes past its UDP length would otherwise change shape when its
    /// payload is cut from the packet's end).
    @inline(__always)
    public static func mergeable(_ p: UnsafeRawPointer, length: Int) -> Bool {
        guard length >= 1 else { return false }
        if InternetChecksum.isIPv6(p) {
            return ipv6Header(p, length: length) != nil
                && Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 44, as: UInt16.self))) == length - 40
        }
        return ipHeader(p, length: length) == 20
            && Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))) == length
            && Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt16.self))) == length - 20
    }

    /// The IP + UDP header length of a packet `mergeable` accepted: 28 for IPv4, 48 for IPv6.
    @inline(__always)
    public static func mergeHeaderLength(_ p: UnsafeRawPointer) -> Int {
        InternetChecksum.isIPv6(p) ? ipv6HeaderLength : headerLength
    }

    /// Whether `next` (a packet `mergeable` accepted) belongs to `first`'s flow with the same IP fields
    /// (IPv4: version, IHL, TOS, flags, TTL; IPv6: traffic class, flow label, next header, hop limit), so
    /// that their payloads can travel as one super-packet.
    @inline(__always)
    public static func canFollow(_ first: UnsafeRawPointer, _ next: UnsafeRawPointer) -> Bool {
        @inline(__always) func same<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> Bool {
            first.loadUnaligned(fromByteOffset: offset, as: T.self) == next.loadUnaligned(fromByteOffset: offset, as: T.self)
        }
        if InternetChecksum.isIPv6(first) {
            return same(0, UInt32.self)  // version, traffic class, flow label
                && same(6, UInt16.self)  // next header, hop limit
                && TCPSegmentation.memcmpBytes(first + 8, next + 8, 32)  // addresses
                && same(40, UInt32.self)  // ports
        }
        return same(0, UInt16.self)  // version, IHL, TOS
            && same(6, UInt32.self)  // flags, TTL, protocol
            && same(12, UInt64.self)  // addresses
            && same(20, UInt32.self)  // ports
    }

    /// Rewrites the first datagram of a merged run as the head of a UDP super-packet of `totalLength`
    /// bytes and returns its virtio header (NEEDS_CSUM with the pseudo-header sum in place).
    public static func finishMerge(_ first: UnsafeMutableRawPointer, totalLength: Int, size: Int) -> VirtioNetHeader {
        let ip = InternetChecksum.isIPv6(first) ? 40 : 20
        if ip == 40 {
            InternetChecksum.store(UInt16(totalLength - 40), at: first + 4)
        } else {
            InternetChecksum.store(UInt16(totalLength), at: first + 2)
            InternetChecksum.fixIPv4Header(first, headerLength: 20)
        }
        InternetChecksum.store(UInt16(totalLength - ip), at: first + ip + 4)
        let pseudo = InternetChecksum.fold(InternetChecksum.pseudoHeader(packet: first, protocol: 17, length: totalLength - ip))
        InternetChecksum.store(pseudo, at: first + ip + 6)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.needsChecksum
        header.gsoType = gsoUDPL4
        header.headerLength = UInt16(ip + 8)
        header.gsoSize = UInt16(size)
        header.checksumStart = UInt16(ip)
        header.checksumOffset = 6
        return header
    }
}

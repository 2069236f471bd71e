// IPv4/UDP, IPv6/UDP and IPv6/TCP packets built and parsed byte by byte for tests, with real checksums.
//
// The internet checksum is RFC 1071's one's-complement sum; the UDP checksum covers the RFC 768
// pseudo-header (source, destination, zero, protocol 17, UDP length), or for IPv6 the RFC 8200 §8.1 one
// (source, destination, upper-layer length, next header). Packets are `[UInt8]`: these
// helpers are for tests, not the data path.

import Transport

/// Builders and a parser for IPv4/UDP packets.
public enum PacketBuilder {
    /// IP protocol number of UDP.
    public static let udpProtocol: UInt8 = 17

    /// The RFC 1071 internet checksum of `bytes` (odd length padded with a zero byte), starting from
    /// the unfolded partial sum `initial`.
    public static func internetChecksum(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var high: UInt8? = nil
        for byte in bytes {
            if let first = high {
                sum += UInt32(first) << 8 | UInt32(byte)
                high = nil
            } else {
                high = byte
            }
        }
        if let first = high { sum += UInt32(first) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// An IPv4 packet (20-byte header, no options, DF set) carrying a UDP datagram with `payload`,
    /// with a correct header checksum and UDP checksum.
    public static func ipv4UDP(
        from source: Endpoint, to destination: Endpoint, payload: [UInt8], ttl: UInt8 = 64, identification: UInt16 = 0
    ) -> [UInt8] {
        let udpLength = 8 + payload.count
        let totalLength = 20 + udpLength
        precondition(totalLength <= 65535, "an IPv4 packet is at most 65535 bytes")
        guard let sourceAddress = source.address.ipv4, let destinationAddress = destination.address.ipv4 else {
            preconditionFailure("ipv4UDP needs IPv4 endpoints")
        }
        var packet = [UInt8](repeating: 0, count: totalLength)
        packet[0] = 0x45  // version 4, IHL 5
        put16(UInt16(totalLength), at: 2, in: &packet)
        put16(identification, at: 4, in: &packet)
        put16(0x4000, at: 6, in: &packet)  // DF
        packet[8] = ttl
        packet[9] = udpProtocol
        put32(sourceAddress.value, at: 12, in: &packet)
        put32(destinationAddress.value, at: 16, in: &packet)
        put16(internetChecksum(packet[0..<20]), at: 10, in: &packet)

        put16(source.port, at: 20, in: &packet)
        put16(destination.port, at: 22, in: &packet)
        put16(UInt16(udpLength), at: 24, in: &packet)
        packet.replaceSubrange(28..<totalLength, with: payload)
        var checksum = internetChecksum(
            packet[20..<totalLength], initial: pseudoHeaderSum(sourceAddress, destinationAddress, udpLength))
        if checksum == 0 { checksum = 0xffff }  // RFC 768: a computed 0 is sent as all ones
        put16(checksum, at: 26, in: &packet)
        return packet
    }

    /// An IPv6 packet (40-byte header, no extension headers) carrying a UDP datagram with `payload`, with
    /// a correct UDP checksum (mandatory over IPv6, RFC 8200 §8.1).
    public static func ipv6UDP(
        from source: Endpoint, to destination: Endpoint, payload: [UInt8], hopLimit: UInt8 = 64
    ) -> [UInt8] {
        guard let sourceAddress = source.address.ipv6, let destinationAddress = destination.address.ipv6 else {
            preconditionFailure("ipv6UDP needs IPv6 endpoints")
        }
        let udpLength = 8 + payload.count
        precondition(udpLength <= 65535, "an IPv6 payload is at most 65535 bytes without jumbograms")
        var packet = [UInt8](repeating: 0, count: 40 + udpLength)
        packet[0] = 0x60  // version 6, traffic class 0, flow label 0
        put16(UInt16(udpLength), at: 4, in: &packet)
        packet[6] = udpProtocol
        packet[7] = hopLimit
        packet.replaceSubrange(8..<24, with: sourceAddress.networkBytes)
        packet.replaceSubrange(24..<40, with: destinationAddress.networkBytes)
        put16(source.port, at: 40, in: &packet)
        put16(destination.port, at: 42, in: &packet)
        put16(UInt16(udpLength), at: 44, in: &packet)
        packet.replaceSubrange(48..<packet.count, with: payload)
        var checksum = internetChecksum(
            packet[40...], initial: ipv6PseudoHeaderSum(packet, upperLayerLength: udpLength, nextHeader: udpProtocol))
        if checksum == 0 { checksum = 0xffff }
        put16(checksum, at: 46, in: &packet)
        return packet
    }

    /// IP protocol number of TCP.
    public static let tcpProtocol: UInt8 = 6

    /// An IPv6 packet (40-byte header, no extension headers) carrying a TCP segment: a 20-byte TCP
    /// header plus `options` (padded with zero bytes to a multiple of 4), then `payload`, with a correct
    /// TCP checksum over the RFC 8200 §8.1 pseudo-header.
    public static func ipv6TCP(
        from source: Endpoint, to destination: Endpoint, sequence: UInt32, acknowledgment: UInt32 = 0, flags: UInt8,
        window: UInt16 = 65535, options: [UInt8] = [], payload: [UInt8], hopLimit: UInt8 = 64, trafficClass: UInt8 = 0,
        flowLabel: UInt32 = 0
    ) -> [UInt8] {
        guard let sourceAddress = source.address.ipv6, let destinationAddress = destination.address.ipv6 else {
            preconditionFailure("ipv6TCP needs IPv6 endpoints")
        }
        let paddedOptions = options + [UInt8](repeating: 0, count: (4 - options.count % 4) % 4)
        let tcpHeaderLength = 20 + paddedOptions.count
        precondition(tcpHeaderLength <= 60, "TCP options are at most 40 bytes")
        let tcpLength = tcpHeaderLength + payload.count
        precondition(tcpLength <= 65535, "an IPv6 payload is at most 65535 bytes without jumbograms")
        var packet = [UInt8](repeating: 0, count: 40 + tcpLength)
        put32(6 << 28 | UInt32(trafficClass) << 20 | (flowLabel & 0xf_ffff), at: 0, in: &packet)
        put16(UInt16(tcpLength), at: 4, in: &packet)
        packet[6] = tcpProtocol
        packet[7] = hopLimit
        packet.replaceSubrange(8..<24, with: sourceAddress.networkBytes)
        packet.replaceSubrange(24..<40, with: destinationAddress.networkBytes)
        put16(source.port, at: 40, in: &packet)
        put16(destination.port, at: 42, in: &packet)
        put32(sequence, at: 44, in: &packet)
        put32(acknowledgment, at: 48, in: &packet)
        packet[52] = UInt8(tcpHeaderLength / 4) << 4
        packet[53] = flags
        put16(window, at: 54, in: &packet)
        packet.replaceSubrange(60..<40 + tcpHeaderLength, with: paddedOptions)
        packet.replaceSubrange(40 + tcpHeaderLength..<packet.count, with: payload)
        let checksum = internetChecksum(
            packet[40...], initial: ipv6PseudoHeaderSum(packet, upperLayerLength: tcpLength, nextHeader: tcpProtocol))
        put16(checksum, at: 56, in: &packet)
        return packet
    }

    /// An IPv6/TCP packet taken apart.
    public struct IPv6TCP: Equatable, Sendable {
        public var source: Endpoint
        public var destination: Endpoint
        public var sequence: UInt32
        public var acknowledgment: UInt32
        public var flags: UInt8
        public var window: UInt16
        /// The TCP options (the header past its first 20 bytes).
        public var options: [UInt8]
        public var payload: [UInt8]
        public var hopLimit: UInt8
        /// The 8-bit traffic class and the 20-bit flow label.
        public var trafficClass: UInt8
        public var flowLabel: UInt32
        /// The TCP checksum verifies over the RFC 8200 §8.1 pseudo-header.
        public var checksumValid: Bool
    }

    /// Parses an IPv6 packet whose next header is TCP (no extension headers) and whose payload length
    /// agrees with the packet's size; nil for anything else.
    public static func parseIPv6TCP(_ packet: [UInt8]) -> IPv6TCP? {
        guard packet.count >= 60, packet[0] >> 4 == 6, packet[6] == tcpProtocol else { return nil }
        let tcpLength = Int(get16(at: 4, in: packet))
        guard 40 + tcpLength == packet.count else { return nil }
        let tcpHeaderLength = Int(packet[52] >> 4) * 4
        guard tcpHeaderLength >= 20, tcpHeaderLength <= tcpLength else { return nil }
        let first = get32(at: 0, in: packet)
        let valid =
            internetChecksum(
                packet[40...], initial: ipv6PseudoHeaderSum(packet, upperLayerLength: tcpLength, nextHeader: tcpProtocol)) == 0
        let source = packet.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress! + 8) }
        let destination = packet.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress! + 24) }
        return IPv6TCP(
            source: Endpoint(address: source, port: get16(at: 40, in: packet)),
            destination: Endpoint(address: destination, port: get16(at: 42, in: packet)),
            sequence: get32(at: 44, in: packet), acknowledgment: get32(at: 48, in: packet), flags: packet[53],
            window: get16(at: 54, in: packet), options: Array(packet[60..<40 + tcpHeaderLength]),
            payload: Array(packet[(40 + tcpHeaderLength)...]), hopLimit: packet[7],
            trafficClass: UInt8(truncatingIfNeeded: first >> 20), flowLabel: first & 0xf_ffff, checksumValid: valid)
    }

    /// The unfolded RFC 8200 §8.1 pseudo-header sum of the IPv6 packet `packet` (addresses from its header).
    public static func ipv6PseudoHeaderSum(_ packet: [UInt8], upperLayerLength: Int, nextHeader: UInt8) -> UInt32 {
        var sum: UInt32 = 0
        for offset in stride(from: 8, to: 40, by: 2) { sum += UInt32(get16(at: offset, in: packet)) }
        return sum + UInt32(upperLayerLength >> 16) + UInt32(upperLayerLength & 0xffff) + UInt32(nextHeader)
    }

    /// Parses an IPv6 packet whose next header is UDP (no extension headers); nil for anything else.
    /// `headerChecksumValid` is always true (IPv6 has no header checksum).
    public static func parseIPv6UDP(_ packet: [UInt8]) -> IPv4UDP? {
        guard packet.count >= 48, packet[0] >> 4 == 6, packet[6] == udpProtocol else { return nil }
        let payloadLength = Int(get16(at: 4, in: packet))
        guard 40 + payloadLength <= packet.count else { return nil }
        let udpLength = Int(get16(at: 44, in: packet))
        guard udpLength >= 8, udpLength <= payloadLength else { return nil }
        let source = packet.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress! + 8) }
        let destination = packet.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress! + 24) }
        let valid =
            internetChecksum(
                packet[40..<40 + udpLength],
                initial: ipv6PseudoHeaderSum(packet, upperLayerLength: udpLength, nextHeader: udpProtocol)) == 0
        return IPv4UDP(
            source: Endpoint(address: source, port: get16(at: 40, in: packet)),
            destination: Endpoint(address: destination, port: get16(at: 42, in: packet)),
            payload: Array(packet[48..<40 + udpLength]), headerChecksumValid: true, udpChecksumValid: valid)
    }

    /// An IPv4/UDP packet taken apart (also what `parseIPv6UDP` returns).
    public struct IPv4UDP: Equatable, Sendable {
        public var source: Endpoint
        public var destination: Endpoint
        public var payload: [UInt8]
        /// The IPv4 header checksum verifies.
        public var headerChecksumValid: Bool
        /// The UDP checksum verifies, or is 0 (not computed).
        public var udpChecksumValid: Bool
    }

    /// Parses an IPv4 packet carrying UDP; nil if it is not IPv4, not UDP, a fragment, or inconsistent.
    public static func parseIPv4UDP(_ packet: [UInt8]) -> IPv4UDP? {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        let headerLength = Int(packet[0] & 0x0f) * 4
        let totalLength = Int(get16(at: 2, in: packet))
        guard headerLength >= 20, totalLength >= headerLength + 8, totalLength <= packet.count,
            packet[9] == udpProtocol, get16(at: 6, in: packet) & 0x3fff == 0
        else { return nil }
        let udpLength = Int(get16(at: headerLength + 4, in: packet))
        guard udpLength >= 8, headerLength + udpLength <= totalLength else { return nil }
        let source = IPv4Address(get32(at: 12, in: packet))
        let destination = IPv4Address(get32(at: 16, in: packet))
        let udp = packet[headerLength..<headerLength + udpLength]
        let udpChecksum = get16(at: headerLength + 6, in: packet)
        let udpValid =
            udpChecksum == 0
            || internetChecksum(udp, initial: pseudoHeaderSum(source, destination, udpLength)) == 0
        return IPv4UDP(
            source: Endpoint(address: source, port: get16(at: headerLength, in: packet)),
            destination: Endpoint(address: destination, port: get16(at: headerLength + 2, in: packet)),
            payload: Array(packet[headerLength + 8..<headerLength + udpLength]),
            headerChecksumValid: internetChecksum(packet[0..<headerLength]) == 0,
            udpChecksumValid: udpValid)
    }

    private static func pseudoHeaderSum(_ source: IPv4Address, _ destination: IPv4Address, _ udpLength: Int) -> UInt32 {
        (source.value >> 16) + (source.value & 0xffff) + (destination.value >> 16) + (destination.value & 0xffff)
            + UInt32(udpProtocol) + UInt32(udpLength)
    }

    private static func put16(_ value: UInt16, at offset: Int, in packet: inout [UInt8]) {
        packet[offset] = UInt8(truncatingIfNeeded: value >> 8)
        packet[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    private static func put32(_ value: UInt32, at offset: Int, in packet: inout [UInt8]) {
        put16(UInt16(truncatingIfNeeded: value >> 16), at: offset, in: &packet)
        put16(UInt16(truncatingIfNeeded: value), at: offset + 2, in: &packet)
    }

    private static func get16(at offset: Int, in packet: [UInt8]) -> UInt16 {
        UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1])
    }

    private static func get32(at offset: Int, in packet: [UInt8]) -> UInt32 {
        UInt32(get16(at: offset, in: packet)) << 16 | UInt32(get16(at: offset + 2, in: packet))
    }
}

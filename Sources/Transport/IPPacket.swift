// Inner packets: the minimal IPv6 header checks for cryptokey routing (RFC 8200 §3), and one parser
// for both families that the receive path uses.
//
// An IPv6 packet carried in a data frame has version 6, at least the 40-byte fixed header, and a payload
// length that fits the buffer; it is trimmed to 40 + payload length (as an IPv4 packet is trimmed to its
// total length). Payload length 0 means a jumbogram (RFC 2675), which a tunnel with an MTU below 65,535
// never carries: refused. Extension headers are not looked at: routing needs only the two addresses.

/// Minimal IPv6 header checks for cryptokey routing.
public enum IPv6Header {
    /// The fixed header's length.
    public static let length = 40

    /// Source and destination of a well-formed IPv6 packet, and its length (40 + payload length, which
    /// may be shorter than `packet.count` if the sender padded); nil for anything else.
    @inline(__always)
    public static func parse(_ packet: UnsafeRawBufferPointer) -> (source: IPv6Address, destination: IPv6Address, totalLength: Int)? {
        guard packet.count >= length, let p = packet.baseAddress, p.load(as: UInt8.self) >> 4 == 6 else { return nil }
        let payload = Int(p.load(fromByteOffset: 4, as: UInt8.self)) << 8 | Int(p.load(fromByteOffset: 5, as: UInt8.self))
        guard payload > 0, length + payload <= packet.count else { return nil }
        return (IPv6Address(networkBytes: p + 8), IPv6Address(networkBytes: p + 24), length + payload)
    }

    /// The destination of something that looks like IPv6 (cheap check for the send path), else nil.
    @inline(__always)
    public static func destination(_ packet: UnsafeRawBufferPointer) -> IPv6Address? {
        guard packet.count >= length, let p = packet.baseAddress, p.load(as: UInt8.self) >> 4 == 6 else { return nil }
        return IPv6Address(networkBytes: p + 24)
    }
}

/// An inner packet of either family, as far as the receive path reads it.
public enum IPPacket {
    /// Source, destination and length (IPv4 total length, or 40 + IPv6 payload length) of a well-formed
    /// IPv4 or IPv6 packet; nil for anything else (`DropReason.notIP`).
    @inline(__always)
    public static func parse(_ packet: UnsafeRawBufferPointer) -> (source: IPAddress, destination: IPAddress, totalLength: Int)? {
        guard let first = packet.first else { return nil }
        switch first >> 4 {
        case 4:
            guard let h = IPv4Header.parse(packet) else { return nil }
            return (.v4(h.source), .v4(h.destination), h.totalLength)
        case 6:
            guard let h = IPv6Header.parse(packet) else { return nil }
            return (.v6(h.source), .v6(h.destination), h.totalLength)
        default:
            return nil
        }
    }
}

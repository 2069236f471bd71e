// IPv4 addresses, prefixes and UDP endpoints as plain values.
//
// The core never resolves names or touches sockets; these types carry addresses between the core and
// the adapters in host byte order, and parse/print the dotted-quad forms operators type.

/// An IPv4 address in host byte order (`10.8.0.1` is `0x0A08_0001`).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses a strict dotted quad ("10.8.0.1"); returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        var parts: [UInt32] = []
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let n = UInt32(part), n <= 255
            else { return nil }
            parts.append(n)
        }
        guard parts.count == 4 else { return nil }
        value = parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
    }

    /// Reads four bytes in network order.
    public init(networkBytes p: UnsafeRawPointer) {
        value = UInt32(p.load(as: UInt8.self)) << 24 | UInt32(p.load(fromByteOffset: 1, as: UInt8.self)) << 16
            | UInt32(p.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt32(p.load(fromByteOffset: 3, as: UInt8.self))
    }

    /// Writes the four bytes in network order.
    public func write(networkBytesTo p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt8(truncatingIfNeeded: value >> 24), as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: value >> 16), toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: 3, as: UInt8.self)
    }

    public static let any = IPv4Address(0)

    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 network or interface address with its prefix length ("10.8.0.1/16").
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var length: Int

    public init(address: IPv4Address, length: Int) {
        precondition((0...32).contains(length), "prefix length must be 0...32")
        self.address = address
        self.length = length
    }

    /// Parses "A.B.C.D/N"; a bare address means /32.
    public init?(_ text: some StringProtocol) {
        let pieces = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPv4Address(pieces[0]) else { return nil }
        var length = 32
        if pieces.count == 2 {
            guard pieces[1].count <= 2, pieces[1].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(pieces[1]),
                n <= 32
            else { return nil }
            length = n
        }
        self.init(address: address, length: length)
    }

    public var mask: UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }
    public var network: IPv4Address { IPv4Address(address.value & mask) }
    public var broadcast: IPv4Address { IPv4Address(address.value | ~mask) }

    public func contains(_ other: IPv4Address) -> Bool { other.value & mask == address.value & mask }

    public var description: String { "\(address)/\(length)" }
}

/// A UDP/IPv4 endpoint.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var port: UInt16

    public init(address: IPv4Address, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses "A.B.C.D:PORT" (numeric only; names are resolved by the CLI).
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let address = IPv4Address(text[text.startIndex..<colon]),
            let port = UInt16(text[text.index(after: colon)...])
        else { return nil }
        self.init(address: address, port: port)
    }

    public static let none = Endpoint(address: .any, port: 0)

    public var description: String { "\(address):\(port)" }
}

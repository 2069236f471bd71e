// IPv4 and IPv6 addresses, prefixes and UDP endpoints as plain values.
//
// The core never resolves names or touches sockets; these types carry addresses between the core and
// the adapters in host byte order, and parse/print the forms operators type (dotted quads; RFC 4291
// text for IPv6, printed in RFC 5952's canonical form by inet_ntop(3)).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

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

/// "ADDRESS/N" as the address text and N (decimal digits only, at most `maximum`); a bare address has
/// length `maximum`. The address is left for the caller's family to parse.
func splitPrefix(_ text: some StringProtocol, maximum: Int) -> (address: Substring, length: Int)? {
    let pieces = Substring(text).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
    guard pieces.count == 2 else { return (pieces[0], maximum) }
    let digits = pieces[1]
    guard (1...3).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits),
        n <= maximum
    else { return nil }
    return (pieces[0], n)
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
        guard let (text, length) = splitPrefix(text, maximum: 32), let address = IPv4Address(text) else { return nil }
        self.init(address: address, length: length)
    }

    public var mask: UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }
    public var network: IPv4Address { IPv4Address(address.value & mask) }
    public var broadcast: IPv4Address { IPv4Address(address.value | ~mask) }

    public func contains(_ other: IPv4Address) -> Bool { other.value & mask == address.value & mask }

    public var description: String { "\(address)/\(length)" }
}

/// An IPv6 address as two 64-bit halves in host byte order (`fd00::1` is high `0xfd00_0000_0000_0000`, low 1).
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses RFC 4291 text ("fd00::1", "2001:db8:0:0:0:0:0:1", "::ffff:192.0.2.1") with inet_pton(3),
    /// which does it exactly; zone suffixes ("%eth0") and brackets are refused.
    public init?(_ text: some StringProtocol) {
        let string = String(text)
        guard string.contains(":"), !string.contains("%") else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, string, &bytes) == 1 else { return nil }
        self = bytes.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress!) }
    }

    /// Reads sixteen bytes in network order.
    public init(networkBytes p: UnsafeRawPointer) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        for i in 8..<16 { low = low << 8 | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        self.init(high: high, low: low)
    }

    /// Writes the sixteen bytes in network order.
    public func write(networkBytesTo p: UnsafeMutableRawPointer) {
        for i in 0..<8 { p.storeBytes(of: UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))), toByteOffset: i, as: UInt8.self) }
        for i in 0..<8 { p.storeBytes(of: UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))), toByteOffset: 8 + i, as: UInt8.self) }
    }

    /// The sixteen bytes in network order.
    public var networkBytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes { write(networkBytesTo: $0.baseAddress!) }
        return bytes
    }

    public static let any = IPv6Address(high: 0, low: 0)

    /// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), as a dual-stack socket reports an IPv4 peer.
    public var ipv4Mapped: IPv4Address? {
        guard high == 0, low >> 32 == 0xffff else { return nil }
        return IPv4Address(UInt32(truncatingIfNeeded: low))
    }

    /// The IPv4-mapped form of `address`.
    public init(mapping address: IPv4Address) { self.init(high: 0, low: 0xffff << 32 | UInt64(address.value)) }

    public var description: String {
        var bytes = networkBytes
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count)) != nil else { return "?" }
        return String(cString: text)
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { (a.high, a.low) < (b.high, b.low) }

    /// The address `n` above this one (wrapping), for walking a pool.
    public func advanced(by n: UInt64) -> IPv6Address {
        let (low, carry) = self.low.addingReportingOverflow(n)
        return IPv6Address(high: carry ? high &+ 1 : high, low: low)
    }
}

/// An IPv6 network or interface address with its prefix length ("fd00::1/64").
public struct IPv6Prefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv6Address
    public var length: Int

    public init(address: IPv6Address, length: Int) {
        precondition((0...128).contains(length), "prefix length must be 0...128")
        self.address = address
        self.length = length
    }

    /// Parses "ADDRESS/N"; a bare address means /128.
    public init?(_ text: some StringProtocol) {
        guard let (text, length) = splitPrefix(text, maximum: 128), let address = IPv6Address(text) else { return nil }
        self.init(address: address, length: length)
    }

    /// The mask as two halves.
    public var mask: (high: UInt64, low: UInt64) {
        let high: UInt64 = length == 0 ? 0 : length >= 64 ? .max : .max << UInt64(64 - length)
        let low: UInt64 = length <= 64 ? 0 : length == 128 ? .max : .max << UInt64(128 - length)
        return (high, low)
    }

    public var network: IPv6Address {
        let m = mask
        return IPv6Address(high: address.high & m.high, low: address.low & m.low)
    }

    /// The highest address in the prefix.
    public var last: IPv6Address {
        let m = mask
        return IPv6Address(high: address.high | ~m.high, low: address.low | ~m.low)
    }

    public func contains(_ other: IPv6Address) -> Bool {
        let m = mask
        return other.high & m.high == address.high & m.high && other.low & m.low == address.low & m.low
    }

    public var description: String { "\(address)/\(length)" }
}

/// An address of either family.
public enum IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// A dotted quad or RFC 4291 text; an IPv4-mapped IPv6 address stays IPv6 here (`unmapped` folds it).
    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) {
            self = .v4(a)
        } else if let a = IPv6Address(text) {
            self = .v6(a)
        } else {
            return nil
        }
    }

    /// The IPv4 address, for `.v4`.
    public var ipv4: IPv4Address? {
        if case .v4(let a) = self { return a }
        return nil
    }

    /// The IPv6 address, for `.v6`.
    public var ipv6: IPv6Address? {
        if case .v6(let a) = self { return a }
        return nil
    }

    public var isIPv6: Bool { ipv6 != nil }

    /// `::ffff:a.b.c.d` as `.v4(a.b.c.d)`, so a peer seen on a dual-stack socket has one identity.
    public var unmapped: IPAddress {
        if case .v6(let a) = self, let v4 = a.ipv4Mapped { return .v4(v4) }
        return self
    }

    /// Both kinds of "any": 0.0.0.0 and ::.
    public var isUnspecified: Bool { self == .v4(.any) || self == .v6(.any) }

    /// The address in network order (4 or 16 bytes).
    public var networkBytes: [UInt8] {
        switch self {
        case .v4(let a):
            return [UInt8(truncatingIfNeeded: a.value >> 24), UInt8(truncatingIfNeeded: a.value >> 16),
                UInt8(truncatingIfNeeded: a.value >> 8), UInt8(truncatingIfNeeded: a.value)]
        case .v6(let a): return a.networkBytes
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): return x < y
        case (.v6(let x), .v6(let y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        }
    }
}

/// A UDP endpoint of either family.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public init(address: IPv4Address, port: UInt16) { self.init(address: .v4(address), port: port) }

    public init(address: IPv6Address, port: UInt16) { self.init(address: .v6(address), port: port) }

    /// Parses "A.B.C.D:PORT" or "[IPV6]:PORT" (numeric only; names are resolved by the CLI). An IPv6
    /// address without brackets is refused: its last group could be read as the port.
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        let host = text[text.startIndex..<colon]
        if host.hasPrefix("["), host.hasSuffix("]"), host.count > 2,
            let address = IPv6Address(host.dropFirst().dropLast())
        {
            self.init(address: address, port: port)
        } else if let address = IPv4Address(host) {
            self.init(address: address, port: port)
        } else {
            return nil
        }
    }

    public static let none = Endpoint(address: IPv4Address.any, port: 0)

    /// The same endpoint with an IPv4-mapped address folded to IPv4.
    public var unmapped: Endpoint { Endpoint(address: address.unmapped, port: port) }

    /// "A.B.C.D:PORT" or "[IPV6]:PORT".
    public var description: String {
        switch address {
        case .v4(let a): return "\(a):\(port)"
        case .v6(let a): return "[\(a)]:\(port)"
        }
    }
}

/// A prefix of either family ("192.168.50.0/24", "fd00:50::/64"): a network routed behind a peer.
public enum IPPrefix: Hashable, Sendable, Comparable, CustomStringConvertible {
    case v4(IPv4Prefix)
    case v6(IPv6Prefix)

    /// Parses "ADDRESS/N" of either family; a bare address is a host prefix (/32 or /128).
    public init?(_ text: some StringProtocol) {
        if text.contains(":") {
            guard let p = IPv6Prefix(text) else { return nil }
            self = .v6(p)
        } else {
            guard let p = IPv4Prefix(text) else { return nil }
            self = .v4(p)
        }
    }

    public var length: Int {
        switch self {
        case .v4(let p): return p.length
        case .v6(let p): return p.length
        }
    }

    /// True for a prefix of one address (/32, /128).
    public var isHost: Bool {
        switch self {
        case .v4(let p): return p.length == 32
        case .v6(let p): return p.length == 128
        }
    }

    /// The address as written (with its host bits).
    public var address: IPAddress {
        switch self {
        case .v4(let p): return .v4(p.address)
        case .v6(let p): return .v6(p.address)
        }
    }

    /// The prefix with its host bits cleared ("192.168.50.7/24" → "192.168.50.0/24").
    public var network: IPPrefix {
        switch self {
        case .v4(let p): return .v4(IPv4Prefix(address: p.network, length: p.length))
        case .v6(let p): return .v6(IPv6Prefix(address: p.network, length: p.length))
        }
    }

    /// True when the address has bits set beyond the prefix length.
    public var hasHostBits: Bool { network != self }

    public func contains(_ address: IPAddress) -> Bool {
        switch (self, address) {
        case (.v4(let p), .v4(let a)): return p.contains(a)
        case (.v6(let p), .v6(let a)): return p.contains(a)
        default: return false
        }
    }

    /// True when the two prefixes share an address (one contains the other's network).
    public func overlaps(_ other: IPPrefix) -> Bool {
        length <= other.length ? contains(other.address) : other.contains(address)
    }

    public var description: String {
        switch self {
        case .v4(let p): return p.description
        case .v6(let p): return p.description
        }
    }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool {
        a.address != b.address ? a.address < b.address : a.length < b.length
    }
}

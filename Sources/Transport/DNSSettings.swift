// The DNS settings a server pushes in its response, and their 128-byte wire form, the "DNS block"
// (docs/PROTOCOL.md, "The DNS block"):
//   resolver count n (1, 0…4) ‖ 4 × 16 bytes of resolver addresses (IPv4 as IPv4-mapped ::ffff:a.b.c.d,
//   unused slots zero) ‖ search list length L (1, 0…62) ‖ 62 bytes: the search domains in ASCII separated
//   by single spaces, then zeros.
// The same checks guard both ends: the server refuses to start with settings the block cannot carry or a
// client would refuse, and the client refuses a block that breaks any rule (`invalidDNSSettings`).

/// Resolvers and search domains for the client's name lookups.
public struct DNSSettings: Equatable, Sendable {
    /// Resolver addresses, IPv4 or IPv6, in the order the client uses them (at most `WireFormat.maxDNSResolvers`).
    public var resolvers: [IPAddress]
    /// Search domains without a trailing dot (together at most `WireFormat.maxDNSSearchLength` bytes as sent).
    public var searchDomains: [String]

    public init(resolvers: [IPAddress] = [], searchDomains: [String] = []) {
        self.resolvers = resolvers
        self.searchDomains = searchDomains
    }

    /// No resolvers and no search domains: nothing to apply.
    public static let none = DNSSettings()

    public var isEmpty: Bool { resolvers.isEmpty && searchDomains.isEmpty }

    /// The search domains as the block carries them: ASCII, separated by single spaces.
    public var searchText: String { searchDomains.joined(separator: " ") }
}

extension DNSSettings {
    /// Why `address` cannot be a pushed resolver, or nil when it can: unspecified, loopback and multicast
    /// addresses name no resolver a client could reach through the tunnel.
    public static func resolverProblem(_ address: IPAddress) -> String? {
        switch address.unmapped {
        case .v4(let a):
            if a == .any { return "\(a) is the unspecified address" }
            if a.value >> 24 == 127 { return "\(a) is a loopback address" }
            if a.value >> 28 == 0xE { return "\(a) is a multicast address" }
        case .v6(let a):
            if a == .any { return "\(a) is the unspecified address" }
            if a == IPv6Address(high: 0, low: 1) { return "\(a) is the loopback address" }
            if a.high >> 56 == 0xFF { return "\(a) is a multicast address" }
        }
        return nil
    }

    /// Why `domain` cannot be a search domain, or nil when it can: 1…253 characters, labels of 1…63
    /// letters, digits and hyphens that neither start nor end with a hyphen (RFC 1035 §2.3.1, RFC 1123
    /// §2.1), no empty label (so no trailing dot).
    public static func domainProblem(_ domain: String) -> String? {
        let bytes = Array(domain.utf8)
        guard !bytes.isEmpty else { return "an empty domain" }
        guard bytes.count <= 253 else { return "a domain of \(bytes.count) characters (at most 253)" }
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !label.isEmpty else { return "an empty label in \(printable(bytes))" }
            guard label.count <= 63 else { return "a label of \(label.count) characters in \(printable(bytes)) (at most 63)" }
            guard label.allSatisfy(isLabelCharacter) else {
                return "a character other than letters, digits, '-' and '.' in \(printable(bytes))"
            }
            guard label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else {
                return "a label starting or ending with '-' in \(printable(bytes))"
            }
        }
        return nil
    }

    /// Why these settings cannot be pushed, or nil when they can (the server's check at start).
    public var problem: String? {
        if resolvers.count > WireFormat.maxDNSResolvers {
            return "\(resolvers.count) resolvers (the protocol carries at most \(WireFormat.maxDNSResolvers))"
        }
        for r in resolvers { if let p = Self.resolverProblem(r) { return p } }
        for d in searchDomains { if let p = Self.domainProblem(d) { return p } }
        let length = searchText.utf8.count
        if length > WireFormat.maxDNSSearchLength {
            return "search domains of \(length) bytes together (the protocol carries at most \(WireFormat.maxDNSSearchLength), counting one space between domains)"
        }
        return nil
    }

    /// The 128-byte DNS block. Settings with a `problem` are the caller's error (the server checks them at
    /// start); what does not fit is left out rather than trapping.
    public var block: [UInt8] {
        var b = [UInt8](repeating: 0, count: WireFormat.dnsBlockLength)
        let count = min(resolvers.count, WireFormat.maxDNSResolvers)
        b[0] = UInt8(count)
        for (i, r) in resolvers.prefix(count).enumerated() {
            let at = 1 + 16 * i
            let bytes: [UInt8]
            switch r.unmapped {
            case .v4(let a): bytes = IPv6Address(mapping: a).networkBytes
            case .v6(let a): bytes = a.networkBytes
            }
            b.replaceSubrange(at..<(at + 16), with: bytes)
        }
        let text = Array(searchText.utf8)
        if text.count <= WireFormat.maxDNSSearchLength {
            b[Self.searchLengthOffset] = UInt8(text.count)
            b.replaceSubrange((Self.searchLengthOffset + 1)..<(Self.searchLengthOffset + 1 + text.count), with: text)
        }
        return b
    }

    /// Offset of the search list length in the block (after the count and four 16-byte slots).
    static let searchLengthOffset = 1 + 16 * WireFormat.maxDNSResolvers

    /// Reads a DNS block, checking every rule of docs/PROTOCOL.md ("The DNS block"). The error names what
    /// is wrong (never the block's bytes in full).
    public init(block b: ArraySlice<UInt8>) throws(DNSBlockError) {
        guard b.count == WireFormat.dnsBlockLength else { throw DNSBlockError("a block of \(b.count) bytes") }
        let base = b.startIndex
        let count = Int(b[base])
        guard count <= WireFormat.maxDNSResolvers else {
            throw DNSBlockError("\(count) resolvers (at most \(WireFormat.maxDNSResolvers))")
        }
        var resolvers: [IPAddress] = []
        for i in 0..<WireFormat.maxDNSResolvers {
            let at = base + 1 + 16 * i
            let slot = Array(b[at..<(at + 16)])
            if i >= count {
                guard slot.allSatisfy({ $0 == 0 }) else { throw DNSBlockError("unused resolver slot \(i + 1) is not zero") }
                continue
            }
            let address = IPv6Address(high: readBE64(slot, 0), low: readBE64(slot, 8))
            let resolver: IPAddress = address.ipv4Mapped.map { .v4($0) } ?? .v6(address)
            if let problem = Self.resolverProblem(resolver) { throw DNSBlockError("resolver \(i + 1): \(problem)") }
            resolvers.append(resolver)
        }
        let lengthAt = base + Self.searchLengthOffset
        let length = Int(b[lengthAt])
        guard length <= WireFormat.maxDNSSearchLength else {
            throw DNSBlockError("a search list of \(length) bytes (at most \(WireFormat.maxDNSSearchLength))")
        }
        let text = b[(lengthAt + 1)..<(lengthAt + 1 + length)]
        guard b[(lengthAt + 1 + length)...].allSatisfy({ $0 == 0 }) else {
            throw DNSBlockError("non-zero bytes after the search list")
        }
        var domains: [String] = []
        if length > 0 {
            for part in text.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false) {
                guard !part.isEmpty else { throw DNSBlockError("an empty search domain (two spaces, or a space at an end)") }
                let domain = String(decoding: part, as: UTF8.self)
                if let problem = Self.domainProblem(domain) { throw DNSBlockError("search domain: \(problem)") }
                domains.append(domain)
            }
        }
        self.init(resolvers: resolvers, searchDomains: domains)
    }

    static func isLabelCharacter(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-")
    }

    /// A domain for an error message: printable ASCII kept, anything else as '?', at most 64 characters,
    /// so that a pushed block never reaches the log in full.
    static func printable(_ bytes: [UInt8]) -> String {
        let shown = bytes.prefix(64).map { $0 >= 0x20 && $0 < 0x7F ? Character(UnicodeScalar($0)) : "?" }
        return "'" + String(shown) + (bytes.count > 64 ? "…'" : "'")
    }
}

/// What is wrong with a DNS block a server sent (for `HandshakeFailure.invalidDNSSettings`).
public struct DNSBlockError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// The server's allow-list: which client keys may connect, and optionally the tunnel address each gets.
//
// File format (one client per line, as `keys/clients`):
//     # comment lines and blank lines are ignored
//     BASE64-PUBLIC-KEY [IPV4-ADDRESS] [IPV6-ADDRESS] [# comment]
// e.g. `xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= 10.8.0.7 fd12:3456:789a::7  # laptop`. The two
// addresses may come in either order, at most one of each family (a `/32` or `/128` suffix is allowed).
// Parsing is pure; the CLI reads the file, checks the addresses against the server's prefixes
// (`AllowList.outOfPrefix`) and reports errors with the file name and line.

import Crypto

/// One allowed client.
public struct AllowedClient: Equatable, Sendable {
    public var key: PublicKey
    /// A fixed IPv4 tunnel address, or nil to take one from the pool.
    public var address: IPv4Address?
    /// A fixed IPv6 tunnel address, or nil to take one from the pool (when the tunnel carries IPv6).
    public var address6: IPv6Address?
    public var comment: String
    /// The 1-based line of the file it came from (0 for a list built in code).
    public var line: Int

    public init(key: PublicKey, address: IPv4Address? = nil, address6: IPv6Address? = nil, comment: String = "", line: Int = 0) {
        self.key = key
        self.address = address
        self.address6 = address6
        self.comment = comment
        self.line = line
    }

    /// The client's name: the first word of its comment (`# laptop, Anna's` names it `laptop,`; words are
    /// split on spaces and tabs), empty when there is no comment. `tunvpn show` and the metrics label
    /// peers with it; `tunvpn add-client NAME` writes it.
    public var name: String {
        comment.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? ""
    }

    /// Equal when key, addresses and comment are: the line is where it was read, not what it says.
    public static func == (a: AllowedClient, b: AllowedClient) -> Bool {
        a.key == b.key && a.address == b.address && a.address6 == b.address6 && a.comment == b.comment
    }
}

/// A parse error, with the 1-based line it was found on.
public struct AllowListError: Error, Equatable, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

/// A parsed allow-list.
public struct AllowList: Equatable, Sendable {
    public var clients: [AllowedClient]

    public init(clients: [AllowedClient] = []) { self.clients = clients }

    /// Parses the file's text; the first bad line is an error (a half-read allow-list is never used).
    public init(parsing text: String) throws(AllowListError) {
        var clients: [AllowedClient] = []
        var seenKeys = Set<PublicKey>()
        var seenAddresses = Set<IPAddress>()
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = i + 1
            var content = Substring(rawLine)
            var comment = ""
            if let hash = content.firstIndex(of: "#") {
                comment = content[content.index(after: hash)...].trimmingSpaces()
                content = content[..<hash]
            }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count <= 3 else {
                throw AllowListError(
                    line: lineNumber,
                    message: "expected a public key and at most one IPv4 and one IPv6 address, e.g. `KEY 10.8.0.7 fd00::7 # laptop`")
            }
            let key: PublicKey
            do { key = try PublicKey(base64: String(fields[0])) } catch {
                throw AllowListError(line: lineNumber, message: "public key \(error)")
            }
            var address: IPv4Address? = nil
            var address6: IPv6Address? = nil
            for field in fields.dropFirst() {
                let parsed: IPAddress
                if field.contains(":") {
                    let text = field.hasSuffix("/128") ? field.dropLast(4) : field
                    guard let a = IPv6Address(text) else {
                        throw AllowListError(line: lineNumber, message: "'\(field)' is not an IPv6 address (e.g. fd00::7)")
                    }
                    if let first = address6 {
                        throw AllowListError(
                            line: lineNumber, message: "two IPv6 addresses (\(first) and \(a)); give at most one of each family")
                    }
                    address6 = a
                    parsed = .v6(a)
                } else {
                    let text = field.hasSuffix("/32") ? field.dropLast(3) : field
                    guard let a = IPv4Address(text) else {
                        throw AllowListError(line: lineNumber, message: "'\(field)' is not an IPv4 address")
                    }
                    if let first = address {
                        throw AllowListError(
                            line: lineNumber, message: "two IPv4 addresses (\(first) and \(a)); give at most one of each family")
                    }
                    address = a
                    parsed = .v4(a)
                }
                guard seenAddresses.insert(parsed).inserted else {
                    throw AllowListError(line: lineNumber, message: "address \(parsed) is given to two clients")
                }
            }
            guard seenKeys.insert(key).inserted else {
                throw AllowListError(line: lineNumber, message: "key \(key.base64) is listed twice")
            }
            clients.append(AllowedClient(key: key, address: address, address6: address6, comment: comment, line: lineNumber))
        }
        self.clients = clients
    }

    /// The first fixed address that is not a client address in the server's prefix of its family (the
    /// server's own address is not one, nor, for IPv6, the network address: the subnet-router anycast
    /// address of RFC 4291 §2.6.1), or an IPv6 address when the server has no IPv6 prefix: the error's
    /// line and words, without the file name.
    public func outOfPrefix(_ prefix: IPv4Prefix, _ prefix6: IPv6Prefix?) -> AllowListError? {
        for c in clients {
            if let a = c.address, !prefix.contains(a) || a == prefix.address {
                return AllowListError(
                    line: c.line, message: "address \(a) for \(c.key.base64) is not a client address in \(prefix)")
            }
            guard let a = c.address6 else { continue }
            guard let prefix6 else {
                return AllowListError(
                    line: c.line,
                    message: "IPv6 address \(a) for \(c.key.base64), but the server's tunnel carries no IPv6 (--no-ipv6); remove it or drop --no-ipv6")
            }
            if !prefix6.contains(a) || a == prefix6.address || a == prefix6.network {
                return AllowListError(
                    line: c.line, message: "address \(a) for \(c.key.base64) is not a client address in \(prefix6)")
            }
        }
        return nil
    }

    /// The file's text form (keys, addresses and comments).
    public var text: String {
        clients.map { c in
            var line = c.key.base64
            if let a = c.address { line += " \(a)" }
            if let a = c.address6 { line += " \(a)" }
            if !c.comment.isEmpty { line += "  # \(c.comment)" }
            return line + "\n"
        }.joined()
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}

/// What a reload of the allow-list changed (`TunnelState.replaceAllowList`).
public struct AllowListChange: Equatable, Sendable, CustomStringConvertible {
    /// A fixed address the new list gives to one key, taken from the peer that held it.
    public struct Eviction: Equatable, Sendable {
        /// The address (of either family) that changed hands.
        public var address: IPAddress
        /// The previous holder, which lost its sessions and draws a pool address of that family at its
        /// next handshake.
        public var key: PublicKey

        public init(address: IPAddress, key: PublicKey) {
            self.address = address
            self.key = key
        }

        public init(address: IPv4Address, key: PublicKey) { self.init(address: .v4(address), key: key) }

        public init(address: IPv6Address, key: PublicKey) { self.init(address: .v6(address), key: key) }
    }

    /// Keys that became peers.
    public var added = 0
    /// Peers whose key left the list (their sessions are gone).
    public var removed = 0
    /// Peers whose fixed address changed (their sessions are gone; the next handshake carries it).
    public var readdressed = 0
    /// Peers that lost their address to the key the new list gives it to.
    public var evicted: [Eviction] = []

    public init(added: Int = 0, removed: Int = 0, readdressed: Int = 0, evicted: [Eviction] = []) {
        self.added = added
        self.removed = removed
        self.readdressed = readdressed
        self.evicted = evicted
    }

    /// `1 added, 0 removed, 0 readdressed, 2 evicted (10.8.0.2 from KEY, fd00::2 from KEY)`, for logs and
    /// `tunvpn reload`.
    public var description: String {
        var text = "\(added) added, \(removed) removed, \(readdressed) readdressed, \(evicted.count) evicted"
        if !evicted.isEmpty {
            text += " (" + evicted.map { "\($0.address) from \($0.key.base64)" }.joined(separator: ", ") + ")"
        }
        return text
    }
}

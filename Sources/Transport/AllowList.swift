// The server's allow-list: which client keys may connect, the tunnel address each gets, and the
// networks routed behind each (its allowed IPs).
//
// File format (one client per line, as `keys/clients`):
//     # comment lines and blank lines are ignored
//     BASE64-PUBLIC-KEY [ADDRESS-OR-PREFIX ...] [# comment]
// e.g. `xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= 10.8.0.7 fd12:3456:789a::7  # laptop`, or
// `KEY 10.8.0.5/32,fd00:8::5/128,192.168.50.0/24 # office` (tokens separated by spaces and/or commas, as
// WireGuard's AllowedIPs). A bare address is the client's tunnel address of its family (at most one of
// each); so is a host prefix (/32, /128) inside the server's tunnel prefix of its family (or, when the
// parser is not given the server's prefixes, the first host prefix of a family). Every other prefix is
// routed behind the client (`AllowedClient.routed`): cryptokey routing sends it there by longest prefix
// match, and the client may send from it (docs/PROTOCOL.md, "Allowed IPs").
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
    /// Networks routed behind the client (site to site), in the line's order, host bits clear.
    public var routed: [IPPrefix]
    public var comment: String
    /// The 1-based line of the file it came from (0 for a list built in code).
    public var line: Int

    public init(
        key: PublicKey, address: IPv4Address? = nil, address6: IPv6Address? = nil, routed: [IPPrefix] = [], comment: String = "",
        line: Int = 0
    ) {
        self.key = key
        self.address = address
        self.address6 = address6
        self.routed = routed
        self.comment = comment
        self.line = line
    }

    /// The client's name: the first word of its comment (`# laptop, Anna's` names it `laptop,`; words are
    /// split on spaces and tabs), empty when there is no comment. `tunvpn show` and the metrics label
    /// peers with it; `tunvpn add-client NAME` writes it.
    public var name: String {
        comment.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? ""
    }

    /// Equal when key, addresses, routed prefixes and comment are: the line is where it was read, not what
    /// it says.
    public static func == (a: AllowedClient, b: AllowedClient) -> Bool {
        a.key == b.key && a.address == b.address && a.address6 == b.address6 && a.routed == b.routed && a.comment == b.comment
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
    /// `prefix` and `prefix6` are the server's tunnel prefixes when known: a host prefix (/32, /128) inside
    /// one is the tunnel address, outside it is routed behind the client. Without them the first host
    /// prefix of a family is the tunnel address unless the line has a bare address of that family, and
    /// the others are routed.
    public init(parsing text: String, prefix: IPv4Prefix? = nil, prefix6: IPv6Prefix? = nil) throws(AllowListError) {
        var clients: [AllowedClient] = []
        var seenKeys = Set<PublicKey>()
        var seenAddresses = Set<IPAddress>()
        var routedOn: [IPPrefix: Int] = [:]
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = i + 1
            var content = Substring(rawLine)
            var comment = ""
            if let hash = content.firstIndex(of: "#") {
                comment = content[content.index(after: hash)...].trimmingSpaces()
                content = content[..<hash]
            }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "," })
            if fields.isEmpty { continue }
            let key: PublicKey
            do { key = try PublicKey(base64: String(fields[0])) } catch {
                throw AllowListError(line: lineNumber, message: "public key \(error)")
            }
            var address: IPv4Address? = nil
            var address6: IPv6Address? = nil
            var routed: [IPPrefix] = []
            // Without the server's prefixes, a bare address of a family is the tunnel address wherever it
            // stands on the line, and a host prefix of that family is then routed.
            let bare4 = fields.dropFirst().contains { !$0.contains("/") && !$0.contains(":") }
            let bare6 = fields.dropFirst().contains { !$0.contains("/") && $0.contains(":") }
            for field in fields.dropFirst() {
                // A bare address, or a host prefix that is the tunnel address, sets `tunnel`.
                var tunnel: IPAddress? = nil
                if !field.contains("/") {
                    if field.contains(":") {
                        guard let a = IPv6Address(field) else {
                            throw AllowListError(line: lineNumber, message: "'\(field)' is not an IPv6 address (e.g. fd00::7)")
                        }
                        tunnel = .v6(a)
                    } else {
                        guard let a = IPv4Address(field) else {
                            throw AllowListError(line: lineNumber, message: "'\(field)' is not an IPv4 address")
                        }
                        tunnel = .v4(a)
                    }
                } else {
                    guard let p = IPPrefix(field) else {
                        throw AllowListError(
                            line: lineNumber,
                            message: "'\(field)' is not an address or prefix (e.g. 10.8.0.7, 192.168.50.0/24 or fd00:50::/64)")
                    }
                    guard !p.hasHostBits else {
                        throw AllowListError(
                            line: lineNumber, message: "prefix \(p) has host bits set; give its network, e.g. \(p.network)")
                    }
                    switch p {
                    case .v4(let p4) where p.isHost:
                        if prefix.map({ $0.contains(p4.address) }) ?? (!bare4 && address == nil) { tunnel = .v4(p4.address) }
                    case .v6(let p6) where p.isHost:
                        if prefix6.map({ $0.contains(p6.address) }) ?? (!bare6 && address6 == nil) { tunnel = .v6(p6.address) }
                    default: break
                    }
                    if tunnel == nil {
                        if let other = routedOn[p] {
                            throw AllowListError(
                                line: lineNumber,
                                message: other == lineNumber
                                    ? "prefix \(p) is given twice; give it once"
                                    : "prefix \(p) is already routed behind the client of line \(other); a prefix goes behind one client, e.g. remove it from one of the lines")
                        }
                        routedOn[p] = lineNumber
                        routed.append(p)
                        continue
                    }
                }
                switch tunnel {
                case .v4(let a):
                    if let first = address {
                        throw AllowListError(
                            line: lineNumber, message: "two IPv4 addresses (\(first) and \(a)); give at most one of each family")
                    }
                    address = a
                case .v6(let a):
                    if let first = address6 {
                        throw AllowListError(
                            line: lineNumber, message: "two IPv6 addresses (\(first) and \(a)); give at most one of each family")
                    }
                    address6 = a
                case nil: continue
                }
                if let tunnel, !seenAddresses.insert(tunnel).inserted {
                    throw AllowListError(line: lineNumber, message: "address \(tunnel) is given to two clients")
                }
            }
            guard seenKeys.insert(key).inserted else {
                throw AllowListError(line: lineNumber, message: "key \(key.base64) is listed twice")
            }
            clients.append(
                AllowedClient(key: key, address: address, address6: address6, routed: routed, comment: comment, line: lineNumber))
        }
        self.clients = clients
    }

    /// Every prefix routed behind a client, sorted.
    public var routedPrefixes: [IPPrefix] { clients.flatMap(\.routed).sorted() }

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
            for p in c.routed {
                switch p {
                case .v4(let p4):
                    if p.overlaps(.v4(IPv4Prefix(address: prefix.network, length: prefix.length))) {
                        return AllowListError(
                            line: c.line,
                            message: "routed prefix \(p4) for \(c.key.base64) overlaps the tunnel prefix \(prefix); route only networks outside it, e.g. 192.168.50.0/24")
                    }
                case .v6(let p6):
                    guard let prefix6 else {
                        return AllowListError(
                            line: c.line,
                            message: "IPv6 prefix \(p6) for \(c.key.base64), but the server's tunnel carries no IPv6 (--no-ipv6); remove it or drop --no-ipv6")
                    }
                    if p.overlaps(.v6(IPv6Prefix(address: prefix6.network, length: prefix6.length))) {
                        return AllowListError(
                            line: c.line,
                            message: "routed prefix \(p6) for \(c.key.base64) overlaps the tunnel prefix \(prefix6); route only networks outside it, e.g. fd00:50::/64")
                    }
                }
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

    /// The file's text form (keys, addresses, routed prefixes and comments).
    public var text: String {
        clients.map { c in
            var line = c.key.base64
            if let a = c.address { line += " \(a)" }
            if let a = c.address6 { line += " \(a)" }
            for p in c.routed { line += " \(p)" }
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

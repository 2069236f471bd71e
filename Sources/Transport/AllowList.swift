// The server's allow-list: which client keys may connect, and optionally the tunnel address each gets.
//
// File format (one client per line, as `keys/clients`):
//     # comment lines and blank lines are ignored
//     BASE64-PUBLIC-KEY [TUNNEL-ADDRESS] [# comment]
// e.g. `xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= 10.8.0.7  # laptop`. Parsing is pure; the CLI reads
// the file and reports errors with the file name and line.

import Crypto

/// One allowed client.
public struct AllowedClient: Equatable, Sendable {
    public var key: PublicKey
    /// A fixed tunnel address, or nil to take one from the pool.
    public var address: IPv4Address?
    public var comment: String

    public init(key: PublicKey, address: IPv4Address? = nil, comment: String = "") {
        self.key = key
        self.address = address
        self.comment = comment
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
        var seenAddresses = Set<IPv4Address>()
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
            guard fields.count <= 2 else {
                throw AllowListError(line: lineNumber, message: "expected a public key and an optional address")
            }
            let key: PublicKey
            do { key = try PublicKey(base64: String(fields[0])) } catch {
                throw AllowListError(line: lineNumber, message: "public key \(error)")
            }
            var address: IPv4Address? = nil
            if fields.count == 2 {
                let text = fields[1].hasSuffix("/32") ? fields[1].dropLast(3) : fields[1]
                guard let a = IPv4Address(text) else {
                    throw AllowListError(line: lineNumber, message: "'\(fields[1])' is not an IPv4 address")
                }
                guard seenAddresses.insert(a).inserted else {
                    throw AllowListError(line: lineNumber, message: "address \(a) is given to two clients")
                }
                address = a
            }
            guard seenKeys.insert(key).inserted else {
                throw AllowListError(line: lineNumber, message: "key \(key.base64) is listed twice")
            }
            clients.append(AllowedClient(key: key, address: address, comment: comment))
        }
        self.clients = clients
    }

    /// The file's text form (keys, addresses and comments).
    public var text: String {
        clients.map { c in
            var line = c.key.base64
            if let a = c.address { line += " \(a)" }
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
        public var address: IPv4Address
        /// The previous holder, which lost its sessions and draws a pool address at its next handshake.
        public var key: PublicKey

        public init(address: IPv4Address, key: PublicKey) {
            self.address = address
            self.key = key
        }
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

    /// `1 added, 0 removed, 0 readdressed, 1 evicted (10.8.0.2 from KEY)`, for logs and `tunvpn reload`.
    public var description: String {
        var text = "\(added) added, \(removed) removed, \(readdressed) readdressed, \(evicted.count) evicted"
        if !evicted.isEmpty {
            text += " (" + evicted.map { "\($0.address) from \($0.key.base64)" }.joined(separator: ", ") + ")"
        }
        return text
    }
}

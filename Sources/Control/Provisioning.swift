// `tunvpn add-client`, `remove-client` and `genpsk`: the server's allow-list edited in place (one line per
// client, the grammar of Transport/AllowList.swift), addresses allocated from the server's prefixes, and a
// ready client config file (config/README.md: keys are `tunvpn client`'s long option names).
//
// The pure parts (allocation, the edited text, the client's TOML) are separate from the file writing,
// so they are tested without a file system.

import Crypto
import Glibc
import Platform
import TOMLKit
import Transport

/// Editing the allow-list and rendering client configs.
public enum Provisioning {
    /// A client's name: the first word of its allow-list comment, so it must be one word that a TOML
    /// file name and a Prometheus label can carry. Returns the problem, or nil when `name` is fine.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 64 { return "is longer than 64 bytes" }
        if name.hasPrefix("-") || name.hasPrefix(".") { return "starts with '\(name.first!)'" }
        let allowed = name.unicodeScalars.allSatisfy { s in
            s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "-" || s == "_" || s == ".")
        }
        return allowed ? nil : "may hold only letters, digits, '-', '_' and '.'"
    }

    /// The first IPv4 address of `prefix` after the server's own that is neither the network nor the
    /// broadcast address nor in `taken`; nil when the prefix is full.
    public static func nextFreeAddress(in prefix: IPv4Prefix, taken: Set<IPv4Address>) -> IPv4Address? {
        let first = prefix.network.value &+ 1
        let last = prefix.broadcast.value &- 1
        guard first <= last else { return nil }
        for value in first...last {
            let a = IPv4Address(value)
            if a != prefix.address && !taken.contains(a) { return a }
        }
        return nil
    }

    /// The first IPv6 address of `prefix` after its network address (the subnet-router anycast address,
    /// RFC 4291 §2.6.1) that is not the server's own nor in `taken`, searching at most `limit` addresses;
    /// nil when none is free there.
    public static func nextFreeAddress6(in prefix: IPv6Prefix, taken: Set<IPv6Address>, limit: UInt64 = 1 << 20) -> IPv6Address? {
        var a = prefix.network.advanced(by: 1)
        var tried: UInt64 = 0
        while tried < limit, prefix.contains(a) {
            if a != prefix.address && !taken.contains(a) { return a }
            a = a.advanced(by: 1)
            tried += 1
        }
        return nil
    }

    /// The allow-list line for a client: `KEY ADDR4 [ADDR6]  # NAME`.
    public static func line(key: PublicKey, address: IPv4Address?, address6: IPv6Address?, name: String) -> String {
        AllowList(clients: [AllowedClient(key: key, address: address, address6: address6, comment: name)]).text
    }

    /// `text` (an allow-list file's contents) with `line` appended, a newline added before it when the
    /// file's last line has none. Every other byte of the file is kept.
    public static func appending(_ line: String, to text: String) -> String {
        if text.isEmpty || text.hasSuffix("\n") { return text + line }
        return text + "\n" + line
    }

    /// `text` without the lines of the clients named `name`; every other byte is kept.
    ///
    /// - Throws: `ControlError` when no client has that name, or the text is not a valid allow-list.
    public static func removing(name: String, from text: String, file: String) throws(ControlError) -> (text: String, removed: [AllowedClient]) {
        let list: AllowList
        do { list = try AllowList(parsing: text) } catch { throw ControlError("\(file): \(error)") }
        let removed = list.clients.filter { $0.name == name }
        guard !removed.isEmpty else {
            let names = list.clients.map(\.name).filter { !$0.isEmpty }
            let known = names.isEmpty ? "no client there has a name" : "names there: \(names.joined(separator: ", "))"
            throw ControlError("remove-client \(name): no client named \(name) in \(file) (\(known))")
        }
        let lines = Set(removed.map(\.line))
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            .filter { !lines.contains($0.offset + 1) }.map { String($0.element) }
        return (kept.joined(separator: "\n"), removed)
    }

    /// What the new client gets: its key, its addresses and the line to append.
    public struct Allocation: Equatable, Sendable {
        public var address: IPv4Address
        public var address6: IPv6Address?
        public var line: String
    }

    /// Checks `name` and `key` against `list` and picks the addresses: `address`/`address6` when given
    /// (checked to be free client addresses of the prefixes), else the next free ones. No IPv6 address
    /// when `prefix6` is nil (the server carries no IPv6).
    ///
    /// - Throws: `ControlError`, one line, for a bad or duplicate name, a duplicate key, a taken or
    ///   out-of-prefix address, or a full prefix.
    public static func allocate(
        name: String, key: PublicKey, list: AllowList, file: String, prefix: IPv4Prefix, prefix6: IPv6Prefix?,
        address: IPv4Address? = nil, address6: IPv6Address? = nil
    ) throws(ControlError) -> Allocation {
        if let problem = nameProblem(name) {
            throw ControlError("add-client NAME '\(name)' \(problem); give one word, e.g. tunvpn add-client laptop")
        }
        if let other = list.clients.first(where: { $0.name == name }) {
            throw ControlError("add-client \(name): \(file):\(other.line) already has a client named \(name); pick another name or `tunvpn remove-client \(name)` first")
        }
        if let other = list.clients.first(where: { $0.key == key }) {
            let who = other.name.isEmpty ? "" : " (named \(other.name))"
            throw ControlError("add-client \(name): \(file):\(other.line) already lists key \(key.base64)\(who); each client needs its own key")
        }
        let taken4 = Set(list.clients.compactMap(\.address))
        let taken6 = Set(list.clients.compactMap(\.address6))
        let v4: IPv4Address
        if let address {
            guard prefix.contains(address), address != prefix.address, address != prefix.network, address != prefix.broadcast else {
                throw ControlError("--address \(address) is not a client address in the server's \(prefix); e.g. --address \(nextFreeAddress(in: prefix, taken: taken4).map { "\($0)" } ?? "\(prefix.network)")")
            }
            if let other = list.clients.first(where: { $0.address == address }) {
                throw ControlError("--address \(address) is taken by \(file):\(other.line); e.g. --address \(nextFreeAddress(in: prefix, taken: taken4).map { "\($0)" } ?? "another one")")
            }
            v4 = address
        } else {
            guard let free = nextFreeAddress(in: prefix, taken: taken4) else {
                throw ControlError("\(file): no free IPv4 address left in \(prefix); widen the server's --address prefix (e.g. 10.8.0.1/16)")
            }
            v4 = free
        }
        var v6: IPv6Address? = nil
        if let prefix6 {
            if let address6 {
                guard prefix6.contains(address6), address6 != prefix6.address, address6 != prefix6.network else {
                    throw ControlError("--address \(address6) is not a client address in the server's \(prefix6); e.g. --address \(prefix6.network.advanced(by: 2))")
                }
                if let other = list.clients.first(where: { $0.address6 == address6 }) {
                    throw ControlError("--address \(address6) is taken by \(file):\(other.line); pick another one in \(prefix6)")
                }
                v6 = address6
            } else {
                guard let free = nextFreeAddress6(in: prefix6, taken: taken6) else {
                    throw ControlError("\(file): no free IPv6 address found in \(prefix6); give one with --address")
                }
                v6 = free
            }
        } else if let address6 {
            throw ControlError("--address \(address6): the server carries no IPv6 (--no-ipv6); give an IPv4 address, e.g. --address 10.8.0.7")
        }
        return Allocation(address: v4, address6: v6, line: line(key: key, address: v4, address6: v6, name: name))
    }

    /// The wg-quick file of a new client of a server in WireGuard mode: the client's allow-list addresses
    /// with the tunnel prefixes' lengths (`10.8.0.5/24`, as wg-quick clients are usually given them), the
    /// resolvers, the server's key and psk (the server's --psk applies to every peer), the endpoint,
    /// `routes` as AllowedIPs (all of IPv4 and IPv6 when empty) and a keepalive of 25 s, the interval
    /// wg(8) suggests for peers behind NAT.
    public static func wgQuickFile(
        privateKey: PrivateKey, address: IPv4Address, address6: IPv6Address?, prefix: IPv4Prefix, prefix6: IPv6Prefix?,
        dns: [IPAddress], serverKey: PublicKey, psk: PrivateKey?, endpoint: String, routes: [String]
    ) -> WgQuickFile {
        var addresses = ["\(address)/\(prefix.length)"]
        if let address6, let prefix6 { addresses.append("\(address6)/\(prefix6.length)") }
        return WgQuickFile(
            privateKey: privateKey, addresses: addresses, dns: dns.map(\.description), peerKey: serverKey,
            presharedKey: psk?.secret, endpoint: endpoint, allowedIPs: routes.isEmpty ? ["0.0.0.0/0", "::/0"] : routes,
            persistentKeepalive: 25)
    }

    /// A new pre-shared key in the form --psk files hold: base64 of 32 random bytes (not clamped: it is
    /// no X25519 scalar), as `wg genpsk` prints it.
    public static func newPresharedKey(random: some RandomSource = SystemRandom()) -> String {
        PrivateKey(secret: SecretBytes(randomCount: PrivateKey.length, using: random)).base64
    }

    /// The endpoint a client config names: `given` (HOST:PORT, or HOST with the port of `listen`), else
    /// `listen` itself when it names an address clients can reach.
    ///
    /// - Throws: `ControlError` for a bad `given`, or when `listen` is a wildcard and nothing is given.
    public static func clientEndpoint(_ given: String?, listen: String) throws(ControlError) -> String {
        let example = "e.g. --endpoint vpn.example.com:51820"
        let listening: EndpointText
        do { listening = try EndpointText(listen, option: "--listen", allowsPortZero: true, examplePort: 51820) } catch {
            throw ControlError("the server's --listen \(listen) is not ADDR:PORT; give the client's --endpoint, \(example)")
        }
        let port: UInt16
        switch listening {
        case .address(let e): port = e.port
        case .name(_, let p): port = p
        }
        guard let given else {
            if case .address(let e) = listening, !e.address.isUnspecified, port != 0 { return listen }
            throw ControlError("--endpoint missing: the server listens on \(listen), which names no address a client can reach; give the server's public name or address, \(example)")
        }
        if (try? EndpointText(given, option: "--endpoint", allowsPortZero: false, examplePort: port)) != nil { return given }
        guard port != 0 else {
            throw ControlError("--endpoint \(given): give a port, the server's --listen has none fixed; \(example)")
        }
        let host = given.contains(":") && !given.hasPrefix("[") ? "[\(given)]" : given
        let withPort = "\(host):\(port)"
        _ = try EndpointText(withPort, option: "--endpoint", allowsPortZero: false, examplePort: port)
        return withPort
    }

    /// Writes `text` to `path` atomically: a temporary file beside it, with the old file's mode and owner
    /// (or `mode` for a new file), fsync'ed and renamed over it, so a reader sees the old or the new file,
    /// never a mix.
    public static func replaceAtomically(_ path: String, with text: String, mode newMode: mode_t = 0o600) throws(ControlError) {
        var st = stat()
        let existed = stat(path, &st) == 0
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, existed ? st.st_mode & 0o7777 : newMode)
        guard fd >= 0 else { throw ControlError("\(temporary): cannot create: \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        var failure: String? = nil
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress.map { $0 + written }, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = "cannot write: \(String(cString: strerror(errno)))"
                break
            }
            written += n
        }
        if failure == nil {
            if existed, fchown(fd, st.st_uid, st.st_gid) != 0 {
                failure = "cannot keep the owner \(st.st_uid):\(st.st_gid): \(String(cString: strerror(errno)))"
            } else if fchmod(fd, existed ? st.st_mode & 0o7777 : newMode) != 0 || fsync(fd) != 0 {
                failure = "cannot write: \(String(cString: strerror(errno)))"
            }
        }
        if close(fd) != 0, failure == nil { failure = "cannot write: \(String(cString: strerror(errno)))" }
        if failure == nil, rename(temporary, path) != 0 { failure = "cannot replace \(path): \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temporary)
            throw ControlError("\(temporary): \(failure)")
        }
    }
}

/// A client's config file (`tunvpn client --config NAME.toml`), as `add-client` writes it.
public struct ClientConfigFile: Equatable, Sendable {
    public var name: String
    public var serverKey: PublicKey
    public var endpoint: String
    /// The client's private key file, relative to the config file's directory or absolute; nil with
    /// `inlinePrivateKey`.
    public var keyFile: String?
    /// The private key itself (`--inline-key`).
    public var inlinePrivateKey: String?
    /// The preshared key file, or the key itself with `inlinePSK`.
    public var psk: String?
    public var inlinePSK = false
    public var address: IPv4Address
    public var address6: IPv6Address?

    public init(
        name: String, serverKey: PublicKey, endpoint: String, keyFile: String?, inlinePrivateKey: String? = nil,
        psk: String? = nil, inlinePSK: Bool = false, address: IPv4Address, address6: IPv6Address? = nil
    ) {
        self.name = name
        self.serverKey = serverKey
        self.endpoint = endpoint
        self.keyFile = keyFile
        self.inlinePrivateKey = inlinePrivateKey
        self.psk = psk
        self.inlinePSK = inlinePSK
        self.address = address
        self.address6 = address6
    }

    /// The TOML text: comments, then the settings written by TOMLKit's encoder (so quoting and escaping
    /// are the TOML library's, the same one that reads the file back).
    public var text: String {
        var lines = [
            "# tunvpn client config for \(name), written by tunvpn add-client.",
            "# Tunnel address \(address)\(address6.map { " and \($0)" } ?? ""), fixed by the server's allow-list.",
            "# Run: tunvpn client --config \(name).toml",
        ]
        if inlinePrivateKey != nil || inlinePSK {
            lines.append("# WARNING: this file holds a secret key: keep it mode 0600, never share or commit it.")
        }
        let settings = Settings(
            peerPublicKey: serverKey.base64, endpoint: endpoint, privateKey: inlinePrivateKey, key: keyFile,
            psk: inlinePSK ? nil : psk, presharedKey: inlinePSK ? psk : nil)
        // Encoding a struct of strings and optional strings cannot fail.
        let table = (try? TOMLEncoder().encode(settings) as String) ?? ""
        return lines.joined(separator: "\n") + "\n" + table + (table.hasSuffix("\n") ? "" : "\n")
    }

    /// The settings as `tunvpn client --config` names them (config/README.md).
    private struct Settings: Encodable {
        var peerPublicKey: String
        var endpoint: String
        var privateKey: String?
        var key: String?
        var psk: String?
        var presharedKey: String?

        enum CodingKeys: String, CodingKey {
            case peerPublicKey = "peer-public-key", endpoint, privateKey = "private-key", key, psk
            case presharedKey = "preshared-key"
        }
    }
}

// The pure part of the peer registry (docs/DEPLOYMENT.md, "Peer registry"): the schema's versioned
// migrations, registry rows turned into the allow-list a server runs with, the lowest free address of a
// pool, the local cache's text, and a connection URL made safe to log. No IO: PeerRegistry.swift talks to
// PostgreSQL, RegistryFollower.swift runs the thread that follows it.

import Crypto
import Transport

/// One row of the `tunvpn_peers` table, as text from the database.
public struct RegistryRow: Equatable, Sendable {
    public var name: String
    public var publicKey: String
    /// The IPv4 tunnel address (`host(address4)`), nil when none was allocated.
    public var address4: String?
    public var address6: String?
    public var enabled: Bool

    public init(name: String, publicKey: String, address4: String? = nil, address6: String? = nil, enabled: Bool = true) {
        self.name = name
        self.publicKey = publicKey
        self.address4 = address4
        self.address6 = address6
        self.enabled = enabled
    }
}

/// One schema migration: the SQL that takes the schema from `version - 1` to `version`.
public struct RegistryMigration: Equatable, Sendable {
    public var version: Int
    public var sql: String
}

/// The registry's schema, in versions. Migrations are only ever appended: a released one is never edited.
public enum RegistrySchema {
    /// The channel the peers table's trigger notifies on every change.
    public static let channel = "tunvpn_peers"
    /// The key of the transaction-level advisory lock that serialises migrations and address allocation
    /// across every server and `add-client` (an arbitrary constant: "tunvpn" in ASCII).
    public static let lockKey: Int64 = 0x7475_6e76_706e

    /// Every migration, in order.
    public static let migrations: [RegistryMigration] = [
        RegistryMigration(
            version: 1,
            sql: """
                CREATE TABLE tunvpn_peers (
                    id bigserial PRIMARY KEY,
                    name text NOT NULL UNIQUE CHECK (name <> '' AND name !~ '[[:space:]#]'),
                    public_key text NOT NULL UNIQUE CHECK (length(public_key) = 44),
                    address4 inet UNIQUE CHECK (family(address4) = 4 AND masklen(address4) = 32),
                    address6 inet UNIQUE CHECK (family(address6) = 6 AND masklen(address6) = 128),
                    enabled boolean NOT NULL DEFAULT true,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE FUNCTION tunvpn_peers_notify() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('\(channel)', TG_OP);
                    RETURN NULL;
                END
                $$;
                CREATE TRIGGER tunvpn_peers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tunvpn_peers
                    FOR EACH STATEMENT EXECUTE FUNCTION tunvpn_peers_notify();
                """)
    ]

    /// The newest version this binary knows.
    public static var latest: Int { migrations.last?.version ?? 0 }

    /// The migrations to run on a schema at `current` (0: none yet), in order.
    ///
    /// - Throws: `ControlError` when the database's schema is newer than this binary knows.
    public static func pending(current: Int) throws(ControlError) -> [RegistryMigration] {
        guard current <= latest else {
            throw ControlError(
                "the registry's schema is version \(current), newer than this tunvpn knows (\(latest)): upgrade tunvpn on this host to the version the other servers run")
        }
        return migrations.filter { $0.version > current }
    }
}

/// What the rows of the registry give a server.
public struct RegistryPeers: Equatable, Sendable {
    /// The enabled peers, by name order, as the allow-list the engine runs with.
    public var allowList: AllowList
    /// One line per row left out (a bad key, an address outside the server's prefixes), for the log.
    public var skipped: [String]
    /// The keys decoded, by their text (this read's and earlier ones): give it to the next call, which then
    /// decodes only new keys.
    public var keys: [String: PublicKey]

    /// Turns rows into an allow-list, in the rows' order (the registry reads them by name): enabled rows
    /// only, each with its addresses (an address of a family the server does not carry is left out, an
    /// address outside its prefix leaves the row out). The comment is the name, so `AllowList.text` writes
    /// the allow-list file format with the name as its first word. `decoded` holds keys decoded before.
    public init(rows: [RegistryRow], prefix: IPv4Prefix, prefix6: IPv6Prefix?, decoded: [String: PublicKey] = [:]) {
        var clients: [AllowedClient] = []
        var skipped: [String] = []
        var seenKeys = Set<PublicKey>(minimumCapacity: rows.count)
        var seen4 = Set<UInt32>(minimumCapacity: rows.count)
        var seen6 = Set<IPv6Address>()
        // The previous read's keys, plus the new ones (a copy only when a key is new); pruned when most
        // of them are gone.
        var keys = decoded.count > 2 * rows.count + 64 ? [:] : decoded
        clients.reserveCapacity(rows.count)
        for row in rows where row.enabled {
            let key: PublicKey
            if let known = keys[row.publicKey] {
                key = known
            } else if let parsed = try? PublicKey(base64: row.publicKey) {
                key = parsed
                keys[row.publicKey] = parsed
            } else {
                skipped.append("peer \(row.name): '\(row.publicKey)' is not a public key")
                continue
            }
            var client = AllowedClient(key: key, comment: row.name)
            if let text = row.address4 {
                guard let a = IPv4Address(text), prefix.contains(a), a != prefix.address, a != prefix.network,
                    a != prefix.broadcast
                else {
                    skipped.append("peer \(row.name): address \(text) is not a client address in \(prefix)")
                    continue
                }
                client.address = a
            }
            if let text = row.address6, let prefix6 {
                guard let a = IPv6Address(text), prefix6.contains(a), a != prefix6.address, a != prefix6.network else {
                    skipped.append("peer \(row.name): address \(text) is not a client address in \(prefix6)")
                    continue
                }
                client.address6 = a
            }
            // The table's unique constraints make these impossible; a row that breaks them is still never
            // given to the engine.
            guard !seenKeys.contains(key), !(client.address.map { seen4.contains($0.value) } ?? false),
                !(client.address6.map { seen6.contains($0) } ?? false)
            else {
                skipped.append("peer \(row.name): its key or an address is another peer's")
                continue
            }
            seenKeys.insert(key)
            if let a = client.address { seen4.insert(a.value) }
            if let a = client.address6 { seen6.insert(a) }
            clients.append(client)
        }
        allowList = AllowList(clients: clients)
        self.skipped = skipped
        self.keys = keys
    }
}

/// The lowest free client address of a pool, as `TunnelState`'s own pools count them.
public enum RegistryAllocation {
    /// The lowest address of `prefix` that is not the network, the broadcast, the server's own address or
    /// in `taken`; nil when the pool is full.
    public static func lowestFree(_ prefix: IPv4Prefix, taken: Set<IPv4Address>) -> IPv4Address? {
        var candidate = prefix.network.value &+ 1
        while candidate < prefix.broadcast.value {
            let a = IPv4Address(candidate)
            if a != prefix.address && !taken.contains(a) { return a }
            candidate += 1
        }
        return nil
    }

    /// The lowest address of `prefix` from network + 2 up that is not the server's own or in `taken`.
    public static func lowestFree(_ prefix: IPv6Prefix, taken: Set<IPv6Address>) -> IPv6Address? {
        var candidate = prefix.network.advanced(by: 2)
        let last = prefix.last
        while prefix.contains(candidate) {
            if candidate != prefix.address && !taken.contains(candidate) { return candidate }
            if candidate == last { break }
            candidate = candidate.advanced(by: 1)
        }
        return nil
    }
}

/// The local cache of the registry: the allow-list file's text between a first line naming the registry
/// (a cache of another registry is never used) and a last line counting the peers (a damaged one neither).
public enum RegistryCacheText {
    static let marker = "# tunvpn registry cache of "

    static func end(_ count: Int) -> String { "# end: \(count) peer(s)\n" }

    /// The cache file's text for `list`, read from the registry `source` (a URL safe to log).
    public static func render(_ list: AllowList, source: String) -> String {
        marker + source + "\n" + list.text + end(list.clients.count)
    }

    /// The allow-list of a cache's `text`, or nil when it is of another registry or damaged.
    public static func parse(_ text: String, source: String) -> AllowList? {
        guard let newline = text.firstIndex(of: "\n"), text[..<newline] == marker + source,
            let list = try? AllowList(parsing: String(text[text.index(after: newline)...])),
            text.hasSuffix(end(list.clients.count))
        else { return nil }
        return list
    }
}

// The peer registry in PostgreSQL: the schema's migrations, reading the peers, and provisioning (add,
// remove, enable) with addresses allocated in the database. Two servers, or a server and `add-client`,
// may do all of this at once: migrations and allocations take one transaction-level advisory lock, and
// the table's unique constraints are the last word on keys, names and addresses.

import Crypto
import Glibc
import Platform
import Transport

/// A connection to the registry, with the operations tunvpn makes on it.
public final class PeerRegistry: @unchecked Sendable {
    public let url: RegistryURL
    let connection: PostgresConnection

    /// Connects to `url` (a password from `passwordFile`, else libpq's own sources: PGPASSWORD, ~/.pgpass)
    /// and creates or migrates the schema.
    ///
    /// - Throws: `ControlError`, one line: the database cannot be reached or refused the credentials, the
    ///   password file cannot be read, or the schema is newer than this binary knows (nothing is changed).
    public convenience init(_ url: RegistryURL, passwordFile: String?) throws(ControlError) {
        let password = try passwordFile.map { (file) throws(ControlError) in try Self.readPassword(file) }
        try self.init(url, password: password)
    }

    /// The same with the password itself (nil: libpq's own sources).
    public init(_ url: RegistryURL, password: String?) throws(ControlError) {
        self.url = url
        do throws(PostgresError) { connection = try PostgresConnection(url, password: password) } catch {
            throw ControlError("--registry \(url.display): \(error.message)")
        }
        try migrate()
    }

    /// Takes over an open connection and creates or migrates the schema.
    public init(_ url: RegistryURL, connection: PostgresConnection) throws(ControlError) {
        self.url = url
        self.connection = connection
        try migrate()
    }

    /// The password a reconnect should use (see `PostgresConnection.usedPassword`).
    public var password: String? { connection.usedPassword }

    /// Reads a password file: its first line, refused when group or others may read it.
    public static func readPassword(_ file: String) throws(ControlError) -> String {
        let read: (text: [UInt8], mode: mode_t)
        do { read = try KeyFiles.readSmallFile(file, what: "password file", limit: 4096) } catch {
            throw ControlError("--registry-password-file \(error)")
        }
        guard read.mode & 0o077 == 0 else {
            throw ControlError(
                "--registry-password-file \(file): readable by group or others; `chmod 600 \(file)` (it holds the registry's password)")
        }
        let line = String(decoding: read.text.prefix { $0 != 0x0a && $0 != 0x0d }, as: UTF8.self)
        guard !line.isEmpty else {
            throw ControlError("--registry-password-file \(file): empty; put the password on its first line")
        }
        return line
    }

    /// Creates the schema or brings it to `RegistrySchema.latest`, in one transaction.
    func migrate() throws(ControlError) {
        do throws(PostgresError) {
            try connection.transaction { () throws(PostgresError) in
                try connection.query("SELECT pg_advisory_xact_lock($1)", [String(RegistrySchema.lockKey)])
                try connection.query(
                    "CREATE TABLE IF NOT EXISTS tunvpn_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                let current = Int(scalar(try connection.query("SELECT coalesce(max(version), 0) FROM tunvpn_schema")) ?? "0") ?? 0
                let pending: [RegistryMigration]
                do throws(ControlError) { pending = try RegistrySchema.pending(current: current) } catch {
                    throw PostgresError(message: error.message)
                }
                for m in pending {
                    try connection.query(m.sql)
                    try connection.query("INSERT INTO tunvpn_schema (version) VALUES ($1)", [String(m.version)])
                }
            }
        } catch {
            throw ControlError("--registry \(url.display): \(error.message)")
        }
    }

    /// The schema version the database is at.
    public func schemaVersion() throws(PostgresError) -> Int {
        Int(scalar(try connection.query("SELECT coalesce(max(version), 0) FROM tunvpn_schema")) ?? "0") ?? 0
    }

    /// Every peer of the registry.
    public func rows() throws(PostgresError) -> [RegistryRow] {
        try connection.query("SELECT name, public_key, host(address4), host(address6), enabled FROM tunvpn_peers ORDER BY name")
            .map { r in
                RegistryRow(name: r[0] ?? "", publicKey: r[1] ?? "", address4: r[2], address6: r[3], enabled: r[4] == "t")
            }
    }

    /// Starts following changes: notifications on `RegistrySchema.channel` arrive from here on.
    public func listen() throws(PostgresError) { try connection.query("LISTEN \(RegistrySchema.channel)") }

    /// Waits up to `timeout` ms for change notifications; returns how many arrived.
    public func waitForChanges(timeout: Int32) throws(PostgresError) -> Int {
        try connection.waitForNotifications(timeout: timeout)
    }

    /// A cheap round trip, to notice a connection that broke while idle.
    public func ping() throws(PostgresError) { try connection.query("SELECT 1") }

    public func close() { connection.close() }

    /// Adds a peer, taking the lowest free address of each pool the row does not fix, in one transaction
    /// under the registry's lock (so no two servers or `add-client`s ever take one address).
    ///
    /// - Parameters:
    ///   - address, address6: fixed addresses, or nil to allocate from `pool` / `pool6` (no IPv6 address
    ///     when both are nil).
    ///   - pool, pool6: the servers' prefixes (the server's own address in them is never given out).
    /// - Returns: the row as stored.
    /// - Throws: `ControlError` naming what clashed (name, key, address), or a full pool.
    @discardableResult
    public func add(
        name: String, publicKey: PublicKey, address: IPv4Address? = nil, address6: IPv6Address? = nil,
        pool: IPv4Prefix, pool6: IPv6Prefix? = nil, enabled: Bool = true
    ) throws(ControlError) -> RegistryRow {
        guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "#" }) else {
            throw ControlError("peer name '\(name)': use one word without spaces or '#', e.g. alice-laptop")
        }
        let row: RegistryRow
        do throws(PostgresError) {
            row = try connection.transaction { () throws(PostgresError) -> RegistryRow in
                try connection.query("SELECT pg_advisory_xact_lock($1)", [String(RegistrySchema.lockKey)])
                var v4 = address
                if v4 == nil {
                    let taken = Set(try connection.query("SELECT host(address4) FROM tunvpn_peers WHERE address4 IS NOT NULL")
                        .compactMap { $0[0].flatMap { IPv4Address($0) } })
                    guard let free = RegistryAllocation.lowestFree(pool, taken: taken) else {
                        throw PostgresError(message: "no free IPv4 address left in \(pool)")
                    }
                    v4 = free
                }
                var v6 = address6
                if v6 == nil, let pool6 {
                    let taken = Set(try connection.query("SELECT host(address6) FROM tunvpn_peers WHERE address6 IS NOT NULL")
                        .compactMap { $0[0].flatMap { IPv6Address($0) } })
                    guard let free = RegistryAllocation.lowestFree(pool6, taken: taken) else {
                        throw PostgresError(message: "no free IPv6 address left in \(pool6)")
                    }
                    v6 = free
                }
                try connection.query(
                    "INSERT INTO tunvpn_peers (name, public_key, address4, address6, enabled) VALUES ($1, $2, $3::inet, $4::inet, $5)",
                    [name, publicKey.base64, v4.map { "\($0)" }, v6.map { "\($0)" }, enabled ? "t" : "f"])
                return RegistryRow(
                    name: name, publicKey: publicKey.base64, address4: v4.map { "\($0)" }, address6: v6.map { "\($0)" },
                    enabled: enabled)
            }
        } catch {
            if error.sqlState == "23505" {
                throw ControlError(
                    "peer \(name): the registry already has a peer with this name, key or address (\(error.message)); `tunvpn remove-client \(name) --registry URL` first, or choose another")
            }
            throw ControlError("peer \(name): \(error.message)")
        }
        return row
    }

    /// Removes the peer `name`; returns false when there was none. Its sessions end on every server.
    @discardableResult
    public func remove(name: String) throws(ControlError) -> Bool {
        do throws(PostgresError) {
            return !(try connection.query("DELETE FROM tunvpn_peers WHERE name = $1 RETURNING id", [name]).isEmpty)
        } catch { throw ControlError("peer \(name): \(error.message)") }
    }

    /// Enables or disables the peer `name` (a disabled peer stays registered, with its addresses, but no
    /// server admits it); returns false when there is none.
    @discardableResult
    public func setEnabled(name: String, _ enabled: Bool) throws(ControlError) -> Bool {
        do throws(PostgresError) {
            return !(try connection.query(
                "UPDATE tunvpn_peers SET enabled = $2, updated_at = now() WHERE name = $1 RETURNING id", [name, enabled ? "t" : "f"]
            ).isEmpty)
        } catch { throw ControlError("peer \(name): \(error.message)") }
    }
}

/// The first column of the first row, if any.
func scalar(_ rows: [[String?]]) -> String? { rows.first.flatMap { $0.first ?? nil } }

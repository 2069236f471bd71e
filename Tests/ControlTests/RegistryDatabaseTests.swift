// The peer registry against a real PostgreSQL (TestSupport's PostgresServer: initdb + pg_ctl as the
// postgres user, a Unix socket in a temporary directory): the schema made once and checked, provisioning
// with addresses allocated in the database, concurrent allocation from two "servers", and the errors a
// server starts with.

import Control
import Crypto
import Foundation
import Synchronization
import TestSupport
import Testing
import Transport

@Suite(.needsRoot("runs a PostgreSQL server as the postgres user"))
struct RegistryDatabaseTests {
    static let pool = IPv4Prefix("10.8.0.1/16")!
    static let pool6 = IPv6Prefix("fd00:8::1/64")!

    static let keys = Mutex(0)

    /// A new fixed public key, different from every other this suite makes (the registry checks only its form).
    static func newKey() throws -> PublicKey {
        let n = keys.withLock { n in
            n += 1
            return n
        }
        return try #require(PublicKey(bytes: [UInt8(n & 0xff), UInt8(n >> 8)] + [UInt8](repeating: 7, count: 30)))
    }

    func connect(_ pg: PostgresServer) throws -> PeerRegistry {
        try PeerRegistry(try RegistryURL(pg.url), passwordFile: pg.passwordFile)
    }

    @Test func theSchemaIsMadeOnceAndProvisioningAllocatesTheLowestFreeAddresses() throws {
        try PostgresServer.use { pg in
            let registry = try connect(pg)
            _ = try connect(pg)  // a second server: nothing more to migrate
            #expect(try registry.schemaVersion() == RegistrySchema.latest)
            #expect(try pg.superuser("SELECT count(*) FROM tunvpn_schema") == "\(RegistrySchema.latest)")

            let laptop = try registry.add(name: "laptop", publicKey: try Self.newKey(), pool: Self.pool, pool6: Self.pool6)
            #expect(laptop.address4 == "10.8.0.2" && laptop.address6 == "fd00:8::2")
            let fixed = try registry.add(
                name: "printer", publicKey: try Self.newKey(), address: IPv4Address("10.8.0.3"), pool: Self.pool, pool6: Self.pool6)
            #expect(fixed.address4 == "10.8.0.3" && fixed.address6 == "fd00:8::3")
            let phone = try registry.add(name: "phone", publicKey: try Self.newKey(), pool: Self.pool)
            #expect(phone.address4 == "10.8.0.4" && phone.address6 == nil)
            #expect(try registry.rows().map(\.name) == ["laptop", "phone", "printer"])

            // Clashes are one-line errors and change nothing.
            do {
                try registry.add(name: "laptop", publicKey: try Self.newKey(), pool: Self.pool)
                Issue.record("a second peer named laptop was added")
            } catch {
                #expect(error.line.hasPrefix("peer laptop: the registry already has a peer with this name, key or address"))
                #expect(!error.line.contains("\n"))
            }
            do {
                try registry.add(name: "thief", publicKey: try Self.newKey(), address: IPv4Address("10.8.0.2"), pool: Self.pool)
                Issue.record("10.8.0.2 was given twice")
            } catch { #expect(error.line.contains("already has a peer")) }
            do {
                try registry.add(name: "two words", publicKey: try Self.newKey(), pool: Self.pool)
                Issue.record("a name with a space was accepted")
            } catch { #expect(error.line.hasPrefix("peer name 'two words'")) }
            #expect(try registry.rows().count == 3)

            #expect(try registry.setEnabled(name: "phone", false))
            #expect(try registry.rows().first { $0.name == "phone" }?.enabled == false)
            #expect(try registry.remove(name: "laptop"))
            #expect(try !registry.remove(name: "laptop"))
            // The freed address is the lowest free again.
            #expect(try registry.add(name: "tablet", publicKey: try Self.newKey(), pool: Self.pool).address4 == "10.8.0.2")
        }
    }

    @Test func concurrentAdditionsFromTwoServersNeverShareAnAddress() throws {
        try PostgresServer.use { pg in
            _ = try connect(pg)
            let perServer = 40
            let failures = Mutex<[String]>([])
            let url = try RegistryURL(pg.url)
            let threads = (0..<2).map { server in
                TestThread {
                    do {
                        let registry = try PeerRegistry(url, passwordFile: pg.passwordFile)
                        for i in 0..<perServer {
                            try registry.add(name: "s\(server)-\(i)", publicKey: try Self.newKey(), pool: Self.pool, pool6: Self.pool6)
                        }
                    } catch { failures.withLock { $0.append("\(error)") } }
                }
            }
            threads.forEach { $0.join() }
            #expect(failures.withLock { $0 }.isEmpty)
            let rows = try connect(pg).rows()
            #expect(rows.count == 2 * perServer)
            #expect(Set(rows.compactMap(\.address4)).count == rows.count, "every IPv4 address once")
            #expect(Set(rows.compactMap(\.address6)).count == rows.count, "every IPv6 address once")
            // The lowest ones, without gaps: 10.8.0.2 … 10.8.0.81.
            let expected = Set((2...(1 + 2 * perServer)).map { "10.8.0.\($0)" })
            #expect(Set(rows.compactMap(\.address4)) == expected)
        }
    }

    @Test func addClientAndRemoveClientWithARegistryChangeItForEveryServer() throws {
        try PostgresServer.use { pg in
            let dir = pg.directory.path + "/provision"
            try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", dir, "--name", "server"])
            let registry = ["--registry", pg.url, "--registry-password-file", pg.passwordFile]
            let added = try runChild(
                [
                    TestBinaries.tunvpn, "add-client", "laptop", "--key", dir + "/server.key", "--address", "10.8.0.1/16", "--no-ipv6",
                    "--endpoint", "vpn.example.net:51820", "--out", dir,
                ] + registry)
            #expect(added.status == 0, "\(added.stderr)")
            #expect(added.stdout.contains("added laptop to the registry host=\(pg.socketDirectory) dbname=tunvpn user=tunvpn: "))
            #expect(FileManager.default.fileExists(atPath: dir + "/laptop.toml"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/clients"), "no allow-list written")
            let rows = try connect(pg).rows()
            #expect(rows.map(\.name) == ["laptop"] && rows.first?.address4 == "10.8.0.2")
            let pub = try String(contentsOfFile: dir + "/laptop.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(rows.first?.publicKey == pub)

            let removed = try runChild([TestBinaries.tunvpn, "remove-client", "laptop"] + registry)
            #expect(removed.status == 0, "\(removed.stderr)")
            #expect(removed.stdout.contains("removed laptop from the registry"))
            #expect(try connect(pg).rows().isEmpty)
            let again = try runChild([TestBinaries.tunvpn, "remove-client", "laptop"] + registry)
            #expect(again.status == 1 && again.stderr.contains("no client named laptop in the registry"), "\(again.stderr)")
        }
    }

    @Test func aNewerSchemaWrongCredentialsAndNoDatabaseAreOneLineErrors() throws {
        try PostgresServer.use { pg in
            let url = try RegistryURL(pg.url)
            let wrong = pg.directory.path + "/wrong.password"
            try "not-the-password\n".write(toFile: wrong, atomically: false, encoding: .utf8)
            chmod(wrong, 0o600)
            do {
                _ = try PeerRegistry(url, passwordFile: wrong)
                Issue.record("a wrong password was accepted")
            } catch {
                #expect(error.line.contains("password authentication failed"), "\(error.line)")
                #expect(!error.line.contains("not-the-password") && !error.line.contains("\n"))
            }
            chmod(wrong, 0o644)
            do {
                _ = try PeerRegistry(url, passwordFile: wrong)
                Issue.record("a password file readable by others was used")
            } catch { #expect(error.line.contains("chmod 600")) }

            let gone = try RegistryURL(pg.url(socketDirectory: pg.directory.path + "/nowhere"))
            do {
                _ = try PeerRegistry(gone, passwordFile: pg.passwordFile)
                Issue.record("connected to nowhere")
            } catch { #expect(error.line.hasPrefix("--registry host=\(pg.directory.path)/nowhere dbname=tunvpn user=tunvpn: cannot connect")) }

            _ = try connect(pg)
            try pg.superuser("INSERT INTO tunvpn_schema (version) VALUES (\(RegistrySchema.latest + 1))")
            do {
                _ = try connect(pg)
                Issue.record("a newer schema was accepted")
            } catch {
                #expect(error.line.contains("newer than this tunvpn knows"), "\(error.line)")
                #expect(!error.line.contains("\n"))
            }
        }
    }
}

extension Error {
    /// The error's one line (a `ControlError`'s message).
    fileprivate var line: String { String(describing: self) }
}

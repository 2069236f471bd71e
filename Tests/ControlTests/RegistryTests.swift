// The pure part of the peer registry (Sources/Control/Registry/RegistryModel.swift): migrations, rows into
// the allow-list, the lowest free address, the cache's text, and the URL check. Fixed keys, no IO.

import Control
import Crypto
import Testing
import Transport

struct RegistryTests {
    static let keyA = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    static let keyB = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A="
    static let keyC = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2A="
    static let prefix = IPv4Prefix("10.8.0.1/16")!
    static let prefix6 = IPv6Prefix("fd00:8::1/64")!

    @Test func migrationsRunFromTheCurrentVersionAndANewerSchemaIsAnError() throws {
        #expect(try RegistrySchema.pending(current: 0).map(\.version) == Array(1...RegistrySchema.latest))
        #expect(try RegistrySchema.pending(current: RegistrySchema.latest).isEmpty)
        let versions = RegistrySchema.migrations.map(\.version)
        #expect(versions == Array(1...versions.count), "versions are 1, 2, 3… without gaps")
        #expect(RegistrySchema.migrations[0].sql.contains("pg_notify('tunvpn_peers'"))
        #expect(RegistrySchema.migrations[0].sql.contains("address4 inet UNIQUE"))
        #expect(RegistrySchema.migrations[0].sql.contains("address6 inet UNIQUE"))
        do {
            _ = try RegistrySchema.pending(current: RegistrySchema.latest + 1)
            Issue.record("a newer schema was accepted")
        } catch {
            #expect(error.message.contains("version \(RegistrySchema.latest + 1), newer than this tunvpn knows (\(RegistrySchema.latest))"))
            #expect(!error.message.contains("\n"))
        }
    }

    @Test func enabledRowsBecomeTheAllowListWithTheirNamesAndAddresses() throws {
        let rows = [
            RegistryRow(name: "laptop", publicKey: Self.keyA, address4: "10.8.0.2", address6: "fd00:8::2"),
            RegistryRow(name: "old", publicKey: Self.keyC, address4: "10.8.0.4", enabled: false),
            RegistryRow(name: "phone", publicKey: Self.keyB, address4: "10.8.0.3", address6: "fd00:8::3"),
        ]
        let peers = RegistryPeers(rows: rows, prefix: Self.prefix, prefix6: Self.prefix6)
        #expect(peers.skipped.isEmpty)
        #expect(
            peers.allowList.text == """
                \(Self.keyA) 10.8.0.2 fd00:8::2  # laptop
                \(Self.keyB) 10.8.0.3 fd00:8::3  # phone

                """)
        #expect(peers.keys.keys.sorted() == [Self.keyA, Self.keyB].sorted(), "the enabled rows' keys, decoded")
        // Keys decoded before are taken as they are: the next read decodes only new ones.
        let decoyKey = try PublicKey(base64: Self.keyC)
        let again = RegistryPeers(rows: rows, prefix: Self.prefix, prefix6: Self.prefix6, decoded: [Self.keyA: decoyKey])
        #expect(again.allowList.clients.map(\.key) == [decoyKey, try PublicKey(base64: Self.keyB)])
        // Without IPv6 in the tunnel, the IPv6 addresses are left out, the peers kept.
        let v4only = RegistryPeers(rows: rows, prefix: Self.prefix, prefix6: nil)
        #expect(v4only.allowList.clients.map(\.address6) == [nil, nil])
        #expect(v4only.allowList.clients.map(\.comment) == ["laptop", "phone"])
    }

    @Test func rowsThatCannotBeServedAreLeftOutWithAReason() throws {
        let rows = [
            RegistryRow(name: "badkey", publicKey: "not-a-key"),
            RegistryRow(name: "outside", publicKey: Self.keyA, address4: "10.9.0.2"),
            RegistryRow(name: "server", publicKey: Self.keyB, address4: "10.8.0.1"),
            RegistryRow(name: "twin", publicKey: Self.keyC, address4: "10.8.0.5"),
            RegistryRow(name: "twin2", publicKey: Self.keyC, address4: "10.8.0.6"),
        ]
        let peers = RegistryPeers(rows: rows, prefix: Self.prefix, prefix6: Self.prefix6)
        #expect(peers.allowList.clients.map(\.comment) == ["twin"])
        #expect(peers.skipped.count == 4)
        #expect(peers.skipped.contains { $0.hasPrefix("peer badkey: 'not-a-key' is not a public key") })
        #expect(peers.skipped.contains("peer outside: address 10.9.0.2 is not a client address in 10.8.0.1/16"))
        #expect(peers.skipped.contains("peer server: address 10.8.0.1 is not a client address in 10.8.0.1/16"))
        #expect(peers.skipped.contains("peer twin2: its key or an address is another peer's"))
    }

    @Test func theLowestFreeAddressSkipsTheServerTheNetworkAndTakenOnes() {
        let p = IPv4Prefix("10.8.0.1/29")!  // 10.8.0.0 – 10.8.0.7: clients .2 … .6
        #expect(RegistryAllocation.lowestFree(p, taken: []) == IPv4Address("10.8.0.2"))
        #expect(RegistryAllocation.lowestFree(p, taken: [IPv4Address("10.8.0.2")!, IPv4Address("10.8.0.4")!]) == IPv4Address("10.8.0.3"))
        let almost = Set(["10.8.0.2", "10.8.0.3", "10.8.0.4", "10.8.0.5"].map { IPv4Address($0)! })
        #expect(RegistryAllocation.lowestFree(p, taken: almost) == IPv4Address("10.8.0.6"))
        #expect(RegistryAllocation.lowestFree(p, taken: almost.union([IPv4Address("10.8.0.6")!])) == nil, "no broadcast")
        // A server whose own address is not the first.
        #expect(RegistryAllocation.lowestFree(IPv4Prefix("10.8.0.2/29")!, taken: []) == IPv4Address("10.8.0.1"))
        let p6 = IPv6Prefix("fd00:8::1/126")!  // ::0 – ::3: clients ::2 and ::3
        #expect(RegistryAllocation.lowestFree(p6, taken: []) == IPv6Address("fd00:8::2"))
        #expect(RegistryAllocation.lowestFree(p6, taken: [IPv6Address("fd00:8::2")!]) == IPv6Address("fd00:8::3"))
        #expect(RegistryAllocation.lowestFree(p6, taken: [IPv6Address("fd00:8::2")!, IPv6Address("fd00:8::3")!]) == nil)
    }

    @Test func theCacheIsTheAllowListOfOneRegistry() throws {
        let list = RegistryPeers(
            rows: [RegistryRow(name: "laptop", publicKey: Self.keyA, address4: "10.8.0.2")], prefix: Self.prefix, prefix6: nil
        ).allowList
        let source = "host=/run/db dbname=tunvpn user=tunvpn"
        let text = RegistryCacheText.render(list, source: source)
        #expect(text == "# tunvpn registry cache of \(source)\n\(Self.keyA) 10.8.0.2  # laptop\n# end: 1 peer(s)\n")
        #expect(RegistryCacheText.parse(text, source: source) == list)
        #expect(RegistryCacheText.parse(text, source: "host=/run/other dbname=tunvpn user=tunvpn") == nil, "another registry's")
        #expect(RegistryCacheText.parse(String(text.dropLast(20)), source: source) == nil, "a damaged cache")
        #expect(RegistryCacheText.parse(String(text.dropLast(3)), source: source) == nil, "a damaged end")
        #expect(RegistryCacheText.parse("", source: source) == nil)
    }

    @Test func aURLIsCheckedAndLoggedWithoutItsPassword() throws {
        let url = try RegistryURL("postgresql://tunvpn@db.example.net:5433/peers?sslmode=require")
        #expect(url.display == "host=db.example.net port=5433 dbname=peers user=tunvpn")
        #expect(try RegistryURL("postgresql:///tunvpn?host=/run/pg&user=tunvpn").display == "host=/run/pg dbname=tunvpn user=tunvpn")
        for withPassword in [
            "postgresql://tunvpn:s3cret@db.example.net/tunvpn", "host=db.example.net user=tunvpn password=s3cret",
            "postgresql://db.example.net/tunvpn?password=s3cret",
        ] {
            do {
                _ = try RegistryURL(withPassword)
                Issue.record("accepted \(withPassword)")
            } catch {
                #expect(error.message.hasPrefix("--registry: the URL holds a password"))
                #expect(!error.message.contains("s3cret"))
            }
        }
        do {
            _ = try RegistryURL("postgresql://db.example.net/x?nosuchoption=1")
            Issue.record("accepted an unknown option")
        } catch { #expect(error.message.hasPrefix("--registry: not a PostgreSQL connection URL")) }
    }
}

// End-to-end tests of the peer registry (docs/DEPLOYMENT.md, "Peer registry"): two servers with the same
// key and one PostgreSQL (TestSupport's PostgresServer, on a Unix socket in a temporary directory), each
// client namespace reaching one of them:
//
//     A: c0 10.100.k.2/24 ─── s0 10.100.k.1/24  S1  tun0 10.8.0.1/16
//     B: c0 10.101.k.2/24 ─── s0 10.101.k.1/24  S2  tun0 10.8.0.1/16
//
// A peer is added and removed through `PeerRegistry` (what `tunvpn add-client --registry` calls) while
// both servers run, then many at once from two connections; the database is stopped, a server restarted
// from its cache, a change made while the servers cannot see the database; and a server refuses to start
// on a database it cannot use.

import Control
import Crypto
import Foundation
import Synchronization
import TestSupport
import Testing
import Transport

@Suite(.serialized, .needsRoot("creates network namespaces and TUN devices, and runs PostgreSQL as the postgres user"))
struct RegistryEndToEndTests {
    static let pool = IPv4Prefix("10.8.0.1/16")!
    static let pool6 = IPv6Prefix("fd00:8::1/64")!

    static func twoServers() throws -> Topology {
        try Topology(hosts: ["A", "S1", "B", "S2"]) { k in
            [
                VethLink(.init("A", "c0", "10.100.\(k).2/24"), .init("S1", "s0", "10.100.\(k).1/24")),
                VethLink(.init("B", "c0", "10.101.\(k).2/24"), .init("S2", "s0", "10.101.\(k).1/24")),
            ]
        }
    }

    func serverArguments(_ lab: TunnelLab, _ pg: PostgresServer, host: String, url: String? = nil) -> [String] {
        [
            "server", "--key", lab.path("keys/server.key"), "--listen", "0.0.0.0:\(TunnelLab.port)", "--address", "10.8.0.1/16",
            "--dev", "tun0", "--no-nat", "--log-level", "debug", "--registry", url ?? pg.url,
            "--registry-password-file", pg.passwordFile, "--registry-cache", lab.path("cache-\(host)"),
        ]
    }

    /// Starts a server in `host` and waits for its UDP socket.
    @discardableResult
    func startServer(_ lab: TunnelLab, _ pg: PostgresServer, in host: String) throws -> BackgroundProcess {
        let server = try lab.start("server-\(host)", in: host, serverArguments(lab, pg, host: host))
        let bound = try lab[host].waitForListener(port: TunnelLab.port, udp: true)
        try #require(bound, "the server in \(host) did not bind within 10 s: \(server.log)")
        return server
    }

    /// Starts a client with key `key` in `host`, towards its server's s0.
    func startClient(_ lab: TunnelLab, key: String, in host: String, extra: [String] = []) throws -> BackgroundProcess {
        let server = host == "A" ? "S1" : "S2"
        return try lab.startClient(
            in: host, key: key, endpoint: lab.topology.address(server, "s0"), extra: extra, logName: "client-\(host)")
    }

    /// The seconds until `process`'s log holds `text` after byte `offset` (polled every 10 ms), or nil.
    func secondsUntil(_ process: BackgroundProcess, logs text: String, after offset: Int, from start: Date, timeout: Double)
        -> Double?
    {
        let needle = Data(text.utf8)
        let found = waitUntil(timeout: timeout, interval: 0.01) {
            let bytes = process.logBytes
            return bytes.count > offset && bytes[(bytes.startIndex + offset)...].range(of: needle) != nil
        }
        return found ? Date().timeIntervalSince(start) : nil
    }

    /// The peers `tunvpn show --json` lists in `host`: key → tunnel address.
    func peers(_ lab: TunnelLab, in host: String) throws -> [String: String] {
        let json = try lab[host].run([TestBinaries.tunvpn, "show", "--json", "--dev", "tun0"]).stdout
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        var result: [String: String] = [:]
        for p in try #require(object["peers"] as? [[String: Any]]) {
            result[p["public_key"] as? String ?? ""] = p["tunnel_address"] as? String ?? ""
        }
        return result
    }

    @Test func aPeerAddedOrRemovedReachesBothServersWithinASecond() throws {
        try PostgresServer.use { pg in
            try TunnelLab(Self.twoServers()).use { lab in
                try lab.keygen("server")
                let key = try lab.keygen("laptop")
                let registry = try PeerRegistry(try RegistryURL(pg.url), passwordFile: pg.passwordFile)
                let s1 = try startServer(lab, pg, in: "S1")
                let s2 = try startServer(lab, pg, in: "S2")
                #expect(s1.waitForLog(containing: "registry host=", timeout: 5) && s2.waitForLog(containing: "registry host=", timeout: 5))
                // The clients try every half second (protocol timers scaled by 0.1) before their key is known.
                let a = try startClient(lab, key: "laptop", in: "A", extra: ["--timer-scale", "0.1"])
                let b = try startClient(lab, key: "laptop", in: "B", extra: ["--timer-scale", "0.1"])
                #expect(a.waitForLog(containing: "handshake", timeout: 10), "client A tries: \(a.log)")
                usleep(500_000)

                // Added while both run: both servers have it within a second, the clients connect to either.
                let (o1, o2) = (s1.logBytes.count, s2.logBytes.count)
                let added = Date()
                let row = try registry.add(name: "laptop", publicKey: try PublicKey(base64: key), pool: Self.pool, pool6: Self.pool6)
                #expect(row.address4 == "10.8.0.2" && row.address6 == "fd00:8::2")
                let reached1 = secondsUntil(s1, logs: "1 added", after: o1, from: added, timeout: 5)
                let reached2 = secondsUntil(s2, logs: "1 added", after: o2, from: added, timeout: 5)
                print("registry: the addition reached S1 in \(reached1.map { String(format: "%.3f", $0) } ?? "never") s, S2 in \(reached2.map { String(format: "%.3f", $0) } ?? "never") s")
                #expect(try #require(reached1, "S1 never saw the addition: \(s1.log)") < 1)
                #expect(try #require(reached2, "S2 never saw the addition: \(s2.log)") < 1)
                #expect(try lab.waitForTunnelUp(a, timeout: 5) == "10.8.0.2")
                #expect(try lab.waitForTunnelUp(b, timeout: 5) == "10.8.0.2")
                print("registry: both clients up \(String(format: "%.3f", Date().timeIntervalSince(added))) s after the addition")
                #expect(try peers(lab, in: "S1")[key] == "10.8.0.2" && peers(lab, in: "S2")[key] == "10.8.0.2", "one address on both")
                #expect(try lab["A"].ping("10.8.0.1", count: 2).status == 0)
                #expect(try lab["B"].ping("10.8.0.1", count: 2).status == 0)

                // Removed: its session ends on both within a second.
                let (r1, r2) = (s1.logBytes.count, s2.logBytes.count)
                let removed = Date()
                #expect(try registry.remove(name: "laptop"))
                let gone1 = secondsUntil(s1, logs: "1 removed", after: r1, from: removed, timeout: 5)
                let gone2 = secondsUntil(s2, logs: "1 removed", after: r2, from: removed, timeout: 5)
                print("registry: the removal reached S1 in \(gone1.map { String(format: "%.3f", $0) } ?? "never") s, S2 in \(gone2.map { String(format: "%.3f", $0) } ?? "never") s")
                #expect(try #require(gone1) < 1)
                #expect(try #require(gone2) < 1)
                #expect(try peers(lab, in: "S1")[key] == nil && peers(lab, in: "S2")[key] == nil)
                #expect(try lab["A"].ping("10.8.0.1", count: 2).status != 0, "no traffic after the removal")
                #expect(try lab["B"].ping("10.8.0.1", count: 2).status != 0, "no traffic after the removal")

                // Many additions at once from two hosts' connections: never one address twice, and both
                // servers end with the same peers at the same addresses.
                let perHost = 20
                let failures = Mutex<[String]>([])
                let url = try RegistryURL(pg.url)
                let threads = (0..<2).map { host in
                    TestThread {
                        do {
                            let connection = try PeerRegistry(url, passwordFile: pg.passwordFile)
                            for i in 0..<perHost {
                                var bytes = [UInt8](repeating: UInt8(host + 1), count: 32)
                                bytes[0] = UInt8(i)
                                let key = try #require(PublicKey(bytes: bytes))
                                try connection.add(name: "h\(host)-\(i)", publicKey: key, pool: Self.pool, pool6: Self.pool6)
                            }
                        } catch { failures.withLock { $0.append("\(error)") } }
                    }
                }
                threads.forEach { $0.join() }
                #expect(failures.withLock { $0 }.isEmpty)
                let all = 2 * perHost
                let settled = waitUntil(timeout: 10) {
                    ((try? peers(lab, in: "S1"))?.count ?? 0) == all && ((try? peers(lab, in: "S2"))?.count ?? 0) == all
                }
                #expect(settled, "both servers list all \(all) peers")
                let onS1 = try peers(lab, in: "S1")
                #expect(Set(onS1.values).count == all, "no address twice: \(onS1)")
                #expect(try peers(lab, in: "S2") == onS1, "the same addresses on both servers")
                #expect(s1.isRunning && s2.isRunning)
            }
        }
    }

    @Test func theServersOutliveTheDatabaseAndCatchUpWithWhatChangedMeanwhile() throws {
        try PostgresServer.use { pg in
            try TunnelLab(Self.twoServers()).use { lab in
                try lab.keygen("server")
                let key = try lab.keygen("laptop")
                let phone = try lab.keygen("phone")
                let registry = try PeerRegistry(try RegistryURL(pg.url), passwordFile: pg.passwordFile)
                try registry.add(name: "laptop", publicKey: try PublicKey(base64: key), pool: Self.pool, pool6: Self.pool6)
                registry.close()
                var s1 = try startServer(lab, pg, in: "S1")
                let s2 = try startServer(lab, pg, in: "S2")
                let a = try startClient(lab, key: "laptop", in: "A")
                let b = try startClient(lab, key: "laptop", in: "B")
                #expect(try lab.waitForTunnelUp(a) == "10.8.0.2")
                #expect(try lab.waitForTunnelUp(b) == "10.8.0.2")
                let cache = lab.path("cache-S1/tun0.peers")
                var st = stat()
                #expect(stat(cache, &st) == 0 && st.st_mode & 0o777 == 0o600, "the cache is written, mode 0600")

                // The database stops: traffic goes on.
                try pg.stop()
                #expect(s1.waitForLog(containing: "unavailable, serving the 1 peer(s) known", timeout: 15), "\(s1.log)")
                #expect(s2.waitForLog(containing: "unavailable, serving the 1 peer(s) known", timeout: 15), "\(s2.log)")
                #expect(try lab["A"].ping("10.8.0.1", count: 3).status == 0)
                #expect(try lab["B"].ping("10.8.0.1", count: 3).status == 0)

                // S1 restarts meanwhile: it serves the cached peer, and A connects again.
                #expect(s1.terminate() == 0)
                s1 = try startServer(lab, pg, in: "S1")
                #expect(s1.log.contains("serving the 1 cached peer(s)"), "\(s1.log)")
                #expect(try lab["A"].waitForPing("10.8.0.1", timeout: 30), "A reaches the restarted S1")

                // A change while no server can see the database (it listens elsewhere for a moment): the
                // notification goes to nobody, and every server still learns the change once it reconnects.
                try pg.start(socketDirectory: pg.directory.path + "/hidden")
                let hidden = try PeerRegistry(
                    try RegistryURL(pg.url(socketDirectory: pg.directory.path + "/hidden")), passwordFile: pg.passwordFile)
                let row = try hidden.add(name: "phone", publicKey: try PublicKey(base64: phone), pool: Self.pool, pool6: Self.pool6)
                #expect(row.address4 == "10.8.0.3")
                hidden.close()
                try pg.stop()
                let (o1, o2) = (s1.logBytes.count, s2.logBytes.count)
                try pg.start()
                #expect(s1.waitForLog(containing: "1 added", after: o1, timeout: 20), "\(s1.log)")
                #expect(s2.waitForLog(containing: "1 added", after: o2, timeout: 20), "\(s2.log)")
                #expect(s1.log.contains("is back: resynchronised") && s2.log.contains("is back: resynchronised"))
                #expect(try peers(lab, in: "S1")[phone] == "10.8.0.3" && peers(lab, in: "S2")[phone] == "10.8.0.3")
                #expect(try lab["A"].ping("10.8.0.1", count: 2).status == 0, "the laptop was not disturbed")
                #expect(try lab["B"].ping("10.8.0.1", count: 2).status == 0, "the laptop was not disturbed")
            }
        }
    }

    @Test func aDatabaseThatCannotBeUsedIsAOneLineErrorWithNoChangeToTheHost() throws {
        try PostgresServer.use { pg in
            try TunnelLab(Self.twoServers()).use { lab in
                try lab.keygen("server")
                let wrong = lab.path("wrong.password")
                try "not-the-password\n".write(toFile: wrong, atomically: false, encoding: .utf8)
                chmod(wrong, 0o600)
                let nowhere = pg.url(socketDirectory: pg.directory.path + "/nowhere")

                // (A flag the command line refuses is ArgumentParser's error with the usage after it.)
                func expectRefusal(
                    _ arguments: [String], _ words: String, oneLine: Bool = true, sourceLocation: SourceLocation = #_sourceLocation
                ) throws {
                    let result = try lab.tunvpn(in: "S1", arguments)
                    let lines = result.stderr.split(separator: "\n")
                    #expect(result.status != 0, sourceLocation: sourceLocation)
                    #expect(!oneLine || lines.count == 1, "one line: \(result.stderr)", sourceLocation: sourceLocation)
                    #expect(!result.stderr.contains("s3cret"), sourceLocation: sourceLocation)
                    #expect(result.stderr.contains(words), "\(result.stderr)", sourceLocation: sourceLocation)
                    #expect(!result.stderr.contains("not-the-password"), sourceLocation: sourceLocation)
                    #expect(try lab["S1"].exec(["ip", "link", "show", "tun0"]).status != 0, "no device", sourceLocation: sourceLocation)
                    #expect(!FileManager.default.fileExists(atPath: lab.path("cache-S1")), "no cache", sourceLocation: sourceLocation)
                }
                let base = serverArguments(lab, pg, host: "S1")
                try expectRefusal(serverArguments(lab, pg, host: "S1", url: nowhere), "tunvpn: error: --registry host=\(pg.directory.path)/nowhere dbname=tunvpn user=tunvpn: cannot connect")
                var withWrongPassword = base
                withWrongPassword[withWrongPassword.firstIndex(of: pg.passwordFile)!] = wrong
                try expectRefusal(withWrongPassword, "password authentication failed")
                try expectRefusal(
                    serverArguments(lab, pg, host: "S1", url: "postgresql://tunvpn:s3cret@localhost/tunvpn"),
                    "--registry: the URL holds a password", oneLine: false)
                _ = try PeerRegistry(try RegistryURL(pg.url), passwordFile: pg.passwordFile)
                try pg.superuser("INSERT INTO tunvpn_schema (version) VALUES (\(RegistrySchema.latest + 1))")
                try expectRefusal(base, "newer than this tunvpn knows")
            }
        }
    }
}

// WireGuard mode end to end (docs/PROTOCOL.md, "WireGuard mode"): the real `tunvpn server --protocol
// wireguard` and `tunvpn client --protocol wireguard` against a stock WireGuard peer, Debian's
// wireguard-go configured with wg(8) (and once with wg-quick(8) from a file `tunvpn add-client` wrote), in
// two namespaces joined by a veth (k = the topology's subnet index):
//
//     W (the WireGuard side)                          T (tunvpn)
//     w0 10.72.k.1/24 (roams to 10.72.k.3) ─────────── t0 10.72.k.2/24
//     wireguard-go wgmK                                tunvpn, device tvwK
//
// (a) a stock client (W, 10.8.0.2 and fd00:8::2) connects to tunvpn's server (T, 10.8.0.1/24 and fd00:8::1/64,
// allow-list `KEY 10.8.0.2/32,fd00:8::2/128`);
// (b) tunvpn's client (T, --address 10.8.0.2/24) connects to a wireguard-go server (W, 10.8.0.1/24).
// Each: the handshake, pings both ways, 20 MB each way with equal SHA-256, with and without a preshared
// key, the WireGuard side roaming, and its `wg show DEV dump` naming the handshake and the bytes. Then the
// server under load (a flood of WireGuard initiations from a third namespace F) still lets a stock client
// in through a cookie reply; what a WireGuard client sends wrongly is refused by name; the same basic
// exchange runs against bookworm-backports' wireguard-go 0.0.20231211 (fetched by bench/lib/wireguard-go.sh,
// as bench/run.sh fetches it); and a wg-quick file from `tunvpn add-client --protocol wireguard` brings a
// stock client up.
//
// Device names carry k: wireguard-go's control socket (and tunvpn's in this mode) is
// /var/run/wireguard/DEV.sock, outside the namespace, so tests running side by side must not share a name.
// Each test builds its own topology, keys and files and removes them on every way out (TunnelLab.use);
// only processes the test started are signalled, by pid.

import Foundation
import Testing
import TestSupport

/// bookworm-backports' wireguard-go, found or fetched once per test process by the benchmarks' own code.
enum BackportsWireGuardGo {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The binary's path, or why there is none (`bench/lib/wireguard-go.sh modern-path`'s error).
    static let lookup: Result<String, LookupError> = {
        let script = repository.appendingPathComponent("bench/lib/wireguard-go.sh").path
        guard let result = try? runLogged(["bash", script, "modern-path"], timeout: 300) else {
            return .failure(LookupError(description: "could not run \(script)"))
        }
        let path = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, FileManager.default.isExecutableFile(atPath: path) else {
            return .failure(LookupError(description: "\(script) modern-path failed: \(result.stderr)"))
        }
        return .success(path)
    }()

    struct LookupError: Error, CustomStringConvertible { let description: String }

    /// Whether the backports test runs: always in CI (where it must find the binary or fail), elsewhere only
    /// when the binary could be had (root, the Debian mirror reachable).
    static var runs: Bool { RootTests.required || (RootTests.enabled && (try? lookup.get()) != nil) }
}

@Suite(.needsRoot("needs root: it creates network namespaces, TUN devices and wireguard-go devices"))
struct WireGuardModeEndToEndTests {
    static let serverTunnel = "10.8.0.1"
    static let clientTunnel = "10.8.0.2"
    static let serverTunnel6 = "fd00:8::1"
    static let clientTunnel6 = "fd00:8::2"
    static let port = 51820

    /// The two namespaces (and F for the flood), the TunnelLab that owns processes, logs and files, and the
    /// names and addresses of the file comment.
    final class Lab {
        let lab: TunnelLab
        let k: Int
        let wgDevice: String
        let tunvpnDevice: String

        init(flood: Bool = false, ipv6: Bool = false) throws {
            let topology = try Topology(hosts: flood ? ["W", "T", "F"] : ["W", "T"], enableIPv6: ipv6) { k in
                [VethLink(.init("W", "w0", "10.72.\(k).1/24"), .init("T", "t0", "10.72.\(k).2/24"))]
                    + (flood ? [VethLink(.init("F", "f0", "10.73.\(k).2/24"), .init("T", "t1", "10.73.\(k).1/24"))] : [])
            }
            lab = try TunnelLab(topology)
            k = topology.subnetIndex
            wgDevice = "wgm\(k)"
            tunvpnDevice = "tvw\(k)"
        }

        var w: NetworkNamespace { lab["W"] }
        var t: NetworkNamespace { lab["T"] }
        var wAddress: String { lab.topology.address("W", "w0") }
        var tAddress: String { lab.topology.address("T", "t0") }
        /// The address W roams to.
        var wRoamed: String { "10.72.\(k).3" }
        func path(_ name: String) -> String { lab.path(name) }

        /// A key pair made by `wg genkey` / `wg pubkey` as a WireGuard user makes one: `keys/NAME.key`,
        /// `keys/NAME.pub`; returns the public key.
        @discardableResult
        func wgKeygen(_ name: String) throws -> String {
            try FileManager.default.createDirectory(atPath: path("keys"), withIntermediateDirectories: true)
            let key = try runLoggedChecked(["wg", "genkey"]).stdout
            let file = path("keys/\(name).key")
            _ = FileManager.default.createFile(atPath: file, contents: nil, attributes: [.posixPermissions: 0o600])
            try key.write(toFile: file, atomically: false, encoding: .utf8)
            let pub = try runLoggedChecked(["wg", "pubkey"], stdin: key).stdout
            try pub.write(toFile: path("keys/\(name).pub"), atomically: true, encoding: .utf8)
            return pub.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// A preshared key made by `wg genpsk`, `keys/psk` (0600); returns its path.
        func wgGenpsk() throws -> String {
            let file = path("keys/psk")
            _ = FileManager.default.createFile(atPath: file, contents: nil, attributes: [.posixPermissions: 0o600])
            try runLoggedChecked(["wg", "genpsk"]).stdout.write(toFile: file, atomically: false, encoding: .utf8)
            return file
        }

        /// Starts wireguard-go (`binary`) in W as `wgDevice`, in the foreground (a child of this test), waits
        /// for its device, and applies `wg set wgDevice ARGUMENTS`, the tunnel address `address` and MTU 1420.
        @discardableResult
        func startWireGuardGo(binary: String = "wireguard-go", address: String, _ arguments: [String]) throws
            -> BackgroundProcess
        {
            let process = try lab.spawn(
                "wireguard-go", in: "W", ["env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=verbose", binary, "-f", wgDevice])
            let up = try waitUntil(timeout: 10, interval: 0.1) {
                try runChild(["ip", "-n", w.name, "link", "show", wgDevice], timeout: 10).status == 0
            }
            try #require(up, "wireguard-go made no \(wgDevice) in 10 s: \(process.log)")
            try w.run(["wg", "set", wgDevice] + arguments)
            try w.ip("address", "add", address, "dev", wgDevice)
            try w.ip("link", "set", wgDevice, "mtu", "1420", "up")
            return process
        }

        /// Starts `tunvpn server --protocol wireguard` in T on 0.0.0.0:51820 (10.8.0.1/24, device tvwK), the
        /// allow-list `lines` in keys/clients, and waits for its socket.
        func startServer(allowing lines: [String], extra: [String] = []) throws -> BackgroundProcess {
            try lab.writeAllowList(lines)
            let server = try lab.start(
                "server", in: "T",
                [
                    "server", "--protocol", "wireguard", "--key", path("keys/server.key"), "--listen", "0.0.0.0:\(port)",
                    "--address", "\(serverTunnel)/24", "--clients", path("keys/clients"), "--dev", tunvpnDevice, "--no-nat",
                    "--log-level", "debug",
                ] + extra)
            let bound = try t.waitForListener(port: port, udp: true)
            try #require(bound, "tunvpn server did not bind UDP \(port) within 10 s:\n\(server.log)")
            return server
        }

        /// Starts `tunvpn client --protocol wireguard` in T towards W's wireguard-go at `endpoint`, as 10.8.0.2/24.
        func startClient(endpoint: String, extra: [String] = []) throws -> BackgroundProcess {
            try lab.start(
                "client", in: "T",
                [
                    "client", "--protocol", "wireguard", "--key", path("keys/client.key"), "--peer-key", path("keys/w.pub"),
                    "--endpoint", endpoint, "--address", "\(clientTunnel)/24", "--dev", tunvpnDevice, "--no-routes",
                    "--log-level", "debug",
                ] + extra)
        }

        /// wireguard-go's one peer in `wg show wgDevice dump`.
        func dumpPeer() throws -> WgDumpPeer {
            let dump = try w.run(["wg", "show", wgDevice, "dump"]).stdout
            print(dump)
            let lines = dump.split(separator: "\n")
            try #require(lines.count == 2, "wg show \(wgDevice) dump: one interface line and one peer line expected:\n\(dump)")
            return try #require(WgDumpPeer(lines[1]), "not a peer line of wg show dump: \(lines[1])")
        }

        /// Moves 20 MB each way through the tunnel (nc over TCP), checking size and SHA-256.
        func transferBothWays(wTunnel: String, tTunnel: String, megabytes: Int = 20) throws {
            try TestFiles.makeRandom(at: path("w-to-t"), megabytes: megabytes)
            try TestFiles.makeRandom(at: path("t-to-w"), megabytes: megabytes)
            let up = try transferFile(
                path("w-to-t"), from: w, to: tTunnel, port: 5001, receiver: t, into: path("w-to-t.received"), timeout: 120)
            try lab.expectIntact(up, "w-to-t", megabytes: megabytes)
            let down = try transferFile(
                path("t-to-w"), from: t, to: wTunnel, port: 5002, receiver: w, into: path("t-to-w.received"), timeout: 120)
            try lab.expectIntact(down, "t-to-w", megabytes: megabytes)
        }

        /// Moves W's underlay from 10.72.k.1 to 10.72.k.3 (the old address removed, so nothing reaches it).
        func roamUnderlayAddress() throws {
            try w.sysctl("net.ipv4.conf.w0.promote_secondaries", "1")
            try w.ip("address", "add", "\(wRoamed)/24", "dev", "w0")
            try w.ip("address", "del", "\(wAddress)/24", "dev", "w0")
        }

        /// Waits (at most `timeout` s) until the `stats:` line `process` prints on SIGUSR1 has `key` ≥ 1.
        func waitForCounter(_ key: String, of process: BackgroundProcess, timeout: Double = 10) throws -> TunvpnStats {
            var last = try process.requestStats()
            _ = try waitUntil(timeout: timeout, interval: 0.5) {
                last = try process.requestStats()
                return (last[key] ?? 0) >= 1
            }
            return last
        }
    }

    /// One peer line of `wg show DEV dump`: public key, preshared key, endpoint, allowed ips, latest
    /// handshake (seconds since the epoch, 0 for never), bytes received, bytes sent, keepalive (wg(8)).
    struct WgDumpPeer {
        var publicKey: String
        var presharedKey: String
        var endpoint: String
        var allowedIPs: String
        var latestHandshake: UInt64
        var received: UInt64
        var sent: UInt64

        init?(_ line: Substring) {
            let f = line.split(separator: "\t").map(String.init)
            guard f.count == 8, let h = UInt64(f[4]), let rx = UInt64(f[5]), let tx = UInt64(f[6]) else { return nil }
            (publicKey, presharedKey, endpoint, allowedIPs) = (f[0], f[1], f[2], f[3])
            (latestHandshake, received, sent) = (h, rx, tx)
        }
    }

    // MARK: (a) A stock WireGuard client connects to tunvpn's server

    @Test(arguments: [false, true])
    func stockWireGuardClientConnectsToTunvpnServer(psk: Bool) throws {
        let lab = try Lab(ipv6: true)
        try lab.lab.use { _ in try stockClientScenario(lab, binary: "wireguard-go", psk: psk) }
    }

    func stockClientScenario(_ lab: Lab, binary: String, psk: Bool) throws {
        try lab.lab.keygen("server")
        let wKey = try lab.wgKeygen("w")
        let pskFile = psk ? try lab.wgGenpsk() : nil
        // Dual stack inside the tunnel: the allow-list line gives both of the client's addresses.
        let server = try lab.startServer(
            allowing: ["\(wKey) \(Self.clientTunnel)/32,\(Self.clientTunnel6)/128  # the stock WireGuard client"],
            extra: ["--address", "\(Self.serverTunnel6)/64"] + (pskFile.map { ["--psk", $0] } ?? []))
        let serverKey = try String(contentsOfFile: lab.path("keys/server.pub"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try lab.startWireGuardGo(
            binary: binary, address: "\(Self.clientTunnel)/24",
            ["private-key", lab.path("keys/w.key"), "peer", serverKey, "allowed-ips", "10.8.0.0/24,fd00:8::/64", "endpoint",
             "\(lab.tAddress):\(Self.port)"] + (pskFile.map { ["preshared-key", $0] } ?? []))
        try lab.w.run(["ip", "-6", "address", "add", "\(Self.clientTunnel6)/64", "dev", lab.wgDevice, "nodad"])

        // The handshake (wireguard-go initiates at its first packet), then pings both ways, both families.
        try #require(
            try lab.w.waitForPing(Self.serverTunnel, timeout: 15), "no ping from the stock client to the server; server log:\n\(server.log.suffix(3000))")
        #expect(server.waitForLog(containing: "handshake completed with peer \(wKey)", timeout: 5), "\(server.log)")
        #expect(try lab.t.ping(Self.clientTunnel, count: 3).status == 0, "no ping from the server to the stock client")
        #expect(try lab.w.waitForPing(Self.serverTunnel6, timeout: 5), "no IPv6 ping from the stock client to the server")
        #expect(try lab.t.ping(Self.clientTunnel6, count: 3).status == 0, "no IPv6 ping from the server to the stock client")
        try lab.transferBothWays(wTunnel: Self.clientTunnel, tTunnel: Self.serverTunnel)

        // wg(8) on the WireGuard side: the handshake and bytes both ways, the psk as configured.
        let peer = try lab.dumpPeer()
        #expect(peer.publicKey == serverKey)
        #expect(peer.endpoint == "\(lab.tAddress):\(Self.port)")
        #expect(peer.latestHandshake > 0, "wg show dump names no handshake")
        #expect(peer.received >= 20 << 20 && peer.sent >= 20 << 20, "rx \(peer.received) tx \(peer.sent)")
        #expect((peer.presharedKey != "(none)") == psk)

        // Roaming: the stock client moves to another underlay address and another port; its next packet
        // tells the server, whose answers (and its own pings) follow it there, the old address being gone.
        try lab.roamUnderlayAddress()
        try lab.w.run(["wg", "set", lab.wgDevice, "listen-port", "51830"])
        #expect(try lab.w.waitForPing(Self.serverTunnel, timeout: 10), "no ping from the roamed client")
        #expect(try lab.t.ping(Self.clientTunnel, count: 3).status == 0, "the server's pings did not follow the client")
        let stats = try server.requestStats()
        #expect((stats["handshakes.completed"] ?? 0) >= 1)
        #expect(stats["drop.authentication"] ?? 0 == 0)
    }

    // MARK: (b) tunvpn's client connects to a wireguard-go server

    @Test(arguments: [false, true])
    func tunvpnClientConnectsToWireGuardGoServer(psk: Bool) throws {
        let lab = try Lab()
        try lab.lab.use { _ in try tunvpnClientScenario(lab, binary: "wireguard-go", psk: psk) }
    }

    func tunvpnClientScenario(_ lab: Lab, binary: String, psk: Bool) throws {
        let wKey = try lab.wgKeygen("w")
        let clientKey = try lab.lab.keygen("client")
        let pskFile = psk ? try lab.wgGenpsk() : nil
        try lab.startWireGuardGo(
            binary: binary, address: "\(Self.serverTunnel)/24",
            ["private-key", lab.path("keys/w.key"), "listen-port", "\(Self.port)", "peer", clientKey, "allowed-ips",
             "\(Self.clientTunnel)/32"] + (pskFile.map { ["preshared-key", $0] } ?? []))
        let client = try lab.startClient(
            endpoint: "\(lab.wAddress):\(Self.port)", extra: pskFile.map { ["--psk", $0] } ?? [])

        try #require(
            try lab.t.waitForPing(Self.serverTunnel, timeout: 15), "no ping from tunvpn's client to wireguard-go; client log:\n\(client.log.suffix(3000))")
        #expect(client.waitForLog(containing: "tunnel up", timeout: 5))
        #expect(try lab.w.ping(Self.clientTunnel, count: 3).status == 0, "no ping from wireguard-go to tunvpn's client")
        try lab.transferBothWays(wTunnel: Self.serverTunnel, tTunnel: Self.clientTunnel)

        let peer = try lab.dumpPeer()
        #expect(peer.publicKey == clientKey)
        #expect(peer.latestHandshake > 0, "wg show dump names no handshake")
        #expect(peer.received >= 20 << 20 && peer.sent >= 20 << 20, "rx \(peer.received) tx \(peer.sent)")
        #expect((peer.presharedKey != "(none)") == psk)
        #expect(wKey != clientKey)

        // Roaming: the wireguard-go server moves to another underlay address and another port; its packets
        // from there are authenticated, so tunvpn's client answers, and sends its own, there (the old address
        // is gone).
        try lab.roamUnderlayAddress()
        try lab.w.run(["wg", "set", lab.wgDevice, "listen-port", "51831"])
        #expect(try lab.w.ping(Self.clientTunnel, count: 3).status == 0, "no ping from the roamed server")
        #expect(try lab.t.ping(Self.serverTunnel, count: 3).status == 0, "tunvpn's client did not follow the server to its new port")
        #expect(try lab.dumpPeer().endpoint.hasPrefix(lab.tAddress + ":"))
        let stats = try client.requestStats()
        #expect((stats["handshakes.completed"] ?? 0) >= 1)
        #expect(stats["drop.authentication"] ?? 0 == 0)
    }

    // MARK: The newer wireguard-go (bookworm-backports, with GSO/GRO)

    @Test(.enabled(
        if: BackportsWireGuardGo.runs,
        "bookworm-backports' wireguard-go could not be fetched here (bench/lib/wireguard-go.sh modern-path failed); in CI (TUNVPN_REQUIRE_ROOT_TESTS=1) this test runs and fails instead"))
    func backportsWireGuardGoInteroperatesBothWays() throws {
        let binary = try BackportsWireGuardGo.lookup.get()
        let version = try runLogged([binary, "--version"]).stdout
        print("= backports wireguard-go: \(binary): \(version)")
        let a = try Lab(ipv6: true)
        try a.lab.use { _ in try stockClientScenario(a, binary: binary, psk: false) }
        let b = try Lab()
        try b.lab.use { _ in try tunvpnClientScenario(b, binary: binary, psk: true) }
    }

    // MARK: Under load: a cookie reply, and the retry with mac2

    /// WireGuard initiations from random keys (valid mac1) at 400 a second for 14 s from 50 addresses in F
    /// put the server under load (more than 100 a second); a stock client that starts pinging 1.5 s in gets a
    /// cookie reply to its initiation (seen on its own link) and gets in with its retransmission, which
    /// carries mac2, while the flood still runs.
    @Test func underLoadAStockClientGetsACookieReplyAndStillConnects() throws {
        let lab = try Lab(flood: true)
        try lab.lab.use { _ in
            let k = lab.k
            let serverKey = try lab.lab.keygen("server")
            let wKey = try lab.wgKeygen("w")
            let server = try lab.startServer(allowing: ["\(wKey) \(Self.clientTunnel)/32  # the stock WireGuard client"])
            try ForgedInitiations.writeWireGuard(to: lab.path("flood.bin"), serverPublicKey: serverKey, count: 2000)
            let sources = (10..<60).map { "10.73.\(k).\($0)" }
            try lab.lab["F"].addAddresses(sources.map { $0 + "/24" }, device: "f0")
            #expect(try lab.lab["F"].ping(lab.lab.topology.address("T", "t1"), count: 1).status == 0)
            let capture = try Capture(
                in: lab.w, interface: "w0", file: lab.path("w0.pcap"), filter: ["udp", "and", "port", "\(Self.port)"])

            let before = try server.requestStats()
            let flood = try InitiationFlood(
                in: lab.lab["F"], datagrams: lab.path("flood.bin"), messageLength: 148,
                to: lab.lab.topology.address("T", "t1"), port: Self.port, sources: sources, rate: 400, seconds: 14,
                logFile: lab.path("flood.log"))
            usleep(1_500_000)
            try lab.startWireGuardGo(
                address: "\(Self.clientTunnel)/24",
                ["private-key", lab.path("keys/w.key"), "peer", serverKey, "allowed-ips", "10.8.0.0/24", "endpoint",
                 "\(lab.tAddress):\(Self.port)"])
            let started = Date()
            let pinger = try lab.w.spawn(["ping", "-n", "-c", "40", "-i", "0.5", "-W", "1", Self.serverTunnel], logFile: lab.path("ping.log"))
            let completed = server.waitForLog(containing: "handshake completed with peer \(wKey)", timeout: 11)
            let after = Date().timeIntervalSince(started)
            let floodRanThroughout = flood.isRunning
            print(String(format: "= the stock client got in %.1f s after it started (flood still running: %@)", after, floodRanThroughout ? "yes" : "no"))
            #expect(completed, "the stock client did not get in under load; server log:\n\(server.log.suffix(3000))")
            #expect(floodRanThroughout, "the flood had ended before the stock client got in")
            #expect(try lab.w.ping(Self.serverTunnel, count: 2).status == 0)
            pinger.terminate()
            let sent = try flood.wait()
            let stats = try server.requestStats()
            #expect(sent.sent >= 4000, "\(sent)")

            // The server sent cookie replies (each cookieRequired refusal under load is answered by one) …
            let cookies = Int64(stats["handshake.failed.cookieRequired"] ?? 0) - Int64(before["handshake.failed.cookieRequired"] ?? 0)
            print("= cookieRequired refusals (each answered with a cookie reply): \(cookies)")
            #expect(cookies > 0, "the server was never under load, or sent no cookie reply: \(stats)")
            // … and one of them reached the stock client, before the handshake it then completed with mac2.
            let frames = try capture.stop().frames
            let fromServer = frames.filter { $0.source == lab.tAddress && $0.destination == lab.wAddress }
            let cookieReply = fromServer.firstIndex { $0.udpPayload?.count == 64 && $0.udpPayload?.first == 3 }
            let response = fromServer.firstIndex { $0.udpPayload?.count == 92 && $0.udpPayload?.first == 2 }
            #expect(cookieReply != nil, "no cookie reply (type 3, 64 bytes) from the server reached the stock client")
            #expect(response != nil, "no handshake response (type 2, 92 bytes) reached the stock client")
            if let cookieReply, let response { #expect(cookieReply < response, "the cookie reply came after the response") }
        }
    }

    // MARK: Refusals by name

    /// A stock client's replayed initiation (a stale timestamp), one from a key not on the allow-list, and
    /// one whose mac1 is keyed for another server key are refused as replayedInitiation, unknownClientKey and
    /// corrupted, in the server's log and metrics, as in tunvpn mode.
    @Test func whatAStockClientSendsWronglyIsRefusedByName() throws {
        let lab = try Lab()
        try lab.lab.use { _ in
            let serverKey = try lab.lab.keygen("server")
            let wKey = try lab.wgKeygen("w")
            try lab.wgKeygen("stranger")
            let otherServer = try lab.wgKeygen("other-server")
            let server = try lab.startServer(allowing: ["\(wKey) \(Self.clientTunnel)/32  # the stock WireGuard client"])
            let capture = try Capture(
                in: lab.w, interface: "w0", file: lab.path("w0.pcap"), filter: ["udp", "and", "dst", "port", "\(Self.port)"])
            try lab.startWireGuardGo(
                address: "\(Self.clientTunnel)/24",
                ["private-key", lab.path("keys/w.key"), "peer", serverKey, "allowed-ips", "10.8.0.0/24", "endpoint",
                 "\(lab.tAddress):\(Self.port)"])
            try #require(try lab.w.waitForPing(Self.serverTunnel, timeout: 15), "no handshake: \(server.log.suffix(2000))")
            let initiation = try capture.stop().frames.compactMap(\.udpPayload).first { $0.count == 148 && $0.first == 1 }
            let captured = try #require(initiation, "no initiation of the stock client's in the capture")

            // 1. Its initiation again, byte for byte: the timestamp is not newer than the last one admitted.
            try sendUDPDatagram(captured, from: lab.w, to: lab.tAddress, port: Self.port)
            let replay = try lab.waitForCounter("handshake.failed.replayedInitiation", of: server)
            #expect(replay["handshake.failed.replayedInitiation"] ?? 0 >= 1, "\(replay)")
            #expect(server.waitForLog(containing: ": replayedInitiation", timeout: 2), "\(server.log.suffix(2000))")

            // 2. Another key, not on the allow-list (wg set replaces the private key; the peer stays).
            try lab.w.run(["wg", "set", lab.wgDevice, "private-key", lab.path("keys/stranger.key")])
            _ = try lab.w.ping(Self.serverTunnel, count: 2)
            let unknown = try lab.waitForCounter("handshake.failed.unknownClientKey", of: server)
            #expect(unknown["handshake.failed.unknownClientKey"] ?? 0 >= 1, "\(unknown)")
            #expect(server.waitForLog(containing: ": unknownClientKey", timeout: 2), "\(server.log.suffix(2000))")

            // 3. The allowed key, but the peer set to another server key: mac1 is keyed for that one.
            try lab.w.run(
                ["wg", "set", lab.wgDevice, "private-key", lab.path("keys/w.key"), "peer", serverKey, "remove", "peer",
                 otherServer, "allowed-ips", "10.8.0.0/24", "endpoint", "\(lab.tAddress):\(Self.port)"])
            _ = try lab.w.ping(Self.serverTunnel, count: 2)
            let corrupted = try lab.waitForCounter("handshake.failed.corrupted", of: server)
            #expect(corrupted["handshake.failed.corrupted"] ?? 0 >= 1, "\(corrupted)")
            #expect(server.waitForLog(containing: ": corrupted", timeout: 2), "\(server.log.suffix(2000))")
            // None of them made a session: one handshake in all, the first one.
            #expect(corrupted["handshakes.completed"] == 1, "\(corrupted)")
        }
    }

    // MARK: A wg-quick file from add-client

    /// `tunvpn add-client NAME --protocol wireguard` writes NAME.conf; wg-quick(8) (wireguard-go as its
    /// userspace implementation) brings it up in W, and the client pings the server's tunnel address and
    /// moves data. W gets its own resolv.conf first, and a DNS line wg-quick could only apply with
    /// resolvconf(8), which this machine may lack, is left out of the copy wg-quick reads.
    @Test func wgQuickFileFromAddClientBringsUpAStockClient() throws {
        let lab = try Lab(ipv6: true)
        try lab.lab.use { _ in
            try NamespaceResolvConf.install(lab.w, "nameserver 127.0.0.1\n")
            defer { NamespaceResolvConf.remove(lab.w) }
            try NamespaceResolvConf.requireIsolated(lab.w)
            try lab.lab.keygen("server")
            try lab.lab.writeAllowList([])
            let name = "wq\(lab.k)"
            let out = lab.path("client-files")
            let add = try runLoggedChecked(
                [TestBinaries.tunvpn, "add-client", name, "--protocol", "wireguard", "--key", lab.path("keys/server.key"),
                 "--clients", lab.path("keys/clients"), "--address", "\(Self.serverTunnel)/24", "--endpoint",
                 "\(lab.tAddress):\(Self.port)", "--out", out])
            print(add.stdout + add.stderr)
            let conf = try String(contentsOfFile: "\(out)/\(name).conf", encoding: .utf8)
            #expect(conf.contains("[Interface]") && conf.contains("[Peer]"))
            #expect(conf.contains("Endpoint = \(lab.tAddress):\(Self.port)"))
            #expect(!FileManager.default.fileExists(atPath: "\(out)/\(name).toml"), "WireGuard mode writes NAME.conf, not NAME.toml")
            let allowList = try String(contentsOfFile: lab.path("keys/clients"), encoding: .utf8)
            #expect(allowList.contains(name), "add-client put no line for \(name) on the allow-list:\n\(allowList)")

            let server = try lab.startServer(allowing: allowList.split(separator: "\n").map(String.init).filter { !$0.isEmpty })
            // wg-quick names the interface after the file: wqK.conf → wqK.
            let hasResolvconf = (try? runChild(["sh", "-c", "command -v resolvconf"]).status) == 0
            let quickConf = lab.path("\(name).conf")
            let kept = conf.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { hasResolvconf || !$0.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("dns") }
            _ = FileManager.default.createFile(atPath: quickConf, contents: nil, attributes: [.posixPermissions: 0o600])
            try kept.joined(separator: "\n").write(toFile: quickConf, atomically: false, encoding: .utf8)
            let up = try lab.w.exec(["env", "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "wg-quick", "up", quickConf], timeout: 30)
            print(up.stdout + up.stderr)
            try #require(up.status == 0, "wg-quick up failed: \(up.stderr)")
            defer { _ = try? lab.w.exec(["wg-quick", "down", quickConf], timeout: 30) }

            let address = try #require(
                conf.split(separator: "\n").first { $0.hasPrefix("Address") }?.split(separator: "=").last
                    .flatMap { $0.split(separator: ",").first }?.trimmingCharacters(in: .whitespaces)
                    .split(separator: "/").first.map(String.init),
                "no Address in \(conf)")
            try #require(
                try lab.w.waitForPing(Self.serverTunnel, timeout: 15), "no ping from the wg-quick client; server log:\n\(server.log.suffix(2000))")
            #expect(try lab.t.ping(address, count: 3).status == 0, "no ping from the server to the wg-quick client at \(address)")
            try TestFiles.makeRandom(at: lab.path("quick"), megabytes: 5)
            let moved = try transferFile(
                lab.path("quick"), from: lab.w, to: Self.serverTunnel, port: 5003, receiver: lab.t,
                into: lab.path("quick.received"))
            try lab.lab.expectIntact(moved, "quick", megabytes: 5)
            #expect(try lab.w.run(["wg", "show", name, "latest-handshakes"]).stdout.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) != "0" } == true)
        }
    }
}

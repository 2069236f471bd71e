// Interop oracle for WireGuard mode: Debian's wireguard-go, configured with `wg set`, on one side, and
// tunvpn's WireGuard-mode core (Transport's WireGuardInitiator/Responder, cookies and data frames, driven
// by the `tunvpn-wgprobe` test tool) on the other, in two namespaces joined by a veth:
//
//     W (wireguard-go)                                P (tunvpn-wgprobe)
//     w0 10.71.k.1/24 ──────────────────────────────── p0 10.71.k.2/24
//     wgtK 10.9.0.1/24 (allowed-ips 10.9.0.2/32)         inner address 10.9.0.2
//
// A handshake completes in each direction and pings cross the tunnel both ways; the WireGuard side's
// `wg show` reports the handshake and the bytes; what the WireGuard side sends wrongly is refused with
// tunvpn's named reasons.

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and a wireguard-go TUN device"))
struct WireGuardInteropTests {
    /// Two namespaces, wireguard-go running in W as `wgt<k>` with `config` applied by `wg set`.
    final class Lab {
        let topology: Topology
        let directory: TemporaryDirectory
        let device: String
        var wireguard: BackgroundProcess?

        init() throws {
            topology = try Topology(hosts: ["W", "P"]) { k in
                [VethLink(.init("W", "w0", "10.71.\(k).1/24"), .init("P", "p0", "10.71.\(k).2/24"))]
            }
            directory = try TemporaryDirectory()
            // Unique per topology: wireguard-go's control socket, /var/run/wireguard/DEV.sock, is outside the
            // namespace, so two tests must not name their devices alike.
            device = "wgt\(topology.subnetIndex)"
        }

        deinit {
            topology.close()
            directory.remove()
        }

        var w: NetworkNamespace { topology["W"] }
        var p: NetworkNamespace { topology["P"] }
        var wAddress: String { topology.address("W", "w0") }
        var pAddress: String { topology.address("P", "p0") }
        func path(_ name: String) -> String { directory.path + "/" + name }

        /// Writes a fresh key pair (`NAME.key`, `NAME.pub`) with `wg genkey` / `wg pubkey`.
        func keygen(_ name: String) throws {
            let key = try runCommand("/usr/bin/wg", ["genkey"])
            #expect(key.status == 0)
            try key.stdout.write(toFile: path("\(name).key"), atomically: true, encoding: .utf8)
            chmod(path("\(name).key"), 0o600)
            let pub = try runCommand("/usr/bin/wg", ["pubkey"], stdin: key.stdout)
            try pub.stdout.write(toFile: path("\(name).pub"), atomically: true, encoding: .utf8)
        }

        func publicKey(_ name: String) throws -> String {
            try String(contentsOfFile: path("\(name).pub"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Starts wireguard-go in W and configures it: its own key, port 51820, and one peer.
        func startWireGuard(peerKey: String, extra: [String] = []) throws {
            wireguard = try w.spawn(
                ["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", device], logFile: path("wireguard-go.log"))
            var up = false
            for _ in 0..<50 where !up {
                up = (try? w.ip("link", "show", device))?.status == 0
                if !up { usleep(100_000) }
            }
            try #require(up, "wireguard-go made no \(device): \(wireguard?.log ?? "")")
            let set = try w.run(
                ["wg", "set", device, "private-key", path("w.key"), "listen-port", "51820", "peer", peerKey,
                 "allowed-ips", "10.9.0.2/32"] + extra)
            try #require(set.status == 0, "wg set: \(set.stderr)")
            #expect(try w.ip("address", "add", "10.9.0.1/24", "dev", device).status == 0)
            #expect(try w.ip("link", "set", device, "up").status == 0)
        }

        func probe(_ arguments: [String], timeout: Double = 30) throws -> CommandResult {
            try p.exec(
                [TestBinaries.wgprobe, "--private-key", path("p.key"), "--peer-key", path("w.pub"), "--address", "10.9.0.2",
                 "--ping", "10.9.0.1"] + arguments, timeout: timeout)
        }

        func show() throws -> String { try w.run(["wg", "show", device]).stdout }
    }

    @Test func tunvpnInitiatesToWireGuardGoAndPingsGoThroughBothWays() throws {
        let lab = try Lab()
        try lab.topology.use { _ in
            try lab.keygen("w")
            try lab.keygen("p")
            try lab.startWireGuard(peerKey: try lab.publicKey("p"))
            // The probe pings 10.9.0.1 (wireguard-go's kernel answers) and answers W's pings to 10.9.0.2;
            // halfway, the WireGuard side roams to another port, and the probe's answers follow it there.
            let pinger = try lab.w.spawn(
                ["sh", "-c",
                 "sleep 2; ping -c 3 -i 0.3 -W 2 10.9.0.2; wg set \(lab.device) listen-port 51821; ping -c 4 -i 0.3 -W 2 10.9.0.2"],
                logFile: lab.path("ping.log"))
            let run = try lab.probe(
                ["--listen-port", "51000", "--endpoint", "\(lab.wAddress):51820", "--count", "3", "--answer", "6"])
            print(run.stdout + run.stderr)
            #expect(run.status == 0, "probe: \(run.stdout) \(run.stderr)")
            #expect(run.stdout.contains("handshake completed"))
            #expect(run.stdout.contains("reply seq=3"))
            #expect(run.stdout.contains("answered seq="))
            #expect(run.stdout.contains("roamed to \(lab.wAddress):51821"), "the probe followed the roaming peer")
            _ = pinger.waitForExit(timeout: 10)
            #expect(try lab.show().contains("listening port: 51821"))
            let show = try lab.show()
            print(show)
            #expect(show.contains("latest handshake:"), "wg show names the handshake")
            #expect(show.contains("endpoint: \(lab.pAddress):51000"))
            #expect(show.contains("transfer:") && !show.contains("transfer: 0 B received"))
        }
    }

    @Test func wireGuardGoInitiatesToTunvpnWithAPresharedKey() throws {
        let lab = try Lab()
        try lab.topology.use { _ in
            try lab.keygen("w")
            try lab.keygen("p")
            let psk = try runCommand("/usr/bin/wg", ["genpsk"])
            try psk.stdout.write(toFile: lab.path("psk"), atomically: true, encoding: .utf8)
            chmod(lab.path("psk"), 0o600)
            try lab.startWireGuard(
                peerKey: try lab.publicKey("p"),
                extra: ["endpoint", "\(lab.pAddress):51001", "preshared-key", lab.path("psk")])
            // W's ping makes wireguard-go initiate; the probe (responder) answers and pings back.
            let pinger = try lab.w.spawn(
                ["sh", "-c", "sleep 1; ping -c 6 -i 0.3 -W 2 10.9.0.2"], logFile: lab.path("ping.log"))
            let run = try lab.probe(["--listen-port", "51001", "--psk", lab.path("psk"), "--count", "2", "--answer", "2"])
            print(run.stdout + run.stderr)
            #expect(run.status == 0, "probe: \(run.stdout) \(run.stderr)")
            #expect(run.stdout.contains("handshake completed") && run.stdout.contains("answered seq="))
            _ = pinger.waitForExit(timeout: 10)
            #expect(try lab.show().contains("latest handshake:"))
        }
    }

    @Test func underLoadWireGuardGoAnswersWithACookieAndTunvpnRetriesWithMac2() throws {
        let lab = try Lab()
        try lab.topology.use { _ in
            try lab.keygen("w")
            try lab.keygen("p")
            try lab.startWireGuard(peerKey: try lab.publicKey("p"))
            // Bursts of 3,000 initiations from unknown keys fill wireguard-go's handshake queue (under load at
            // 128 queued); the real initiation after a burst gets a cookie reply, and the retry with mac2
            // completes.
            let run = try lab.probe(
                ["--listen-port", "51004", "--endpoint", "\(lab.wAddress):51820", "--flood", "3000", "--count", "2", "--timeout", "50"], timeout: 60)
            print(run.stdout + run.stderr)
            #expect(run.status == 0, "probe: \(run.stdout) \(run.stderr)")
            #expect(run.stdout.contains("cookie received"), "wireguard-go was under load and sent a cookie reply we opened")
            #expect(run.stdout.contains("handshake completed") && run.stdout.contains("reply seq=2"))
        }
    }

    @Test func whatTheWireGuardSideSendsWronglyIsRefusedByName() throws {
        let lab = try Lab()
        try lab.topology.use { _ in
            try lab.keygen("w")
            try lab.keygen("p")
            try lab.keygen("other")
            // 1. wireguard-go believes the probe has another key: its mac1 is keyed for that key (bad mac1).
            try lab.startWireGuard(peerKey: try lab.publicKey("other"), extra: ["endpoint", "\(lab.pAddress):51002"])
            // The ping starts about when the probe listens; wireguard-go initiates at its first packet and
            // retries every 5 s, so a probe that started late still sees an initiation within its 12 s.
            _ = try lab.w.spawn(["sh", "-c", "sleep 1; ping -c 30 -i 0.5 -W 1 10.9.0.2"], logFile: lab.path("ping1.log"))
            let badMAC = try lab.probe(["--listen-port", "51002", "--count", "1", "--timeout", "12"], timeout: 25)
            #expect(badMAC.status != 0)
            #expect(badMAC.stdout.contains("refused corrupted"), "\(badMAC.stdout)")
            // 2. The right responder key, but the probe expects another peer: an unknown key.
            let other = try lab.w.run(["wg", "set", lab.device, "peer", try lab.publicKey("other"), "remove"])
            #expect(other.status == 0)
            let set = try lab.w.run(
                ["wg", "set", lab.device, "peer", try lab.publicKey("p"), "allowed-ips", "10.9.0.2/32", "endpoint",
                 "\(lab.pAddress):51003"])
            #expect(set.status == 0)
            // The ping starts once the probe listens; wireguard-go initiates at its first packet.
            _ = try lab.w.spawn(["sh", "-c", "sleep 1; ping -c 30 -i 0.5 -W 1 10.9.0.2"], logFile: lab.path("ping2.log"))
            let unknown = try lab.p.exec(
                [TestBinaries.wgprobe, "--private-key", lab.path("p.key"), "--peer-key", lab.path("other.pub"), "--address",
                 "10.9.0.2", "--ping", "10.9.0.1", "--listen-port", "51003", "--count", "1", "--timeout", "12"], timeout: 25)
            #expect(unknown.stdout.contains("refused unknownClientKey"), "\(unknown.stdout)")
            // 3. A real initiation of wireguard-go's, consumed a second time: a stale timestamp.
            // The ping starts once the probe listens; wireguard-go initiates at its first packet.
            _ = try lab.w.spawn(["sh", "-c", "sleep 1; ping -c 30 -i 0.5 -W 1 10.9.0.2"], logFile: lab.path("ping3.log"))
            let replay = try lab.probe(["--listen-port", "51003", "--count", "1", "--replay", "--timeout", "12"], timeout: 25)
            #expect(replay.stdout.contains("replay refused replayedInitiation"), "\(replay.stdout)")
            #expect(replay.stdout.contains("handshake completed"))
        }
    }
}

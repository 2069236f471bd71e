// The wg-quick file for a stock WireGuard client: its exact text, and each field's refusal by name.

import Crypto
import Foundation
import Testing
import TestSupport

@testable import Control

@Suite struct WgQuickFileTests {
    static let client = PrivateKey(secret: SecretBytes(copying: [UInt8](repeating: 0x11, count: 32)))
    static let server = PrivateKey(secret: SecretBytes(copying: [UInt8](repeating: 0x22, count: 32))).publicKey

    static func file() -> WgQuickFile {
        WgQuickFile(
            privateKey: client, addresses: ["10.8.0.5/32", "fd00::5/128"], dns: ["10.8.0.1"], peerKey: server,
            presharedKey: SecretBytes(copying: [UInt8](repeating: 0x33, count: 32)), endpoint: "vpn.example.org:51820",
            allowedIPs: ["0.0.0.0/0", "::/0"], persistentKeepalive: 25)
    }

    @Test func theFileHasWgQuicksSectionsAndKeys() throws {
        let text = try Self.file().render()
        #expect(
            text == """
                [Interface]
                PrivateKey = \(Self.client.base64)
                Address = 10.8.0.5/32, fd00::5/128
                DNS = 10.8.0.1

                [Peer]
                PublicKey = \(Self.server.base64)
                PresharedKey = MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=
                Endpoint = vpn.example.org:51820
                AllowedIPs = 0.0.0.0/0, ::/0
                PersistentKeepalive = 25

                """)
        var bare = Self.file()
        bare.dns = []
        bare.presharedKey = nil
        bare.persistentKeepalive = nil
        let plain = try bare.render()
        #expect(!plain.contains("DNS") && !plain.contains("PresharedKey") && !plain.contains("PersistentKeepalive"))
    }

    @Test func aBadFieldIsRefusedByName() {
        func refusal(_ change: (inout WgQuickFile) -> Void) -> String {
            var f = Self.file()
            change(&f)
            do {
                _ = try f.render()
                return ""
            } catch {
                return error.message
            }
        }
        #expect(refusal { $0.addresses = ["10.8.0.5"] }.contains("Address: '10.8.0.5'"))
        #expect(refusal { $0.addresses = [] }.contains("Address:"))
        #expect(refusal { $0.dns = ["resolver"] }.contains("DNS: 'resolver'"))
        #expect(refusal { $0.allowedIPs = ["0.0.0.0/0\nPostUp = x"] }.contains("AllowedIPs:"))
        #expect(refusal { $0.endpoint = "2001:db8::1:51820" }.contains("Endpoint"))
        #expect(refusal { $0.persistentKeepalive = 0 }.contains("PersistentKeepalive: 0"))
    }
}

/// wg-quick's own parser and wg(8) read the file: `wg-quick strip` turns it into wg's format, and
/// `wg setconf` applies that to a wireguard-go device in a namespace, whose `wg showconf` then carries the
/// peer exactly as written.
@Suite(.serialized, .needsRoot("needs root: wg-quick runs as root and the device lives in a network namespace"))
struct WgQuickFileAcceptanceTests {
    @Test func wgQuickStripAndWgSetconfAcceptTheFile() throws {
        let ns = try NetworkNamespace(name: "tvwgq\(getpid() % 100_000)")
        defer { ns.delete() }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let device = "wgq\(getpid() % 10_000)"
        try EndToEndGate.shared {
            let psk = SecretBytes(copying: [UInt8](repeating: 0x44, count: 32))
            let file = WgQuickFile(
                privateKey: PrivateKey(), addresses: ["10.9.0.2/32"], dns: ["10.9.0.1"], peerKey: WgQuickFileTests.server,
                presharedKey: psk, endpoint: "10.71.0.1:51820", allowedIPs: ["10.9.0.0/24", "192.168.50.0/24"],
                persistentKeepalive: 25)
            let path = directory.path + "/\(device).conf"  // wg-quick takes the interface name from the file name
            try file.render().write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            let strip = try runCommand("/usr/bin/wg-quick", ["strip", path])
            try #require(strip.status == 0, "wg-quick strip: \(strip.stderr)")
            #expect(!strip.stdout.contains("Address") && !strip.stdout.contains("DNS"), "wg-quick keeps its own keys")
            let stripped = directory.path + "/stripped.conf"
            try strip.stdout.write(toFile: stripped, atomically: true, encoding: .utf8)
            _ = try ns.spawn(["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", device], logFile: directory.path + "/wg.log")
            var up = false
            for _ in 0..<50 where !up {
                up = (try? ns.ip("link", "show", device))?.status == 0
                if !up { usleep(100_000) }
            }
            try #require(up, "wireguard-go made no \(device)")
            let set = try ns.run(["wg", "setconf", device, stripped])
            #expect(set.status == 0, "wg setconf: \(set.stderr)")
            let shown = try ns.run(["wg", "showconf", device]).stdout
            #expect(shown.contains("PublicKey = \(WgQuickFileTests.server.base64)"))
            #expect(shown.contains("PresharedKey = \(psk.withUnsafeBytes { Base64.encode($0) })"))
            #expect(shown.contains("Endpoint = 10.71.0.1:51820"))
            #expect(shown.contains("10.9.0.0/24") && shown.contains("192.168.50.0/24"))
            #expect(shown.contains("PersistentKeepalive = 25"))
            #expect(shown.contains("PrivateKey = \(file.privateKey.base64)"))
        }
    }
}

// wg(8)'s configuration protocol as `UAPIText` answers it, asserted verbatim for the fixed snapshot the
// status rendering tests share (`StatusFixture`), with fixed keys.

import Crypto
import Engine
import Glibc
import Testing
import Transport

@testable import Control

@Suite struct UAPITextTests {
    /// 0x00, 0x01, … 0x1f: the private key the answers carry.
    static let privateKey = SecretBytes(copying: (0..<32).map { UInt8($0) })

    static func text(_ s: SecretBytes) -> String { s.withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }

    @Test func getAnswersTheInterfaceThenEachPeerAndEndsWithErrnoZero() {
        let answer = UAPIText.get(
            StatusFixture.snapshot, privateKey: Self.privateKey, presharedKey: SecretBytes(copying: [UInt8](repeating: 0x42, count: 32)))
        #expect(
            Self.text(answer) == """
                private_key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
                listen_port=51820
                public_key=c53201039adba14be71f886da1d8dbe9eebded08cb111b75340078999aa9f038
                preshared_key=4242424242424242424242424242424242424242424242424242424242424242
                protocol_version=1
                endpoint=10.100.3.2:40000
                last_handshake_time_sec=1699999937
                last_handshake_time_nsec=0
                tx_bytes=3565158
                rx_bytes=1258291
                persistent_keepalive_interval=25
                allowed_ip=10.8.0.2/32
                allowed_ip=fd00:8::2/128
                public_key=4eb32f4a83f88d842563a448cc181bb2c42a637bf12363e2fb2ef594e5965d7d
                preshared_key=4242424242424242424242424242424242424242424242424242424242424242
                protocol_version=1
                last_handshake_time_sec=0
                last_handshake_time_nsec=0
                tx_bytes=0
                rx_bytes=0
                persistent_keepalive_interval=0
                allowed_ip=10.8.0.3/32
                errno=0


                """)
    }

    @Test func aClientGivesItsRoutesAsItsServersAllowedIPsAndAnIPv6EndpointInBrackets() {
        var s = StatusFixture.snapshot
        s.role = "client"
        s.peers = [s.peers[0]]
        s.peers[0].endpoint = Endpoint("[2001:db8::1]:51820")
        let answer = UAPIText.get(
            s, privateKey: nil, presharedKey: SecretBytes(zeros: 32), allowedIPs: { _ in ["0.0.0.0/0", "::/0"] })
        let lines = Self.text(answer).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "listen_port=51820", "no private key given, no private_key line")
        #expect(lines.contains("endpoint=[2001:db8::1]:51820"))
        #expect(lines.contains("preshared_key=" + String(repeating: "0", count: 64)), "no psk: zeros, as WireGuard says it")
        #expect(lines.filter { $0.hasPrefix("allowed_ip=") } == ["allowed_ip=0.0.0.0/0", "allowed_ip=::/0"])
        #expect(lines.suffix(3) == ["errno=0", "", ""])
    }

    @Test func aPeerWithoutAddressesHasNoAllowedIPLinesAndAnEmptySnapshotOnlyTheInterface() {
        var s = StatusFixture.snapshot
        s.peers = []
        #expect(
            Self.text(UAPIText.get(s, privateKey: nil, presharedKey: SecretBytes(zeros: 32)))
                == "listen_port=51820\nerrno=0\n\n")
        var p = StatusFixture.snapshot.peers[1]
        p.tunnelAddress = nil
        #expect(UAPIText.allowedIPs(p).isEmpty)
        #expect(UAPIText.allowedIPs(StatusFixture.snapshot.peers[0]) == ["10.8.0.2/32", "fd00:8::2/128"])
        // Prefixes routed behind the peer are allowed IPs too (site to site).
        var site = StatusFixture.snapshot.peers[0]
        site.routed = ["192.168.50.0/24", "fd99::/64"]
        #expect(UAPIText.allowedIPs(site) == ["10.8.0.2/32", "fd00:8::2/128", "192.168.50.0/24", "fd99::/64"])
    }

    @Test func onlyGetAndSetAreOperationsAndSetIsRefusedWithANegatedEOPNOTSUPP() {
        #expect(UAPIOperation(requestLine: Array("get=1".utf8)) == .get)
        #expect(UAPIOperation(requestLine: Array("set=1".utf8)) == .set)
        for other in ["", "get=2", "get=1 ", "GET=1", "status"] {
            #expect(UAPIOperation(requestLine: Array(other.utf8)) == .unknown, "\(other)")
        }
        #expect(String(decoding: UAPIText.setRefused, as: UTF8.self) == "errno=-95\n\n")
        #expect(EOPNOTSUPP == 95)
    }
}

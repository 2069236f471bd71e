// The text `tunvpn show` and `--metrics` produce, asserted verbatim: the status JSON (`StatusDocument`,
// written by JSONEncoder) of a fixed snapshot and its round trip, the `wg show`-style text with
// wireguard-tools' duration and size wording, and the Prometheus exposition text for a fixed snapshot.

import Engine
import TestSupport
import Testing
import Transport

@testable import Control

/// The fixed snapshot the rendering tests share: a server with one active client and one that never
/// completed a handshake.
enum StatusFixture {
    static let now: UInt64 = 1_700_000_000
    static let clientKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
    static let idleKey = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="

    static var snapshot: EngineSnapshot {
        EngineSnapshot(
            role: "server", publicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", listenPort: 51820,
            device: "tun0",
            suites: ["xchacha20poly1305", "chacha20poly1305"],
            peers: [
                PeerSnapshot(
                    publicKey: clientKey, endpoint: Endpoint("10.100.3.2:40000"),
                    tunnelAddress: IPv4Address("10.8.0.2"), tunnelAddress6: IPv6Address("fd00:8::2"),
                    latestHandshake: now - 63, sessionAge: 63, rxBytes: 1_258_291, txBytes: 3_565_158, rxPackets: 900,
                    txPackets: 2500, persistentKeepalive: 25, suite: "xchacha20poly1305"),
                PeerSnapshot(
                    publicKey: idleKey, endpoint: nil, tunnelAddress: IPv4Address("10.8.0.3"), latestHandshake: nil,
                    sessionAge: nil, rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, persistentKeepalive: nil,
                    suite: nil),
            ],
            counters: [
                ("rx_packets", 900), ("tx_packets", 2500), ("drop.replay", 2), ("drop.rateLimited", 0),
                ("handshakes.completed", 1), ("handshake.failed.wrongServerKey", 3),
                ("rx_packets.ipv4", 800), ("rx_bytes.ipv4", 1_000_000), ("tx_packets.ipv4", 2000),
                ("tx_bytes.ipv4", 3_000_000), ("rx_packets.ipv6", 100), ("rx_bytes.ipv6", 258_291),
                ("tx_packets.ipv6", 500), ("tx_bytes.ipv6", 565_158),
            ])
    }
}

@Suite struct StatusTextTests {
    @Test func theSnapshotIsShownAsWgShowShowsAnInterface() {
        let text = StatusText.render(StatusFixture.snapshot, now: StatusFixture.now)
        #expect(
            text == """
                interface: tun0
                  public key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
                  listening port: 51820
                  role: server
                  suites: xchacha20poly1305, chacha20poly1305
                  protocol: tunvpn
                  ipv4 transfer: 976.56 KiB received (800 packets), 2.86 MiB sent (2000 packets)
                  ipv6 transfer: 252.24 KiB received (100 packets), 551.91 KiB sent (500 packets)

                peer: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
                  endpoint: 10.100.3.2:40000
                  allowed ips: 10.8.0.2/32, fd00:8::2/128
                  suite: xchacha20poly1305
                  latest handshake: 1 minute, 3 seconds ago
                  transfer: 1.20 MiB received, 3.40 MiB sent
                  persistent keepalive: every 25 seconds

                peer: TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
                  allowed ips: 10.8.0.3/32

                """)
    }

    @Test(
        arguments: [
            (0, "Now"), (1, "1 second ago"), (63, "1 minute, 3 seconds ago"), (7260, "2 hours, 1 minute ago"),
            (3600, "1 hour ago"), (86_400 + 1, "1 day, 1 second ago"),
            (
                2 * 365 * 86_400 + 3 * 86_400 + 4 * 3600 + 5 * 60 + 6,
                "2 years, 3 days, 4 hours, 5 minutes, 6 seconds ago"
            ),
        ] as [(UInt64, String)])
    func handshakeAgesAreWordedAsWgWordsThem(age: UInt64, text: String) {
        #expect(StatusText.ago(StatusFixture.now - age, now: StatusFixture.now) == text)
    }

    @Test func aHandshakeInTheFutureSaysTheClockWentBackwards() {
        #expect(
            StatusText.ago(StatusFixture.now + 5, now: StatusFixture.now)
                == "in the future (the system clock went backwards; connection problems may ensue)")
    }

    @Test(
        arguments: [
            (0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"), (1_258_291, "1.20 MiB"),
            (3_565_158, "3.40 MiB"), (5 << 30, "5.00 GiB"), (3 << 40, "3.00 TiB"), (2048 << 40, "2048.00 TiB"),
        ] as [(UInt64, String)])
    func sizesUseBinaryUnitsWithTwoDecimals(bytes: UInt64, text: String) {
        #expect(StatusText.bytes(bytes) == text)
    }

    @Test func theStatusJSONOfTheFixedSnapshotIsExactlyThis() {
        #expect(
            StatusDocument.json(StatusFixture.snapshot)
                == #"{"counters":{"drop.rateLimited":0,"drop.replay":2,"handshake.failed.wrongServerKey":3,"handshakes.completed":1,"rx_bytes.ipv4":1000000,"rx_bytes.ipv6":258291,"rx_packets":900,"rx_packets.ipv4":800,"rx_packets.ipv6":100,"tx_bytes.ipv4":3000000,"tx_bytes.ipv6":565158,"tx_packets":2500,"tx_packets.ipv4":2000,"tx_packets.ipv6":500},"interface":"tun0","listen_port":51820,"peers":[{"endpoint":"10.100.3.2:40000","latest_handshake":1699999937,"name":null,"persistent_keepalive":25,"public_key":"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=","rx_bytes":1258291,"rx_packets":900,"session_age":63,"suite":"xchacha20poly1305","tunnel_address":"10.8.0.2","tunnel_address6":"fd00:8::2","tx_bytes":3565158,"tx_packets":2500},{"endpoint":null,"latest_handshake":null,"name":null,"persistent_keepalive":null,"public_key":"TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=","rx_bytes":0,"rx_packets":0,"session_age":null,"suite":null,"tunnel_address":"10.8.0.3","tunnel_address6":null,"tx_bytes":0,"tx_packets":0}],"protocol":"tunvpn","public_key":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=","role":"server","suites":["xchacha20poly1305","chacha20poly1305"],"tunnel":null}"#
        )
    }

    @Test func theStatusJSONReadsBackIntoTheSameSnapshot() throws {
        let snapshot = StatusFixture.snapshot
        let back = try StatusDocument.snapshot(fromJSON: Array(StatusDocument.json(snapshot).utf8))
        #expect(back.peers == snapshot.peers)
        #expect(back.role == snapshot.role && back.publicKey == snapshot.publicKey && back.device == snapshot.device)
        #expect(back.listenPort == snapshot.listenPort && back.suites == snapshot.suites && back.protocolMode == .tunvpn)
        #expect(
            back.counters.map { "\($0.name)=\($0.value)" }
                == snapshot.counters.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.value)" })
        #expect(StatusText.render(back, now: StatusFixture.now) == StatusText.render(snapshot, now: StatusFixture.now))
    }

    @Test func routedPrefixesAreAllowedIPsInTheTextAndReadBackFromTheJSON() throws {
        var snapshot = StatusFixture.snapshot
        snapshot.peers[1].routed = ["192.168.50.0/24", "fd99::/64"]
        let json = StatusDocument.json(snapshot)
        #expect(json.contains(#""routed":["192.168.50.0/24","fd99::/64"]"#))
        let back = try StatusDocument.snapshot(fromJSON: Array(json.utf8))
        #expect(back.peers == snapshot.peers)
        #expect(StatusText.render(back, now: StatusFixture.now).contains("allowed ips: 10.8.0.3/32, 192.168.50.0/24, fd99::/64"))
        // A prefix that is none is refused, as every other member is.
        let broken = json.replacingOccurrences(of: "192.168.50.0/24", with: "192.168.50.0/99")
        #expect(throws: ControlError.self) { try StatusDocument.snapshot(fromJSON: Array(broken.utf8)) }
    }

    @Test func countsKeepAllSixtyFourBits() throws {
        var snapshot = StatusFixture.snapshot
        snapshot.peers[0].rxBytes = UInt64.max
        let json = StatusDocument.json(snapshot)
        #expect(json.contains(#""rx_bytes":18446744073709551615"#))
        #expect(try StatusDocument.snapshot(fromJSON: Array(json.utf8)).peers[0].rxBytes == UInt64.max)
    }

    @Test(arguments: [
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[]}"#, "status reply: 'peers' is missing"),
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":70000,"suites":[],"peers":[]}"#, "status reply is not valid JSON, or a number in it is out of range"),
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[{"public_key":"p","tunnel_address":null,"latest_handshake":null,"session_age":null,"rx_bytes":0,"tx_bytes":0,"rx_packets":0,"tx_packets":0,"persistent_keepalive":null,"suite":null}]}"#, "status reply: 'endpoint' is missing"),
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[{"public_key":"p","endpoint":"nowhere","tunnel_address":null,"latest_handshake":null,"session_age":null,"rx_bytes":0,"tx_bytes":0,"rx_packets":0,"tx_packets":0,"persistent_keepalive":null,"suite":null}]}"#, "status reply: 'endpoint' is not what it should be"),
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[],"counters":{"rx_packets":-1}}"#, "status reply is not valid JSON, or a number in it is out of range"),
        (#"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[],"counters":{"rx_packets":"x"}}"#, "status reply: 'rx_packets' is not what it should be"),
        (#"[1]"#, "status reply is not a JSON object"),
        (#"{"#, "status reply is not valid JSON, or a number in it is out of range"),
    ])
    func aStatusReplyThatIsNotADocumentIsRefusedNamingTheMember(json: String, message: String) {
        #expect(throws: ControlError.self) { try StatusDocument.snapshot(fromJSON: Array(json.utf8)) }
        do { _ = try StatusDocument.snapshot(fromJSON: Array(json.utf8)) } catch {
            #expect("\(error)" == message, "\(json)")
        }
    }
}

@Suite struct PrometheusTextTests {
    /// Every failure and drop reason has its sample, 0 when the snapshot has none (a stable label set): the
    /// families come from Engine's typed counters, not from the names the snapshot happens to carry.
    @Test func theFixedSnapshotRendersToThisExactText() {
        #expect(
            PrometheusText.render(StatusFixture.snapshot) == """
                # HELP tunvpn_peers Peers known to this instance (a server's clients, a client's server).
                # TYPE tunvpn_peers gauge
                tunvpn_peers 2
                # HELP tunvpn_protocol_info The wire protocol this instance speaks, tunvpn or wireguard (always 1).
                # TYPE tunvpn_protocol_info gauge
                tunvpn_protocol_info{protocol="tunvpn"} 1
                # HELP tunvpn_handshakes_total Handshakes completed.
                # TYPE tunvpn_handshakes_total counter
                tunvpn_handshakes_total 1
                # HELP tunvpn_handshake_failures_total Handshakes refused or failed, by reason.
                # TYPE tunvpn_handshake_failures_total counter
                tunvpn_handshake_failures_total{reason="malformed"} 0
                tunvpn_handshake_failures_total{reason="wrongServerKey"} 3
                tunvpn_handshake_failures_total{reason="corrupted"} 0
                tunvpn_handshake_failures_total{reason="unknownClientKey"} 0
                tunvpn_handshake_failures_total{reason="replayedInitiation"} 0
                tunvpn_handshake_failures_total{reason="noCommonSuite"} 0
                tunvpn_handshake_failures_total{reason="unexpectedResponse"} 0
                tunvpn_handshake_failures_total{reason="invalidPublicKey"} 0
                tunvpn_handshake_failures_total{reason="timeout"} 0
                tunvpn_handshake_failures_total{reason="addressPoolExhausted"} 0
                tunvpn_handshake_failures_total{reason="cookieRequired"} 0
                tunvpn_handshake_failures_total{reason="rateLimited"} 0
                tunvpn_handshake_failures_total{reason="unsafeAssignment"} 0
                tunvpn_handshake_failures_total{reason="unsupportedVersion"} 0
                tunvpn_handshake_failures_total{reason="invalidDNSSettings"} 0
                # HELP tunvpn_dropped_frames_total Frames and packets dropped, by reason.
                # TYPE tunvpn_dropped_frames_total counter
                tunvpn_dropped_frames_total{reason="malformed"} 0
                tunvpn_dropped_frames_total{reason="oversized"} 0
                tunvpn_dropped_frames_total{reason="unknownSession"} 0
                tunvpn_dropped_frames_total{reason="authentication"} 0
                tunvpn_dropped_frames_total{reason="replay"} 2
                tunvpn_dropped_frames_total{reason="expired"} 0
                tunvpn_dropped_frames_total{reason="sourceNotAllowed"} 0
                tunvpn_dropped_frames_total{reason="notIP"} 0
                tunvpn_dropped_frames_total{reason="noRoute"} 0
                tunvpn_dropped_frames_total{reason="noSession"} 0
                tunvpn_dropped_frames_total{reason="queueFull"} 0
                tunvpn_dropped_frames_total{reason="handshake"} 0
                tunvpn_dropped_frames_total{reason="rateLimited"} 0
                tunvpn_dropped_frames_total{reason="ipv6Unreachable"} 0
                # HELP tunvpn_control_send_failures_total Sends of handshake messages, cookie replies and keepalives that failed.
                # TYPE tunvpn_control_send_failures_total counter
                tunvpn_control_send_failures_total 0
                # HELP tunvpn_receive_packets_total Packets received through the tunnel and delivered, by IP family.
                # TYPE tunvpn_receive_packets_total counter
                tunvpn_receive_packets_total{family="ipv4"} 800
                tunvpn_receive_packets_total{family="ipv6"} 100
                # HELP tunvpn_transmit_packets_total Packets sent through the tunnel, by IP family.
                # TYPE tunvpn_transmit_packets_total counter
                tunvpn_transmit_packets_total{family="ipv4"} 2000
                tunvpn_transmit_packets_total{family="ipv6"} 500
                # HELP tunvpn_receive_bytes_total Bytes of packets received through the tunnel, by IP family.
                # TYPE tunvpn_receive_bytes_total counter
                tunvpn_receive_bytes_total{family="ipv4"} 1000000
                tunvpn_receive_bytes_total{family="ipv6"} 258291
                # HELP tunvpn_transmit_bytes_total Bytes of packets sent through the tunnel, by IP family.
                # TYPE tunvpn_transmit_bytes_total counter
                tunvpn_transmit_bytes_total{family="ipv4"} 3000000
                tunvpn_transmit_bytes_total{family="ipv6"} 565158
                # HELP tunvpn_peer_tunnel_address_info A tunnel address of the peer (always 1), one sample per IP family.
                # TYPE tunvpn_peer_tunnel_address_info gauge
                tunvpn_peer_tunnel_address_info{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",family="ipv4",address="10.8.0.2"} 1
                tunvpn_peer_tunnel_address_info{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",family="ipv6",address="fd00:8::2"} 1
                tunvpn_peer_tunnel_address_info{peer="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",family="ipv4",address="10.8.0.3"} 1
                # HELP tunvpn_peer_receive_bytes_total Bytes received from the peer through the tunnel.
                # TYPE tunvpn_peer_receive_bytes_total counter
                tunvpn_peer_receive_bytes_total{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 1258291
                tunvpn_peer_receive_bytes_total{peer="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="} 0
                # HELP tunvpn_peer_transmit_bytes_total Bytes sent to the peer through the tunnel.
                # TYPE tunvpn_peer_transmit_bytes_total counter
                tunvpn_peer_transmit_bytes_total{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 3565158
                tunvpn_peer_transmit_bytes_total{peer="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="} 0
                # HELP tunvpn_peer_receive_packets_total Packets received from the peer through the tunnel.
                # TYPE tunvpn_peer_receive_packets_total counter
                tunvpn_peer_receive_packets_total{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 900
                tunvpn_peer_receive_packets_total{peer="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="} 0
                # HELP tunvpn_peer_transmit_packets_total Packets sent to the peer through the tunnel.
                # TYPE tunvpn_peer_transmit_packets_total counter
                tunvpn_peer_transmit_packets_total{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 2500
                tunvpn_peer_transmit_packets_total{peer="TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="} 0
                # HELP tunvpn_peer_session_age_seconds Age of the session used to send to the peer.
                # TYPE tunvpn_peer_session_age_seconds gauge
                tunvpn_peer_session_age_seconds{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 63
                # HELP tunvpn_peer_latest_handshake_seconds Unix time of the latest handshake with the peer.
                # TYPE tunvpn_peer_latest_handshake_seconds gauge
                tunvpn_peer_latest_handshake_seconds{peer="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="} 1699999937

                """)
    }

    @Test func labelValuesEscapeBackslashQuoteAndNewlineOnly() {
        #expect(PrometheusText.escapeLabelValue(#"a\b"c"# + "\nd\té/+=") == #"a\\b\"c\nd"# + "\té/+=")
        #expect(PrometheusText.labels(["peer": "x\"y", "reason": "a\\b"]) == #"{peer="x\"y",reason="a\\b"}"#)
        #expect(PrometheusText.labels([:]) == "")
    }

    @Test func helpTextEscapesBackslashAndNewlineButNotQuotes() {
        #expect(PrometheusText.escapeHelp("a\\b\n\"c\"") == #"a\\b\n"c""#)
    }
    @Test(arguments: ["127.0.0.1:9586", "127.1.2.3:80"])
    func aLoopbackEndpointIsNotWarnedAbout(text: String) throws {
        #expect(PrometheusText.exposureWarning(boundTo: try #require(Endpoint(text))) == nil)
    }

    @Test(arguments: [
        ("0.0.0.0:9586", "any address of this host"), ("10.8.0.1:9586", "10.8.0.1"),
        ("192.168.1.5:9586", "192.168.1.5"), ("128.0.0.1:9586", "128.0.0.1"),
    ])
    func anyOtherEndpointIsWarnedAboutNamingWhatItExposes(text: String, reach: String) throws {
        #expect(
            PrometheusText.exposureWarning(boundTo: try #require(Endpoint(text)))
                == "metrics at http://\(text)/metrics are not limited to this host: whoever can reach \(reach) "
                + "can read every peer's public key and traffic, without authentication; "
                + "bind --metrics to 127.0.0.1 unless that is intended")
    }
}

@Suite struct CachedMetricsTests {
    @Test func aTightScrapeLoopRendersOnceASecond() {
        let clock = ManualClock(start: 5_000_000_000)
        let renders = Counter()
        let cache = CachedMetrics(now: { clock.now }) {
            renders.add()
            return Array("render \(renders.current)\n".utf8)
        }
        for _ in 0..<100 { #expect(cache.body == Array("render 1\n".utf8)) }
        clock.advance(nanoseconds: 999_999_999)
        #expect(cache.body == Array("render 1\n".utf8), "still within the second")
        clock.advance(nanoseconds: 1)
        #expect(cache.body == Array("render 2\n".utf8), "a second after the first rendering")
        #expect(cache.body == Array("render 2\n".utf8))
        #expect(renders.current == 2)
    }
}

/// A client's own addressing in `show`, `show --json` and the metrics: both addresses, and whether the
/// server forwards IPv6 beyond the tunnel.
@Suite struct ClientTunnelStatusTests {
    static func client(_ tunnel: ClientTunnelSnapshot?) -> EngineSnapshot {
        EngineSnapshot(
            role: "client", publicKey: StatusFixture.clientKey, listenPort: 40000, device: "tun0", suites: [],
            peers: [], counters: [], tunnel: tunnel)
    }

    static let dualStack = ClientTunnelSnapshot(
        address: IPv4Prefix("10.8.0.2/16")!, address6: IPv6Prefix("fd00:8::2/64")!, ipv6Egress: true, ipv6Disabled: false)

    @Test func theClientShowsBothAddressesAndTheServersIPv6Egress() {
        func lines(_ t: ClientTunnelSnapshot?) -> [String] {
            StatusText.render(Self.client(t), now: StatusFixture.now).split(separator: "\n").map(String.init).filter {
                $0.hasPrefix("  address") || $0.hasPrefix("  ipv6") || $0.hasPrefix("  server ipv6")
            }
        }
        #expect(lines(Self.dualStack) == ["  address: 10.8.0.2/16, fd00:8::2/64", "  server ipv6 egress: yes"])
        var noEgress = Self.dualStack
        noEgress.ipv6Egress = false
        #expect(lines(noEgress) == [
            "  address: 10.8.0.2/16, fd00:8::2/64", "  server ipv6 egress: no (only the tunnel's IPv6 prefix is reachable)",
        ])
        var none = Self.dualStack
        none.address6 = nil
        none.ipv6Egress = false
        #expect(lines(none) == ["  address: 10.8.0.2/16", "  ipv6: none from the server"])
        var disabled = Self.dualStack
        disabled.ipv6Disabled = true
        #expect(lines(disabled) == ["  address: 10.8.0.2/16", "  ipv6: off (--no-ipv6)"])
        #expect(lines(nil).isEmpty, "no line before the first handshake")
    }

    @Test func theClientsTunnelIsInTheJSONAndReadsBack() throws {
        let json = StatusDocument.json(Self.client(Self.dualStack))
        #expect(json.contains(#""tunnel":{"address":"10.8.0.2/16","address6":"fd00:8::2/64","dns":null,"ipv6_disabled":false,"ipv6_egress":true}"#))
        #expect(try StatusDocument.snapshot(fromJSON: Array(json.utf8)).tunnel == Self.dualStack)
        var none = Self.dualStack
        none.address6 = nil
        let noneJSON = StatusDocument.json(Self.client(none))
        #expect(noneJSON.contains(#""tunnel":{"address":"10.8.0.2/16","address6":null,"#))
        #expect(try StatusDocument.snapshot(fromJSON: Array(noneJSON.utf8)).tunnel == none)
        // A document from a tunvpn without these members reads as having none.
        let old = #"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[{"public_key":"p","endpoint":null,"tunnel_address":"10.8.0.2","latest_handshake":null,"session_age":null,"rx_bytes":0,"tx_bytes":0,"rx_packets":0,"tx_packets":0,"persistent_keepalive":null,"suite":null}]}"#
        let back = try StatusDocument.snapshot(fromJSON: Array(old.utf8))
        #expect(back.tunnel == nil && back.peers.first?.tunnelAddress6 == nil && back.peers.first?.tunnelAddress == IPv4Address("10.8.0.2"))
        let bad = old.replacing(#""tunnel_address":"10.8.0.2""#, with: #""tunnel_address":null,"tunnel_address6":"10.8.0.2""#)
        #expect(throws: ControlError.self) { try StatusDocument.snapshot(fromJSON: Array(bad.utf8)) }
    }

    @Test func theMetricsSayWhetherTheClientCarriesIPv6BeyondTheTunnel() {
        func gauge(_ t: ClientTunnelSnapshot?) -> [Substring] {
            PrometheusText.render(Self.client(t)).split(separator: "\n").filter { $0.hasPrefix("tunvpn_ipv6_egress") }
        }
        #expect(gauge(Self.dualStack) == ["tunvpn_ipv6_egress 1"])
        var noEgress = Self.dualStack
        noEgress.ipv6Egress = false
        #expect(gauge(noEgress) == ["tunvpn_ipv6_egress 0"])
        var disabled = Self.dualStack
        disabled.ipv6Disabled = true
        #expect(gauge(disabled) == ["tunvpn_ipv6_egress 0"])
        #expect(gauge(nil).isEmpty)
    }
}

/// A client's endpoints in `show`, `show --json` and the metrics (docs/DEPLOYMENT.md, "Client failover").
@Suite struct ClientFailoverStatusTests {
    static let failover = ClientFailoverSnapshot(
        endpoints: [
            .init(text: "vpn1.example.org:51820", address: Endpoint("192.0.2.1:51820")),
            .init(text: "198.51.100.1:51820", address: Endpoint("198.51.100.1:51820")),
            .init(text: "vpn3.example.org:51820", address: nil),
        ],
        active: 1, switches: 3,
        lastSwitch: .init(from: 0, to: 1, reason: "no_response", description: "no handshake response for 15 s"))

    static var client: EngineSnapshot {
        EngineSnapshot(
            role: "client", publicKey: StatusFixture.clientKey, listenPort: 40000, device: "tun0", suites: [], peers: [],
            counters: [], failover: failover)
    }

    @Test func showListsTheEndpointsTheOneInUseAndTheSwitches() {
        let lines = StatusText.render(Self.client, now: StatusFixture.now).split(separator: "\n").filter { $0.contains("endpoint") }
        #expect(lines == [
            "  endpoints: vpn1.example.org:51820 (192.0.2.1:51820), 198.51.100.1:51820 [in use], vpn3.example.org:51820 (unresolved)",
            "  endpoint switches: 3, last from endpoint 1 to 2: no handshake response for 15 s",
        ])
    }

    @Test func theJSONHasThemAndReadsBack() throws {
        let json = StatusDocument.json(Self.client)
        #expect(json.contains(
            #""failover":{"active":1,"endpoints":[{"address":"192.0.2.1:51820","endpoint":"vpn1.example.org:51820"},{"address":"198.51.100.1:51820","endpoint":"198.51.100.1:51820"},{"address":null,"endpoint":"vpn3.example.org:51820"}],"last_switch":{"description":"no handshake response for 15 s","from":0,"reason":"no_response","to":1},"switches":3}"#))
        #expect(try StatusDocument.snapshot(fromJSON: Array(json.utf8)).failover == Self.failover)
        // A client with one endpoint, and a server, have no `failover` member.
        #expect(!StatusDocument.json(StatusFixture.snapshot).contains("failover"))
    }

    @Test func theMetricsCountTheSwitchesAndMarkTheEndpointInUse() {
        let lines = PrometheusText.render(Self.client).split(separator: "\n").filter { $0.hasPrefix("tunvpn_endpoint") }
        #expect(lines == [
            "tunvpn_endpoint_switches_total 3",
            #"tunvpn_endpoint_active{index="1",endpoint="vpn1.example.org:51820"} 0"#,
            #"tunvpn_endpoint_active{index="2",endpoint="198.51.100.1:51820"} 1"#,
            #"tunvpn_endpoint_active{index="3",endpoint="vpn3.example.org:51820"} 0"#,
        ])
        #expect(!PrometheusText.render(StatusFixture.snapshot).contains("tunvpn_endpoint"))
    }
}

/// The instance's wire protocol in `show`, `show --json` and the metrics; a document from a tunvpn without it
/// reads as tunvpn.
@Suite struct ProtocolStatusTests {
    static var wireGuardServer: EngineSnapshot {
        var s = StatusFixture.snapshot
        s.protocolMode = .wireguard
        s.suites = ["chacha20poly1305"]
        return s
    }

    @Test func showJSONAndMetricsNameTheProtocol() throws {
        let s = Self.wireGuardServer
        #expect(StatusText.render(s, now: StatusFixture.now).contains("\n  suites: chacha20poly1305\n  protocol: wireguard\n"))
        let json = StatusDocument.json(s)
        #expect(json.contains(#""protocol":"wireguard""#))
        #expect(try StatusDocument.snapshot(fromJSON: Array(json.utf8)).protocolMode == .wireguard)
        #expect(PrometheusText.render(s).contains("\ntunvpn_protocol_info{protocol=\"wireguard\"} 1\n"))
    }

    @Test func aWireGuardClientShowsItsOwnAddressesWithoutTheServersWords() {
        var client = ClientTunnelStatusTests.client(ClientTunnelStatusTests.dualStack)
        client.protocolMode = .wireguard
        let text = StatusText.render(client, now: StatusFixture.now)
        #expect(text.contains("\n  protocol: wireguard\n  address: 10.8.0.2/16, fd00:8::2/64\n"), "\(text)")
        #expect(!text.contains("server ipv6 egress"))
        client.tunnel?.address6 = nil
        #expect(StatusText.render(client, now: StatusFixture.now).contains("\n  ipv6: none (no IPv6 --address)\n"))
    }

    @Test func anOlderDocumentIsTunvpnAndAnUnknownProtocolIsRefused() throws {
        let old = #"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[],"peers":[]}"#
        #expect(try StatusDocument.snapshot(fromJSON: Array(old.utf8)).protocolMode == .tunvpn)
        let unknown = old.replacing(#""peers":[]"#, with: #""peers":[],"protocol":"ipsec""#)
        do {
            _ = try StatusDocument.snapshot(fromJSON: Array(unknown.utf8))
            Issue.record("an unknown protocol was read")
        } catch {
            #expect(error.message == "status reply: 'protocol' is not what it should be")
        }
    }
}

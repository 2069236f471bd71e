// The text `tunvpn show` and `--metrics` produce, asserted verbatim: the JSON writer and reader, the
// status JSON round trip, the `wg show`-style text with wireguard-tools' duration and size wording, and
// the Prometheus exposition text for a fixed snapshot.

import Engine
import TestSupport
import Testing
import Transport

@testable import tunvpn

@Suite struct JSONTests {
    @Test func stringsEscapeQuotesBackslashesAndControlCharacters() {
        let value = JSONValue.string("a\"b\\c\nd\re\tf\u{08}g\u{0C}h\u{01}i\u{1F}j/k\u{7F}")
        #expect(value.text == #""a\"b\\c\nd\re\tf\bg\fh\u0001i\u001fj/k\#u{7F}""#)
    }

    @Test func nonASCIIStaysUTF8ButLineAndParagraphSeparatorsAreEscaped() {
        #expect(JSONValue.string("é🔑\u{2028}\u{2029}").text == "\"é🔑\\u2028\\u2029\"")
    }

    @Test func objectsKeepTheirOrderAndNumbersTheirDigits() {
        let value = JSONValue.object([
            JSONMember("z", .integer(UInt64.max)), JSONMember("a", .array([.null, .bool(true), .bool(false)])),
            JSONMember("e", .object([])), JSONMember("s", .optional(nil as String?)),
        ])
        #expect(value.text == #"{"z":18446744073709551615,"a":[null,true,false],"e":{},"s":null}"#)
    }

    @Test func writtenTextReadsBackToTheSameValue() throws {
        let value = JSONValue.object([
            JSONMember("key \"quoted\"", .string("line\nbreak \u{0} nul \\ é 🔑 \u{2028}")),
            JSONMember("n", .integer(UInt64.max)), JSONMember("list", .array([.integer(0), .string(""), .object([])])),
        ])
        #expect(try JSONValue(parsing: value.text) == value)
        #expect(try JSONValue(parsing: value.text)["n"]?.uint64 == UInt64.max)
    }

    @Test func theReaderDecodesEscapesAndSurrogatePairsAndAllowsWhitespace() throws {
        let value = try JSONValue(parsing: " { \"a\" : [ \"\\u00e9\\ud83d\\udd11\\/\\\"\" , -1.5e3 , 0 ] } \n")
        #expect(value == .object([JSONMember("a", .array([.string("é🔑/\""), .number("-1.5e3"), .number("0")]))]))
    }

    @Test(arguments: [
        ("", 0), ("{", 1), ("[1,]", 3), ("{\"a\":1,}", 7), ("01", 1), ("1.", 2), ("-", 1), ("\"\\ud800\"", 7),
        ("\"\\udc00\"", 7), ("\"a\nb\"", 2), ("\"\\x\"", 2), ("nul", 3), ("[] []", 3), ("{\"a\" 1}", 5),
    ])
    func malformedTextIsRefusedWithTheByteItFailedAt(text: String, offset: Int) {
        #expect(throws: JSONError.self) { try JSONValue(parsing: text) }
        do { _ = try JSONValue(parsing: text) } catch { #expect(error.offset == offset, "\(text): \(error)") }
    }

    @Test func nestingDeeperThanTheLimitIsRefused() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONError(message: "nested deeper than 64 levels", offset: 64)) { try JSONValue(parsing: deep) }
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSONValue(parsing: fine) }
    }
}

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
                    tunnelAddress: IPv4Address("10.8.0.2"),
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

                peer: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
                  endpoint: 10.100.3.2:40000
                  tunnel address: 10.8.0.2
                  suite: xchacha20poly1305
                  latest handshake: 1 minute, 3 seconds ago
                  transfer: 1.20 MiB received, 3.40 MiB sent
                  persistent keepalive: every 25 seconds

                peer: TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
                  tunnel address: 10.8.0.3

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

    @Test func theStatusJSONReadsBackIntoTheSameSnapshot() throws {
        let snapshot = StatusFixture.snapshot
        let json = StatusJSON.encode(snapshot).text
        #expect(
            json.hasPrefix(
                #"{"interface":"tun0","role":"server","public_key":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=","listen_port":51820,"suites":["xchacha20poly1305","chacha20poly1305"],"peers":[{"public_key":"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=","endpoint":"10.100.3.2:40000","tunnel_address":"10.8.0.2","latest_handshake":1699999937,"session_age":63,"rx_bytes":1258291,"tx_bytes":3565158,"rx_packets":900,"tx_packets":2500,"persistent_keepalive":25,"suite":"xchacha20poly1305"},{"public_key":"TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=","endpoint":null,"tunnel_address":"10.8.0.3","latest_handshake":null,"#
            ))
        #expect(
            json.hasSuffix(
                #""counters":{"rx_packets":900,"tx_packets":2500,"drop.replay":2,"drop.rateLimited":0,"handshakes.completed":1,"handshake.failed.wrongServerKey":3}}"#
            ))
        let back = try StatusJSON.decode(JSONValue(parsing: json))
        #expect(back.peers == snapshot.peers)
        #expect(back.counters.map { "\($0.name)=\($0.value)" } == snapshot.counters.map { "\($0.name)=\($0.value)" })
        #expect(StatusText.render(back, now: StatusFixture.now) == StatusText.render(snapshot, now: StatusFixture.now))
    }

    @Test func aStatusReplyWithoutPeersIsRefusedNamingTheMember() throws {
        let json = try JSONValue(
            parsing: #"{"interface":"tun0","role":"server","public_key":"k","listen_port":1,"suites":[]}"#)
        #expect(throws: CLIError.self) { try StatusJSON.decode(json) }
        do { _ = try StatusJSON.decode(json) } catch {
            #expect("\(error)" == "status reply: 'peers' is missing or not what it should be")
        }
    }
}

@Suite struct PrometheusTextTests {
    @Test func theFixedSnapshotRendersToThisExactText() {
        #expect(
            PrometheusText.render(StatusFixture.snapshot) == """
                # HELP tunvpn_peers Peers known to this instance (a server's clients, a client's server).
                # TYPE tunvpn_peers gauge
                tunvpn_peers 2
                # HELP tunvpn_handshakes_total Handshakes completed.
                # TYPE tunvpn_handshakes_total counter
                tunvpn_handshakes_total 1
                # HELP tunvpn_handshake_failures_total Handshakes refused or failed, by reason.
                # TYPE tunvpn_handshake_failures_total counter
                tunvpn_handshake_failures_total{reason="wrongServerKey"} 3
                # HELP tunvpn_dropped_frames_total Frames and packets dropped, by reason.
                # TYPE tunvpn_dropped_frames_total counter
                tunvpn_dropped_frames_total{reason="replay"} 2
                tunvpn_dropped_frames_total{reason="rateLimited"} 0
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

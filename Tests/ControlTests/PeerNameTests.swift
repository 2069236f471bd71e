// Peers labelled with their allow-list name in `tunvpn show`, `show --json` and the metrics.

import Control
import Engine
import Testing
import Transport

@Suite struct PeerNameTests {
    /// The fixture with its first peer named (an escaped character in it) and its second unnamed.
    static var named: EngineSnapshot {
        var s = StatusFixture.snapshot
        s.peers[0].name = #"lap"top\"#
        return s
    }

    @Test func showPrintsTheNameUnderThePeer() {
        let lines = StatusText.render(Self.named, now: StatusFixture.now).split(separator: "\n").map(String.init)
        let peer = try! #require(lines.firstIndex(of: "peer: \(StatusFixture.clientKey)"))
        #expect(lines[peer + 1] == #"  name: lap"top\"#)
        let idle = try! #require(lines.firstIndex(of: "peer: \(StatusFixture.idleKey)"))
        #expect(!lines[idle + 1].hasPrefix("  name:"))
    }

    @Test func theJSONCarriesTheNameAndReadsItBack() throws {
        let json = StatusDocument.json(Self.named)
        #expect(json.contains(#""name":"lap\"top\\","#))
        #expect(json.contains(#""latest_handshake":null,"name":null,"#))
        let back = try StatusDocument.snapshot(fromJSON: Array(json.utf8))
        #expect(back.peers.map(\.name) == [#"lap"top\"#, ""])
    }

    @Test func theMetricsLabelNamedPeersWithTheEscapedName() {
        let text = PrometheusText.render(Self.named)
        #expect(text.contains(#"tunvpn_peer_receive_bytes_total{peer="\#(StatusFixture.clientKey)",name="lap\"top\\"} 1258291"#))
        #expect(text.contains(#"tunvpn_peer_tunnel_address_info{peer="\#(StatusFixture.clientKey)",name="lap\"top\\",family="ipv4",address="10.8.0.2"} 1"#))
        #expect(text.contains(#"tunvpn_peer_receive_bytes_total{peer="\#(StatusFixture.idleKey)"} 0"#))
    }
}

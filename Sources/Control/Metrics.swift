// `--metrics ADDR:PORT`: an `EngineSnapshot` in the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): per family a `# HELP` and a `# TYPE`
// line, then its samples. Label values escape `\`, `"` and newline; HELP text escapes `\` and newline.
//
// Families: per-peer bytes and packets each way, session age and latest handshake (labelled with the
// peer's public key, and with its allow-list name as `name` when it has one); each peer's tunnel
// addresses (an info family: value 1, the address in a label, one sample per IP family); handshakes
// completed; handshake failures and dropped frames by reason (every reason, zeros included, so rates work
// from the first scrape); packets and bytes through the tunnel by IP family (both families, zeros
// included); a client's IPv6 state; the number of peers; and the wire protocol (an info family).
//
// The endpoint has no authentication and its labels name every peer's public key, so binding it to
// anything but loopback is warned about; and the text is rendered at most once a second, however
// often it is scraped (`CachedMetrics`).

import Engine
import Synchronization
import Transport

/// Renders snapshots as Prometheus text.
public enum PrometheusText {
    /// The Content-Type of the format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition text for `s`, every line ending in a newline.
    public static func render(_ s: EngineSnapshot) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: UInt64)]) {
            out += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
            for sample in samples { out += "\(name)\(sample.labels) \(sample.value)\n" }
        }
        func perPeer(_ value: (PeerSnapshot) -> UInt64?) -> [(labels: String, value: UInt64)] {
            s.peers.compactMap { p in value(p).map { (peerLabels(p), $0) } }
        }
        // The families come from the typed counters (Engine's CounterID), so a renamed or new counter
        // cannot fall out of them unnoticed.
        let counters = s.counterValues
        family(
            "tunvpn_peers", "gauge", "Peers known to this instance (a server's clients, a client's server).",
            [("", UInt64(s.peers.count))])
        family(
            "tunvpn_protocol_info", "gauge", "The wire protocol this instance speaks, tunvpn or wireguard (always 1).",
            [(labels(["protocol": s.protocolMode.rawValue]), 1)])
        family("tunvpn_handshakes_total", "counter", "Handshakes completed.", [("", counters.handshakesCompleted)])
        if let f = s.failover {
            family(
                "tunvpn_endpoint_switches_total", "counter", "Moves of a client between its endpoints (failover and return).",
                [("", f.switches)])
            family(
                "tunvpn_endpoint_active", "gauge", "A client's endpoints in order (index from 1): 1 for the one in use, else 0.",
                f.endpoints.enumerated().map { i, e in
                    (labels(["index": "\(i + 1)", "endpoint": e.text]), i == f.active ? 1 : 0)
                })
        }
        family(
            "tunvpn_handshake_failures_total", "counter", "Handshakes refused or failed, by reason.",
            counters.handshakeFailures.map { (labels(["reason": $0.reason.name]), $0.value) })
        family(
            "tunvpn_dropped_frames_total", "counter", "Frames and packets dropped, by reason.",
            counters.drops.map { (labels(["reason": "\($0.reason)"]), $0.value) })
        family(
            "tunvpn_control_send_failures_total", "counter",
            "Sends of handshake messages, cookie replies and keepalives that failed.", [("", counters.controlSendFailures)])
        func byFamily(_ counter: TrafficCounter) -> [(labels: String, value: UInt64)] {
            IPFamily.allCases.map { (labels(["family": "\($0)"]), counters[.traffic(counter, $0)]) }
        }
        family(
            "tunvpn_receive_packets_total", "counter", "Packets received through the tunnel and delivered, by IP family.",
            byFamily(.rxPackets))
        family(
            "tunvpn_transmit_packets_total", "counter", "Packets sent through the tunnel, by IP family.",
            byFamily(.txPackets))
        family(
            "tunvpn_receive_bytes_total", "counter", "Bytes of packets received through the tunnel, by IP family.",
            byFamily(.rxBytes))
        family(
            "tunvpn_transmit_bytes_total", "counter", "Bytes of packets sent through the tunnel, by IP family.",
            byFamily(.txBytes))
        if let t = s.tunnel {
            family(
                "tunvpn_ipv6_egress", "gauge",
                "1 when the server forwards IPv6 beyond the tunnel and this client carries IPv6, else 0.",
                [("", t.ipv6Egress && t.address6 != nil && !t.ipv6Disabled ? 1 : 0)])
        }
        family(
            "tunvpn_peer_tunnel_address_info", "gauge", "A tunnel address of the peer (always 1), one sample per IP family.",
            s.peers.flatMap { p in
                [
                    p.tunnelAddress.map { (peerLabels(p, [("family", "ipv4"), ("address", "\($0)")]), UInt64(1)) },
                    p.tunnelAddress6.map { (peerLabels(p, [("family", "ipv6"), ("address", "\($0)")]), UInt64(1)) },
                ].compactMap { $0 }
            })
        family(
            "tunvpn_peer_receive_bytes_total", "counter", "Bytes received from the peer through the tunnel.",
            perPeer { $0.rxBytes })
        family(
            "tunvpn_peer_transmit_bytes_total", "counter", "Bytes sent to the peer through the tunnel.",
            perPeer { $0.txBytes })
        family(
            "tunvpn_peer_receive_packets_total", "counter", "Packets received from the peer through the tunnel.",
            perPeer { $0.rxPackets })
        family(
            "tunvpn_peer_transmit_packets_total", "counter", "Packets sent to the peer through the tunnel.",
            perPeer { $0.txPackets })
        family(
            "tunvpn_peer_session_age_seconds", "gauge", "Age of the session used to send to the peer.",
            perPeer { $0.sessionAge })
        family(
            "tunvpn_peer_latest_handshake_seconds", "gauge", "Unix time of the latest handshake with the peer.",
            perPeer { $0.latestHandshake })
        return out
    }

    /// The warning to log when the endpoint is bound to `endpoint`, or nil for a loopback address
    /// (127.0.0.0/8, RFC 1122 §3.2.1.3, or ::1, RFC 4291 §2.5.3), which only this host can reach.
    public static func exposureWarning(boundTo endpoint: Endpoint) -> String? {
        switch endpoint.address.unmapped {
        case .v4(let a) where a.value >> 24 == 127: return nil
        case .v6(let a) where a == IPv6Address(high: 0, low: 1): return nil
        default: break
        }
        let reach = endpoint.address.isUnspecified ? "any address of this host" : "\(endpoint.address)"
        return "metrics at http://\(endpoint)/metrics are not limited to this host: whoever can reach \(reach) "
            + "can read every peer's public key and traffic, without authentication; "
            + "bind --metrics to 127.0.0.1 unless that is intended"
    }

    /// A peer's labels: `peer` (its public key), `name` (its allow-list name, when it has one), then `extra`.
    public static func peerLabels(_ p: PeerSnapshot, _ extra: [(String, String)] = []) -> String {
        let pairs = [("peer", p.publicKey)] + (p.name.isEmpty ? [] : [("name", p.name)]) + extra
        return "{" + pairs.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// `{name="value",…}` in the given order of names, values escaped; "" for no labels.
    public static func labels(_ pairs: KeyValuePairs<String, String>) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.key)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",") + "}"
    }

    /// A label value with `\` → `\\`, `"` → `\"` and newline → `\n`.
    public static func escapeLabelValue(_ value: String) -> String { escape(value, quotes: true) }

    /// HELP text with `\` → `\\` and newline → `\n`.
    public static func escapeHelp(_ text: String) -> String { escape(text, quotes: false) }

    /// `text` with backslashes and newlines escaped, and double quotes too when `quotes` (the exposition
    /// format escapes quotes in label values only).
    static func escape(_ text: String, quotes: Bool) -> String {
        var out = ""
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"" where quotes: out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// The metrics text, rendered at most once per `maximumAge` (a tight scrape loop costs one snapshot and
/// rendering a second, however many scrapers there are).
///
/// Thread safety: `body` may be read from any thread; concurrent callers while the text is
/// stale wait for one rendering and share it.
public final class CachedMetrics: Sendable {
    /// Nanoseconds a rendering is served for.
    public let maximumAge: UInt64
    private let now: @Sendable () -> UInt64
    private let render: @Sendable () -> [UInt8]
    private let latest = Mutex<(renderedAt: UInt64, body: [UInt8])?>(nil)

    /// - Parameters:
    ///   - maximumAge: nanoseconds a rendering is served for (1 s unless a test asks otherwise).
    ///   - now: the monotonic clock in nanoseconds.
    ///   - render: makes the text; runs at most once per `maximumAge`, under this cache's own lock.
    public init(
        maximumAge: UInt64 = 1_000_000_000, now: @escaping @Sendable () -> UInt64 = { SystemClock().monotonicNow() },
        render: @escaping @Sendable () -> [UInt8]
    ) {
        self.maximumAge = maximumAge
        self.now = now
        self.render = render
    }

    /// The text rendered less than `maximumAge` ago, or a new rendering if there is none. The clock is
    /// read under the lock, so callers that waited for another's rendering get that one.
    public var body: [UInt8] {
        latest.withLock { latest in
            let time = now()
            if let latest, time >= latest.renderedAt, time - latest.renderedAt < maximumAge { return latest.body }
            let body = render()
            latest = (time, body)
            return body
        }
    }
}

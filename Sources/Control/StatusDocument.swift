// What `tunvpn show` prints and what the status socket carries: an `EngineSnapshot` as JSON (`Codable`, written
// by Foundation's `JSONEncoder` with sorted keys and read back by `JSONDecoder`), and as text in the manner
// of `wg show`, with wireguard-tools' wording for durations ("1 minute, 3 seconds ago", "Now") and sizes
// ("1.20 MiB"), as in its src/show.c (`pretty_time`, `ago`, `bytes`).

import Engine
import FoundationEssentials
import Transport

/// The status JSON: one object per instance, keys sorted.
///
/// ```
/// {"counters":{"drop.replay":…,"rx_packets":…,…},"interface":"tun0","listen_port":51820,
///  "peers":[{"endpoint":"10.100.3.2:40000","latest_handshake":1700000000,"persistent_keepalive":25,
///            "public_key":"…","rx_bytes":…,"rx_packets":…,"session_age":63,"suite":"…",
///            "tunnel_address":"10.8.0.2","tunnel_address6":"fd00:8::2","tx_bytes":…,"tx_packets":…}],
///  "protocol":"tunvpn","public_key":"…","role":"server","suites":["…"],"tunnel":null}
/// ```
/// A peer's `name` is its allow-list name (`AllowedClient.name`), null when it has none.
/// `latest_handshake` is Unix time in seconds; `session_age` and `persistent_keepalive` are seconds. Absent
/// values (no endpoint yet, no handshake, keepalive off, no IPv6 address) are `null`, never left out. A
/// client's `tunnel` is its own addressing once up: `{"address":"10.8.0.2/16","address6":"fd00:8::2/64",
/// "ipv6_disabled":false,"ipv6_egress":true}` (`address6` null when the server gave no IPv6). Documents
/// from an older tunvpn without `tunnel` or `tunnel_address6` are read as if they were null.
public struct StatusDocument: Codable, Equatable, Sendable {
    public var interface: String
    public var role: String
    public var publicKey: String
    public var listenPort: UInt16
    public var suites: [String]
    public var peers: [PeerStatus]
    /// Counter name → value, as in the `stats:` line.
    public var counters: [String: UInt64]
    /// A client's own addressing; nil on a server and before the client's first handshake.
    public var tunnel: TunnelStatus?
    /// A client's endpoints when it has more than one (`failover`, left out otherwise):
    /// `{"active":1,"endpoints":[{"address":"192.0.2.1:51820","endpoint":"vpn1.example.org:51820"},…],
    /// "last_switch":{"description":"no handshake response for 15 s","from":0,"reason":"no_response","to":1},
    /// "switches":1}` (`active`, `from` and `to` index `endpoints`; `address` and `last_switch` may be null).
    public var failover: FailoverStatus?
    /// The wire protocol, `tunvpn` or `wireguard` (`--protocol`); documents from an older tunvpn without it
    /// are read as `tunvpn`.
    public var protocolName: String

    enum CodingKeys: String, CodingKey {
        case interface, role, suites, peers, counters, tunnel, failover
        case protocolName = "protocol"
        case publicKey = "public_key"
        case listenPort = "listen_port"
    }

    /// The document for `s`.
    public init(_ s: EngineSnapshot) {
        interface = s.device
        role = s.role
        publicKey = s.publicKey
        listenPort = s.listenPort
        suites = s.suites
        peers = s.peers.map(PeerStatus.init)
        counters = Dictionary(s.counters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        tunnel = s.tunnel.map(TunnelStatus.init)
        failover = s.failover.map(FailoverStatus.init)
        protocolName = s.protocolMode.rawValue
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        interface = try c.decode(String.self, forKey: .interface)
        role = try c.decode(String.self, forKey: .role)
        publicKey = try c.decode(String.self, forKey: .publicKey)
        listenPort = try c.decode(UInt16.self, forKey: .listenPort)
        suites = try c.decode([String].self, forKey: .suites)
        peers = try c.decode([PeerStatus].self, forKey: .peers)
        counters = try c.decodeIfPresent([String: UInt64].self, forKey: .counters) ?? [:]
        tunnel = try c.decodeIfPresent(TunnelStatus.self, forKey: .tunnel)
        failover = try c.decodeIfPresent(FailoverStatus.self, forKey: .failover)
        protocolName = try c.decodeIfPresent(String.self, forKey: .protocolName) ?? ProtocolMode.tunvpn.rawValue
    }

    /// Writes a server's `tunnel` as `null` (the synthesized encoder would leave it out).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(interface, forKey: .interface)
        try c.encode(role, forKey: .role)
        try c.encode(publicKey, forKey: .publicKey)
        try c.encode(listenPort, forKey: .listenPort)
        try c.encode(suites, forKey: .suites)
        try c.encode(peers, forKey: .peers)
        try c.encode(counters, forKey: .counters)
        try c.encode(tunnel, forKey: .tunnel)
        try c.encodeIfPresent(failover, forKey: .failover)
        try c.encode(protocolName, forKey: .protocolName)
    }

    /// The snapshot the document describes, counters in name order.
    ///
    /// - Throws: `ControlError` for an endpoint or tunnel address that is not one.
    public func snapshot() throws(ControlError) -> EngineSnapshot {
        guard let mode = ProtocolMode(rawValue: protocolName) else { throw ControlError("status reply: 'protocol' is not what it should be") }
        return EngineSnapshot(
            role: role, publicKey: publicKey, listenPort: listenPort, device: interface, suites: suites,
            peers: try peers.map { p throws(ControlError) in try p.snapshot() },
            counters: counters.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) },
            tunnel: try tunnel?.snapshot(), failover: try failover?.snapshot(), protocolMode: mode)
    }

    /// The JSON text of `s`: one line, no trailing newline.
    public static func json(_ s: EngineSnapshot) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(StatusDocument(s)) else {
            preconditionFailure("a status document holds only strings, integers, arrays and objects")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads a snapshot back from `json`'s text.
    ///
    /// - Throws: `ControlError` naming the first member that is missing or of the wrong kind.
    public static func snapshot(fromJSON bytes: [UInt8]) throws(ControlError) -> EngineSnapshot {
        let document: StatusDocument
        do { document = try JSONDecoder().decode(StatusDocument.self, from: Data(bytes)) } catch let error as DecodingError {
            throw ControlError(describe(error))
        } catch {
            throw ControlError("status reply is not JSON: \(error)")
        }
        return try document.snapshot()
    }

    /// One line for a decoding failure, naming the member.
    static func describe(_ error: DecodingError) -> String {
        func name(_ path: [any CodingKey]) -> String { path.last?.stringValue ?? "" }
        switch error {
        case .keyNotFound(let key, _):
            return "status reply: '\(key.stringValue)' is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return context.codingPath.isEmpty
                ? "status reply is not a JSON object" : "status reply: '\(name(context.codingPath))' is not what it should be"
        case .dataCorrupted(let context):
            // JSONDecoder reports a number out of its type's range this way too, without a path.
            return context.codingPath.isEmpty
                ? "status reply is not valid JSON, or a number in it is out of range"
                : "status reply: '\(name(context.codingPath))' is not what it should be"
        @unknown default:
            return "status reply: \(error)"
        }
    }
}

/// A client's own addressing in the status JSON.
public struct TunnelStatus: Codable, Equatable, Sendable {
    /// "10.8.0.2/16"
    public var address: String
    /// "fd00:8::2/64", or nil when the server gave no IPv6.
    public var address6: String?
    public var ipv6Egress: Bool
    public var ipv6Disabled: Bool
    /// The DNS settings in force, or nil when the client applies none (absent from an older tunvpn's
    /// document, read as nil).
    public var dns: DNSStatusDocument?

    enum CodingKeys: String, CodingKey {
        case address, address6, dns
        case ipv6Egress = "ipv6_egress"
        case ipv6Disabled = "ipv6_disabled"
    }

    public init(_ t: ClientTunnelSnapshot) {
        address = "\(t.address)"
        address6 = t.address6.map { "\($0)" }
        ipv6Egress = t.ipv6Egress
        ipv6Disabled = t.ipv6Disabled
        dns = t.dns.map { DNSStatusDocument(method: $0.method, resolvers: $0.resolvers, search: $0.search) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.decode(String.self, forKey: .address)
        address6 = try c.decode(String?.self, forKey: .address6)
        ipv6Egress = try c.decode(Bool.self, forKey: .ipv6Egress)
        ipv6Disabled = try c.decode(Bool.self, forKey: .ipv6Disabled)
        dns = try c.decodeIfPresent(DNSStatusDocument.self, forKey: .dns)
    }

    /// Writes a missing IPv6 address as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(address, forKey: .address)
        try c.encode(address6, forKey: .address6)
        try c.encode(ipv6Egress, forKey: .ipv6Egress)
        try c.encode(ipv6Disabled, forKey: .ipv6Disabled)
        try c.encode(dns, forKey: .dns)
    }

    func snapshot() throws(ControlError) -> ClientTunnelSnapshot {
        guard let a = IPv4Prefix(address) else { throw ControlError("status reply: 'address' is not what it should be") }
        var a6: IPv6Prefix? = nil
        if let address6 {
            guard let parsed = IPv6Prefix(address6) else { throw ControlError("status reply: 'address6' is not what it should be") }
            a6 = parsed
        }
        return ClientTunnelSnapshot(
            address: a, address6: a6, ipv6Egress: ipv6Egress, ipv6Disabled: ipv6Disabled,
            dns: dns.map { ClientDNSSnapshot(method: $0.method, resolvers: $0.resolvers, search: $0.search) })
    }
}

/// A client's endpoints in the status JSON (see `StatusDocument.failover`).
public struct FailoverStatus: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var endpoint: String
        public var address: String?

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            endpoint = try c.decode(String.self, forKey: .endpoint)
            address = try c.decode(String?.self, forKey: .address)
        }

        init(endpoint: String, address: String?) {
            self.endpoint = endpoint
            self.address = address
        }

        /// Writes a missing address as `null`.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(endpoint, forKey: .endpoint)
            try c.encode(address, forKey: .address)
        }

        enum CodingKeys: String, CodingKey { case endpoint, address }
    }
    public struct Switch: Codable, Equatable, Sendable {
        public var from: Int
        public var to: Int
        public var reason: String
        public var description: String
    }
    public var endpoints: [Entry]
    public var active: Int
    public var switches: UInt64
    public var lastSwitch: Switch?

    enum CodingKeys: String, CodingKey {
        case endpoints, active, switches
        case lastSwitch = "last_switch"
    }

    init(_ f: ClientFailoverSnapshot) {
        endpoints = f.endpoints.map { Entry(endpoint: $0.text, address: $0.address.map { "\($0)" }) }
        active = f.active
        switches = f.switches
        lastSwitch = f.lastSwitch.map { Switch(from: $0.from, to: $0.to, reason: $0.reason, description: $0.description) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        endpoints = try c.decode([Entry].self, forKey: .endpoints)
        active = try c.decode(Int.self, forKey: .active)
        switches = try c.decode(UInt64.self, forKey: .switches)
        lastSwitch = try c.decode(Switch?.self, forKey: .lastSwitch)
    }

    /// Writes no last switch as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(endpoints, forKey: .endpoints)
        try c.encode(active, forKey: .active)
        try c.encode(switches, forKey: .switches)
        try c.encode(lastSwitch, forKey: .lastSwitch)
    }

    func snapshot() throws(ControlError) -> ClientFailoverSnapshot {
        var entries: [ClientFailoverSnapshot.EndpointEntry] = []
        for e in endpoints {
            var address: Endpoint? = nil
            if let text = e.address {
                guard let parsed = Endpoint(text) else { throw ControlError("status reply: 'address' is not what it should be") }
                address = parsed
            }
            entries.append(ClientFailoverSnapshot.EndpointEntry(text: e.endpoint, address: address))
        }
        guard entries.indices.contains(active) else { throw ControlError("status reply: 'active' is not what it should be") }
        return ClientFailoverSnapshot(
            endpoints: entries, active: active, switches: switches,
            lastSwitch: lastSwitch.map {
                ClientFailoverSnapshot.Switch(from: $0.from, to: $0.to, reason: $0.reason, description: $0.description)
            })
    }
}

/// A client's DNS settings in the status JSON: `{"method":"resolv.conf","resolvers":["10.8.0.1"],"search":["corp.example"]}`.
public struct DNSStatusDocument: Codable, Equatable, Sendable {
    public var method: String
    public var resolvers: [String]
    public var search: [String]
}

/// One peer in the status JSON.
public struct PeerStatus: Codable, Equatable, Sendable {
    public var publicKey: String
    public var endpoint: String?
    public var tunnelAddress: String?
    /// The peer's IPv6 tunnel address, nil if none.
    public var tunnelAddress6: String?
    public var latestHandshake: UInt64?
    public var sessionAge: UInt64?
    public var rxBytes: UInt64
    public var txBytes: UInt64
    public var rxPackets: UInt64
    public var txPackets: UInt64
    public var persistentKeepalive: UInt64?
    public var suite: String?
    /// The peer's allow-list name, empty if none (absent in older documents).
    public var name: String
    /// The prefixes routed behind the peer (absent in older documents: none).
    public var routed: [String]

    enum CodingKeys: String, CodingKey {
        case endpoint, suite, name, routed
        case publicKey = "public_key"
        case tunnelAddress = "tunnel_address"
        case tunnelAddress6 = "tunnel_address6"
        case latestHandshake = "latest_handshake"
        case sessionAge = "session_age"
        case rxBytes = "rx_bytes"
        case txBytes = "tx_bytes"
        case rxPackets = "rx_packets"
        case txPackets = "tx_packets"
        case persistentKeepalive = "persistent_keepalive"
    }

    public init(_ p: PeerSnapshot) {
        publicKey = p.publicKey
        endpoint = p.endpoint.map { "\($0)" }
        tunnelAddress = p.tunnelAddress.map { "\($0)" }
        tunnelAddress6 = p.tunnelAddress6.map { "\($0)" }
        latestHandshake = p.latestHandshake
        sessionAge = p.sessionAge
        rxBytes = p.rxBytes
        txBytes = p.txBytes
        rxPackets = p.rxPackets
        txPackets = p.txPackets
        persistentKeepalive = p.persistentKeepalive
        suite = p.suite
        name = p.name
        routed = p.routed
    }

    /// Every member is required (but `tunnel_address6`, which older documents lack); the optional ones may
    /// be null (`decode(T?.self)` refuses a missing key).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        publicKey = try c.decode(String.self, forKey: .publicKey)
        endpoint = try c.decode(String?.self, forKey: .endpoint)
        tunnelAddress = try c.decode(String?.self, forKey: .tunnelAddress)
        tunnelAddress6 = try c.decodeIfPresent(String.self, forKey: .tunnelAddress6)
        latestHandshake = try c.decode(UInt64?.self, forKey: .latestHandshake)
        sessionAge = try c.decode(UInt64?.self, forKey: .sessionAge)
        rxBytes = try c.decode(UInt64.self, forKey: .rxBytes)
        txBytes = try c.decode(UInt64.self, forKey: .txBytes)
        rxPackets = try c.decode(UInt64.self, forKey: .rxPackets)
        txPackets = try c.decode(UInt64.self, forKey: .txPackets)
        persistentKeepalive = try c.decode(UInt64?.self, forKey: .persistentKeepalive)
        suite = try c.decode(String?.self, forKey: .suite)
        name = try c.decodeIfPresent(String?.self, forKey: .name).flatMap { $0 } ?? ""
        routed = try c.decodeIfPresent([String].self, forKey: .routed) ?? []
    }

    /// Writes absent values as `null` (the synthesized encoder would leave them out).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(publicKey, forKey: .publicKey)
        try c.encode(endpoint, forKey: .endpoint)
        try c.encode(tunnelAddress, forKey: .tunnelAddress)
        try c.encode(tunnelAddress6, forKey: .tunnelAddress6)
        try c.encode(latestHandshake, forKey: .latestHandshake)
        try c.encode(sessionAge, forKey: .sessionAge)
        try c.encode(rxBytes, forKey: .rxBytes)
        try c.encode(txBytes, forKey: .txBytes)
        try c.encode(rxPackets, forKey: .rxPackets)
        try c.encode(txPackets, forKey: .txPackets)
        try c.encode(persistentKeepalive, forKey: .persistentKeepalive)
        try c.encode(suite, forKey: .suite)
        try c.encode(name.isEmpty ? nil : name, forKey: .name)
        if !routed.isEmpty { try c.encode(routed, forKey: .routed) }
    }

    func snapshot() throws(ControlError) -> PeerSnapshot {
        var e: Endpoint? = nil
        if let endpoint {
            guard let parsed = Endpoint(endpoint) else { throw ControlError("status reply: 'endpoint' is not what it should be") }
            e = parsed
        }
        var a: IPv4Address? = nil
        if let tunnelAddress {
            guard let parsed = IPv4Address(tunnelAddress) else {
                throw ControlError("status reply: 'tunnel_address' is not what it should be")
            }
            a = parsed
        }
        var a6: IPv6Address? = nil
        if let tunnelAddress6 {
            guard let parsed = IPv6Address(tunnelAddress6) else {
                throw ControlError("status reply: 'tunnel_address6' is not what it should be")
            }
            a6 = parsed
        }
        for r in routed where IPPrefix(r) == nil { throw ControlError("status reply: 'routed' holds '\(r)', which is no prefix") }
        var peer = PeerSnapshot(
            publicKey: publicKey, endpoint: e, tunnelAddress: a, tunnelAddress6: a6, latestHandshake: latestHandshake,
            sessionAge: sessionAge, rxBytes: rxBytes, txBytes: txBytes, rxPackets: rxPackets, txPackets: txPackets,
            persistentKeepalive: persistentKeepalive, suite: suite, name: name)
        peer.routed = routed
        return peer
    }
}

/// `wg show`-style text.
public enum StatusText {
    /// The interface block and one block per peer, separated by blank lines, ending in a newline.
    ///
    /// - Parameter now: wall-clock seconds (CLOCK_REALTIME) to measure handshake ages against.
    public static func render(_ s: EngineSnapshot, now: UInt64) -> String {
        var lines = [
            "interface: \(s.device)",
            "  public key: \(s.publicKey)",
            "  listening port: \(s.listenPort)",
            "  role: \(s.role)",
        ]
        if !s.suites.isEmpty { lines.append("  suites: \(s.suites.joined(separator: ", "))") }
        lines.append("  protocol: \(s.protocolMode.rawValue)")
        if let t = s.tunnel {
            if t.ipv6Disabled {
                lines.append("  address: \(t.address)")
                lines.append("  ipv6: off (--no-ipv6)")
            } else if let a6 = t.address6 {
                lines.append("  address: \(t.address), \(a6)")
                // In WireGuard mode the addresses are the client's own and the peer's AllowedIPs decide.
                if s.protocolMode == .tunvpn {
                    lines.append("  server ipv6 egress: \(t.ipv6Egress ? "yes" : "no (only the tunnel's IPv6 prefix is reachable)")")
                }
            } else {
                lines.append("  address: \(t.address)")
                lines.append(s.protocolMode == .tunvpn ? "  ipv6: none from the server" : "  ipv6: none (no IPv6 --address)")
            }
            if let d = t.dns {
                let resolvers = d.resolvers.isEmpty ? "no resolvers" : "resolvers " + d.resolvers.joined(separator: " ")
                lines.append("  dns: \(resolvers)\(d.search.isEmpty ? "" : ", search " + d.search.joined(separator: " ")) (\(d.method))")
            }
        }
        if let f = s.failover {
            let list = f.endpoints.enumerated().map { i, e in
                let shown = e.address.map { a in "\(a)" == e.text ? e.text : "\(e.text) (\(a))" } ?? "\(e.text) (unresolved)"
                return shown + (i == f.active ? " [in use]" : "")
            }
            lines.append("  endpoints: \(list.joined(separator: ", "))")
            let last = f.lastSwitch.map { ", last from endpoint \($0.from + 1) to \($0.to + 1): \($0.description)" } ?? ""
            lines.append("  endpoint switches: \(f.switches)\(last)")
        }
        let values = s.counterValues
        for family in IPFamily.allCases {
            let (rxp, txp) = (values[.traffic(.rxPackets, family)], values[.traffic(.txPackets, family)])
            guard rxp != 0 || txp != 0 else { continue }
            lines.append(
                "  \(family) transfer: \(bytes(values[.traffic(.rxBytes, family)])) received (\(rxp) packets), "
                    + "\(bytes(values[.traffic(.txBytes, family)])) sent (\(txp) packets)")
        }
        for p in s.peers {
            lines.append("")
            lines.append("peer: \(p.publicKey)")
            if !p.name.isEmpty { lines.append("  name: \(p.name)") }
            if let e = p.endpoint { lines.append("  endpoint: \(e)") }
            let allowed = [p.tunnelAddress.map { "\($0)/32" }, p.tunnelAddress6.map { "\($0)/128" }].compactMap { $0 } + p.routed
            if !allowed.isEmpty { lines.append("  allowed ips: \(allowed.joined(separator: ", "))") }
            if let suite = p.suite { lines.append("  suite: \(suite)") }
            if let h = p.latestHandshake { lines.append("  latest handshake: \(ago(h, now: now))") }
            if p.rxBytes != 0 || p.txBytes != 0 {
                lines.append("  transfer: \(bytes(p.rxBytes)) received, \(bytes(p.txBytes)) sent")
            }
            if let k = p.persistentKeepalive, k > 0 { lines.append("  persistent keepalive: every \(duration(k))") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// How long ago wall-clock second `then` was: "Now", "1 minute, 3 seconds ago", or a warning if
    /// `then` is in the future (wg's `ago`).
    public static func ago(_ then: UInt64, now: UInt64) -> String {
        if then == now { return "Now" }
        if then > now { return "in the future (the system clock went backwards; connection problems may ensue)" }
        return duration(now - then) + " ago"
    }

    /// Years, days, hours, minutes and seconds, leaving out zero parts: "2 hours, 1 minute" (wg's
    /// `pretty_time`; a year is 365 days).
    public static func duration(_ seconds: UInt64) -> String {
        let units: [(UInt64, String)] = [
            (365 * 86_400, "year"), (86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second"),
        ]
        var left = seconds
        var parts: [String] = []
        for (size, name) in units {
            let n = left / size
            left %= size
            if n > 0 { parts.append("\(n) \(name)\(n == 1 ? "" : "s")") }
        }
        return parts.isEmpty ? "0 seconds" : parts.joined(separator: ", ")
    }

    /// A byte count in binary units with two decimals: "512 B", "1.50 KiB", "3.40 MiB" (wg's `bytes`).
    public static func bytes(_ n: UInt64) -> String {
        let units: [(String, Double)] = [("KiB", 0x1p10), ("MiB", 0x1p20), ("GiB", 0x1p30), ("TiB", 0x1p40)]
        if n < 1024 { return "\(n) B" }
        var chosen = units[units.count - 1]
        for unit in units where Double(n) < unit.1 * 1024 {
            chosen = unit
            break
        }
        let hundredths = UInt64((Double(n) / chosen.1 * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) \(chosen.0)"
    }
}

// What `tunvpn show` prints and what the status socket carries: an `EngineSnapshot` as JSON (and read
// back), and as text in the manner of `wg show`, with wireguard-tools' wording for durations ("1 minute,
// 3 seconds ago", "Now") and sizes ("1.20 MiB"), as in its src/show.c (`pretty_time`, `ago`, `bytes`).

import Engine
import Transport

/// The status JSON: one object per instance.
///
/// ```
/// {"interface":"tun0","role":"server","public_key":"…","listen_port":51820,"suites":["…"],
///  "peers":[{"public_key":"…","endpoint":"10.100.3.2:40000","tunnel_address":"10.8.0.2",
///            "latest_handshake":1700000000,"session_age":63,"rx_bytes":…,"tx_bytes":…,
///            "rx_packets":…,"tx_packets":…,"persistent_keepalive":25,"suite":"…"}],
///  "counters":{"rx_packets":…,"drop.replay":…,…}}
/// ```
/// `latest_handshake` is Unix time in seconds; `session_age` and `persistent_keepalive` are seconds. Absent
/// values (no endpoint yet, no handshake, keepalive off) are `null`.
enum StatusJSON {
    static func encode(_ s: EngineSnapshot) -> JSONValue {
        .object([
            JSONMember("interface", .string(s.device)),
            JSONMember("role", .string(s.role)),
            JSONMember("public_key", .string(s.publicKey)),
            JSONMember("listen_port", .integer(s.listenPort)),
            JSONMember("suites", .array(s.suites.map { .string($0) })),
            JSONMember("peers", .array(s.peers.map(encode))),
            JSONMember("counters", .object(s.counters.map { JSONMember($0.name, .integer($0.value)) })),
        ])
    }

    static func encode(_ p: PeerSnapshot) -> JSONValue {
        .object([
            JSONMember("public_key", .string(p.publicKey)),
            JSONMember("endpoint", .optional(p.endpoint.map { "\($0)" })),
            JSONMember("tunnel_address", .optional(p.tunnelAddress.map { "\($0)" })),
            JSONMember("latest_handshake", .optional(p.latestHandshake)),
            JSONMember("session_age", .optional(p.sessionAge)),
            JSONMember("rx_bytes", .integer(p.rxBytes)),
            JSONMember("tx_bytes", .integer(p.txBytes)),
            JSONMember("rx_packets", .integer(p.rxPackets)),
            JSONMember("tx_packets", .integer(p.txPackets)),
            JSONMember("persistent_keepalive", .optional(p.persistentKeepalive)),
            JSONMember("suite", .optional(p.suite)),
        ])
    }

    /// Reads a snapshot back from `encode`'s JSON.
    ///
    /// - Throws: `CLIError` naming the first member that is missing or of the wrong kind.
    static func decode(_ value: JSONValue) throws -> EngineSnapshot {
        func field<T>(_ object: JSONValue, _ key: String, _ read: (JSONValue) -> T?) throws -> T {
            guard let member = object[key], let result = read(member) else {
                throw CLIError("status reply: '\(key)' is missing or not what it should be")
            }
            return result
        }
        /// A member that may be null: nil for null, else read as `read` says.
        func optionalField<T>(_ object: JSONValue, _ key: String, _ read: (JSONValue) -> T?) throws -> T? {
            guard let member = object[key] else { throw CLIError("status reply: '\(key)' is missing") }
            if member.isNull { return nil }
            guard let result = read(member) else { throw CLIError("status reply: '\(key)' is not what it should be") }
            return result
        }
        guard case .object = value else { throw CLIError("status reply is not a JSON object") }
        let port = try field(value, "listen_port") { $0.uint64.flatMap { UInt16(exactly: $0) } }
        let suites = try field(value, "suites") { $0.array?.compactMap { $0.string } }
        let peers = try field(value, "peers") { $0.array }.map { p throws -> PeerSnapshot in
            PeerSnapshot(
                publicKey: try field(p, "public_key") { $0.string },
                endpoint: try optionalField(p, "endpoint") { $0.string.flatMap { Endpoint($0) } },
                tunnelAddress: try optionalField(p, "tunnel_address") { $0.string.flatMap { IPv4Address($0) } },
                latestHandshake: try optionalField(p, "latest_handshake") { $0.uint64 },
                sessionAge: try optionalField(p, "session_age") { $0.uint64 },
                rxBytes: try field(p, "rx_bytes") { $0.uint64 }, txBytes: try field(p, "tx_bytes") { $0.uint64 },
                rxPackets: try field(p, "rx_packets") { $0.uint64 },
                txPackets: try field(p, "tx_packets") { $0.uint64 },
                persistentKeepalive: try optionalField(p, "persistent_keepalive") { $0.uint64 },
                suite: try optionalField(p, "suite") { $0.string })
        }
        var counters: [(name: String, value: UInt64)] = []
        if case .object(let members)? = value["counters"] {
            for member in members {
                guard let n = member.value.uint64 else {
                    throw CLIError("status reply: counter '\(member.key)' is not a count")
                }
                counters.append((member.key, n))
            }
        }
        return EngineSnapshot(
            role: try field(value, "role") { $0.string }, publicKey: try field(value, "public_key") { $0.string },
            listenPort: port, device: try field(value, "interface") { $0.string }, suites: suites, peers: peers,
            counters: counters)
    }
}

/// `wg show`-style text.
enum StatusText {
    /// The interface block and one block per peer, separated by blank lines, ending in a newline.
    ///
    /// - Parameter now: wall-clock seconds (CLOCK_REALTIME) to measure handshake ages against.
    static func render(_ s: EngineSnapshot, now: UInt64) -> String {
        var lines = [
            "interface: \(s.device)",
            "  public key: \(s.publicKey)",
            "  listening port: \(s.listenPort)",
            "  role: \(s.role)",
        ]
        if !s.suites.isEmpty { lines.append("  suites: \(s.suites.joined(separator: ", "))") }
        for p in s.peers {
            lines.append("")
            lines.append("peer: \(p.publicKey)")
            if let e = p.endpoint { lines.append("  endpoint: \(e)") }
            if let a = p.tunnelAddress { lines.append("  tunnel address: \(a)") }
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
    static func ago(_ then: UInt64, now: UInt64) -> String {
        if then == now { return "Now" }
        if then > now { return "in the future (the system clock went backwards; connection problems may ensue)" }
        return duration(now - then) + " ago"
    }

    /// Years, days, hours, minutes and seconds, leaving out zero parts: "2 hours, 1 minute" (wg's
    /// `pretty_time`; a year is 365 days).
    static func duration(_ seconds: UInt64) -> String {
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
    static func bytes(_ n: UInt64) -> String {
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

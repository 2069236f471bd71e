// Reading what the demo's helpers wrote: tcpdump's `-nn -X` output, and tunvpn's `stats:` line.

import NamespaceLab

/// One captured packet: tcpdump's summary line, its hex dump lines and the bytes they spell.
struct CapturedPacket {
    /// `12:38:13.119239 IP 172.31.1.2.42295 > 172.31.2.2.51820: UDP, length 116`
    var header: String
    /// `\t0x0000:  4500 0090 …  E...ww@.@.g.....` (without the leading tab)
    var dump: [String] = []
    /// The packet from its IP header on, as tcpdump -X prints it.
    var bytes: [UInt8] = []

    /// True for an ARP packet (`… ARP, Request who-has 172.31.1.1 tell 172.31.1.2, length 28`).
    var isARP: Bool { header.split(separator: " ").dropFirst().first == "ARP," }

    /// True for IPv6 neighbour discovery or a multicast listener report, the link's own housekeeping that
    /// carries no data (`… IP6 fe80::1 > ff02::1:ff00:1: ICMP6, neighbor solicitation, who has …`,
    /// `… IP6 fe80::1 > ff02::16: HBH ICMP6, multicast listener report v2, …`).
    var isNeighborDiscovery: Bool {
        guard header.split(separator: " ").dropFirst().first == "IP6" else { return false }
        return ["ICMP6, neighbor", "ICMP6, router", "ICMP6, multicast listener"].contains { header.contains($0) }
    }

    /// The source address of an IPv6 packet (`… IP6 2001:db8:1::2.41234 > …` gives `2001:db8:1::2` with
    /// its port, or the bare address for ICMPv6), nil for anything else.
    var ipv6Source: Substring? {
        let words = header.split(separator: " ")
        guard words.count >= 3, words[1] == "IP6" else { return nil }
        return words[2]
    }

    /// True for a UDP datagram between 172.31.1.2 (any port) and 172.31.2.2:`port`, in either direction.
    func isTunnelDatagram(port: Int) -> Bool {
        let words = header.split(separator: " ")
        guard words.count >= 6, words[1] == "IP", words[3] == ">", words[5] == "UDP," else { return false }
        let source = words[2]
        let destination = words[4].dropLast()  // "172.31.2.2.51820:"
        let server = "172.31.2.2.\(port)"
        return (source == server && destination.hasPrefix("172.31.1.2."))
            || (destination == server && source.hasPrefix("172.31.1.2."))
    }
}

/// The packets in a log of `tcpdump -nn -X` (tcpdump's own messages on stderr are skipped).
struct Capture {
    var packets: [CapturedPacket] = []

    init(_ log: String) {
        for line in log.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("0x"), !packets.isEmpty {
                packets[packets.count - 1].dump.append(String(trimmed))
                packets[packets.count - 1].bytes += Self.hexBytes(trimmed)
            } else if Self.isPacketHeader(line) {
                packets.append(CapturedPacket(header: String(line)))
            }
        }
    }

    /// A summary line starts with a time of day, `HH:MM:SS.ffffff`.
    static func isPacketHeader(_ line: Substring) -> Bool {
        guard let first = line.split(separator: " ").first, first.count >= 9 else { return false }
        return first.allSatisfy { $0.isNumber || $0 == ":" || $0 == "." } && first.contains(":")
    }

    /// The bytes of one `0x0010:  ac1f 0202 cbd9 …  ASCII` line: the hex groups end at the double space.
    static func hexBytes(_ line: Substring) -> [UInt8] {
        guard let colon = line.firstIndex(of: ":") else { return [] }
        let rest = line[line.index(after: colon)...].drop { $0 == " " }
        let hex = rest.split(separator: "  ", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        // A group that is not whole bytes of hex (never in tcpdump's output) adds nothing.
        return hex.split(separator: " ").flatMap { group in (try? Hex.bytes(group)) ?? [] }
    }
}

extension Array where Element == UInt8 {
    /// True when `needle` occurs as a contiguous run.
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start..<(start + needle.count)].elementsEqual(needle) {
            return true
        }
        return false
    }
}

/// A `stats: key=value …` line from tunvpn's SIGUSR1 handler.
struct Stats {
    var values: [(key: String, value: UInt64)] = []

    init(_ line: Substring) {
        for word in line.split(separator: " ").dropFirst() {
            let parts = word.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = UInt64(parts[1]) { values.append((String(parts[0]), value)) }
        }
    }

    subscript(_ key: String) -> UInt64 { values.first { $0.key == key }?.value ?? 0 }

    /// The traffic counters (and the IPv6 share of the packets, where the line has it), then every drop
    /// and handshake failure that is not zero.
    var summary: String {
        let perFamily = ["tx_packets.ipv6", "rx_packets.ipv6"].filter { key in values.contains { $0.key == key } }
        let main = (["tx_packets", "tx_bytes", "rx_packets", "rx_bytes"] + perFamily + ["handshakes.completed"])
            .map { "\($0)=\(self[$0])" }.joined(separator: " ")
        let bad = values.filter { ($0.key.hasPrefix("drop.") || $0.key.hasPrefix("handshake.failed.")) && $0.value > 0 }
        return main
            + (bad.isEmpty ? ", nothing dropped" : ", " + bad.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
    }
}

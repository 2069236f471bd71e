// A client's DNS changes as plan steps (docs/ROUTING.md, "DNS"): per-link settings through systemd-resolved
// (`resolvectl`), or a replaced /etc/resolv.conf whose original bytes the journal keeps; and the table that
// refuses DNS leaving outside the tunnel. Pure, like the rest of Routing: Platform carries the steps out.

/// How a client applies DNS settings.
public enum DNSMethod: String, Sendable, Equatable {
    /// Per-link DNS on the TUN device, through `resolvectl` (resolvectl(1)).
    case systemdResolved = "systemd-resolved"
    /// /etc/resolv.conf replaced, and restored byte for byte (resolv.conf(5)).
    case resolvConf = "resolv.conf"
}

/// What a resolv.conf step writes.
public struct ResolvConfSettings: Equatable, Sendable {
    /// The file: always /etc/resolv.conf for a client (`ResolvConf.path`); the replay policy runs no other.
    public var path: String
    /// The TUN device, named in the file's comment line.
    public var device: String
    /// `nameserver` addresses, in order (resolv.conf(5) uses at most 3).
    public var nameservers: [String]
    /// The `search` domains.
    public var search: [String]
    /// Split tunnel: the original's `nameserver` lines follow the tunnel's (resolv.conf(5) uses the first
    /// 3), so a name the tunnel's resolvers refuse, or cannot be reached for, is asked of the LAN's.
    public var keepNameservers: Bool

    public init(
        path: String = ResolvConf.path, device: String, nameservers: [String], search: [String], keepNameservers: Bool = false
    ) {
        self.path = path
        self.device = device
        self.nameservers = nameservers
        self.search = search
        self.keepNameservers = keepNameservers
    }
}

/// What a file was before a change replaced it, as the executor reads it (lstat(2), readlink(2)).
public enum SavedFile: Equatable, Sendable {
    /// A regular file with these bytes.
    case file([UInt8])
    /// A symbolic link to `target`; `content` is what reading through it gave (nil if nothing), used only
    /// for the options lines the new file keeps.
    case symlink(target: String, content: [UInt8]?)
    /// No file there.
    case absent
}

public enum ResolvConf {
    /// The one file the resolv.conf method changes.
    public static let path = "/etc/resolv.conf"
    /// The program name of the in-process steps (Platform's executor carries them out itself; there is no
    /// such program): `tunvpn-resolv-conf write PATH` with the new content as input, and
    /// `tunvpn-resolv-conf restore PATH file|symlink TARGET|absent` with the original bytes in hex as input.
    public static let program = "tunvpn-resolv-conf"

    /// The new file: a comment naming tunvpn and the device, `nameserver` lines, a `search` line, and the
    /// original's `options` lines (resolv.conf(5)).
    public static func render(_ s: ResolvConfSettings, original: [UInt8]?) -> String {
        var lines = ["# written by tunvpn for \(s.device); the original comes back when tunvpn stops (or at `tunvpn down`)"]
        lines += s.nameservers.map { "nameserver \($0)" }
        if s.keepNameservers { lines += Self.lines(of: original, starting: "nameserver").prefix(max(0, 3 - s.nameservers.count)) }
        if !s.search.isEmpty { lines.append("search " + s.search.joined(separator: " ")) }
        lines += optionsLines(original)
        return lines.map { $0 + "\n" }.joined()
    }

    /// The `options` lines of a resolv.conf, as they are (leading blanks allowed; resolv.conf(5)).
    public static func optionsLines(_ bytes: [UInt8]?) -> [String] { lines(of: bytes, starting: "options") }

    /// The lines of a resolv.conf whose first word is `keyword`, as they are.
    static func lines(of bytes: [UInt8]?, starting keyword: String) -> [String] {
        guard let bytes else { return [] }
        // Split on the bytes: as Characters, "\r\n" is one grapheme and would hide a line break.
        return bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
            .map { String(decoding: $0, as: UTF8.self) }
            .filter { line in
                let trimmed = line.drop { $0 == " " || $0 == "\t" }
                return trimmed.hasPrefix(keyword + " ") || trimmed.hasPrefix(keyword + "\t")
            }
    }

    /// The undo entry that brings `saved` back at `path`.
    public static func restoreEntry(path: String, saved: SavedFile) -> JournalEntry {
        switch saved {
        case .file(let bytes): return JournalEntry(undo: [program, "restore", path, "file"], input: hex(bytes))
        case .symlink(let target, _): return JournalEntry(undo: [program, "restore", path, "symlink", target])
        case .absent: return JournalEntry(undo: [program, "restore", path, "absent"])
        }
    }

    /// The saved original an undo entry holds, or nil if `entry` is no well-formed restore entry.
    public static func saved(in entry: JournalEntry) -> (path: String, saved: SavedFile)? {
        let a = entry.undo
        guard a.count >= 4, a[0] == program, a[1] == "restore" else { return nil }
        switch a[3] {
        case "file" where a.count == 4:
            guard let bytes = unhex(entry.input ?? "") else { return nil }
            return (a[2], .file(bytes))
        case "symlink" where a.count == 5 && entry.input == nil && !a[4].isEmpty:
            return (a[2], .symlink(target: a[4], content: nil))
        case "absent" where a.count == 4 && entry.input == nil:
            return (a[2], .absent)
        default:
            return nil
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let h = value(chars[i]), let l = value(chars[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}

/// Inputs for a client's DNS plan.
public struct DNSPlanInput: Sendable {
    public var tunDevice: String
    public var method: DNSMethod
    /// Resolver addresses in force (the pushed ones, or the client's --dns).
    public var resolvers: [String]
    public var search: [String]
    /// Full tunnel: every query goes to the tunnel's resolvers (systemd-resolved's `~.` and default route),
    /// and DNS out of any other device is refused (`leakBlock`). False with --route or --no-routes.
    public var fullTunnel: Bool

    public init(tunDevice: String, method: DNSMethod, resolvers: [String], search: [String], fullTunnel: Bool) {
        self.tunDevice = tunDevice
        self.method = method
        self.resolvers = resolvers
        self.search = search
        self.fullTunnel = fullTunnel
    }
}

extension Planner {
    /// nftables table name of an instance's DNS leak block (`inet`).
    public static func dnsTableName(device: String) -> String {
        "tunvpn_dns_" + String(device.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// The resolver settings, by `input.method`: systemd-resolved's per-link settings on the TUN device
    /// (resolvectl(1): `dns`, `domain` with the routing domain `~.` in full-tunnel mode so every query goes
    /// there, `default-route`; undone by `revert`), or a replaced resolv.conf (undone from the journal).
    public static func dns(_ input: DNSPlanInput) -> Plan {
        let dev = input.tunDevice
        switch input.method {
        case .systemdResolved:
            var changes: [Change] = []
            if !input.resolvers.isEmpty { changes.append(.resolvectl(device: dev, arguments: ["dns", dev] + input.resolvers)) }
            let domains = (input.fullTunnel ? ["~."] : []) + input.search
            if !domains.isEmpty { changes.append(.resolvectl(device: dev, arguments: ["domain", dev] + domains)) }
            changes.append(.resolvectl(device: dev, arguments: ["default-route", dev, input.fullTunnel ? "true" : "false"]))
            return Plan(changes)
        case .resolvConf:
            return Plan([
                .resolvConf(
                    ResolvConfSettings(device: dev, nameservers: input.resolvers, search: input.search, keepNameservers: !input.fullTunnel))
            ])
        }
    }

    /// Full tunnel without the kill switch (whose drop policy already stops them): DNS (UDP and TCP, ports 53
    /// and 853) leaving by any device but the TUN device and `lo` is rejected while the tunnel is up, sent
    /// or forwarded. nftables: one `inet` table; iptables: REJECT rules in OUTPUT and FORWARD of both
    /// families (loopback destinations exempt, as iptables matches one output device per rule).
    public static func dnsLeakBlock(tunDevice dev: String, firewall: FirewallBackend, ipv6: Bool) -> Plan {
        if firewall == .iptables {
            let tag = ["-m", "comment", "--comment", iptablesComment(device: dev)]
            var changes: [Change] = []
            for chain in ["OUTPUT", "FORWARD"] {
                for proto in ["udp", "tcp"] {
                    let match = ["-p", proto, "-m", "multiport", "--dports", "53,853", "!", "-o", dev]
                    changes.append(.iptablesRule(table: "filter", chain: chain, position: 1,
                        rule: match + ["!", "-d", "127.0.0.0/8"] + tag + ["-j", "REJECT"]))
                    if ipv6 {
                        changes.append(.ip6tablesRule(table: "filter", chain: chain, position: 1,
                            rule: match + ["!", "-d", "::1/128"] + tag + ["-j", "REJECT"]))
                    }
                }
            }
            return Plan(changes)
        }
        let table = dnsTableName(device: dev)
        let ruleset = """
            table inet \(table) {
            \tchain output {
            \t\ttype filter hook output priority filter - 15; policy accept;
            \t\toifname { "lo", "\(dev)" } accept
            \t\tmeta l4proto { tcp, udp } th dport { 53, 853 } reject
            \t}
            \tchain forward {
            \t\ttype filter hook forward priority filter - 15; policy accept;
            \t\toifname "\(dev)" accept
            \t\tmeta l4proto { tcp, udp } th dport { 53, 853 } reject
            \t}
            }

            """
        return Plan([.nftTable(family: "inet", name: table, ruleset: ruleset)])
    }
}

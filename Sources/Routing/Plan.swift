// Plans: the host changes a tunvpn instance makes (routes, sysctls, firewall rules), each with its undo,
// as plain values rendered to the exact `ip`, `nft`, `iptables` and `sysctl` commands that carry them out.
//
// Why commands and not netlink calls: the same text is what `--dry-run` prints, what the state journal
// records, and what an operator would type to inspect or undo a step by hand; `nft -f` applies a whole
// table in one kernel transaction, and deleting that one table undoes all of it. docs/ROUTING.md has the
// full reasoning. Nothing here runs a command: `PlanExecutor` does, through a `CommandExecutor` (Platform's
// `SystemCommandExecutor`).

/// One reversible host change.
public enum Change: Equatable, Sendable {
    /// `ip -4 route add DEST [via GW] dev DEV` (undo: `ip -4 route del …`); `ip -6` for an IPv6 `DEST`.
    case route(destination: String, via: String?, device: String)
    /// Set a sysctl; the undo restores the value read just before (recorded in the journal).
    case sysctl(key: String, value: String)
    /// Load an nftables table of tunvpn's own from `ruleset` (undo: delete the table). The table is
    /// replaced in one transaction (`applyInput`): one left by a previous run, such as the kill switch a
    /// crashed client leaves up on purpose, stays in force until its new version takes its place.
    case nftTable(family: String, name: String, ruleset: String)
    /// Insert an iptables rule at the top of a chain, tagged with a tunvpn comment (undo: delete it).
    case iptablesRule(table: String, chain: String, position: Int, rule: [String])
    /// The same with ip6tables, for IPv6.
    case ip6tablesRule(table: String, chain: String, position: Int, rule: [String])
    /// Give the tunnel device its address, MTU and transmit queue length, and bring it up. Shown as the
    /// `ip addr`/`ip link` commands that do the same; applied by the device itself (Platform's `TunDevice`,
    /// with ioctls), never by `PlanExecutor`; it has no undo, since the settings go with the device.
    case device(DeviceSettings)
    /// `resolvectl ARGUMENTS` (per-link DNS settings of `device` in systemd-resolved; undo: `resolvectl
    /// revert DEVICE`, which drops them all, so several steps share one undo).
    case resolvectl(device: String, arguments: [String])
    /// Replace /etc/resolv.conf (`ResolvConf.render`): written to a temporary file in the same directory and
    /// renamed over it, or in place where it is a mount point (rename(2): EBUSY). The undo, journaled
    /// first, holds the original bytes (or its symbolic link), read just before (`CommandExecutor.readFile`).
    case resolvConf(ResolvConfSettings)

    /// The command that makes the change (for display, the journal and the applier).
    public var applyCommand: [String] {
        switch self {
        case .route(let destination, let via, let device):
            return ["ip", Self.family(destination), "route", "add", destination] + (via.map { ["via", $0] } ?? []) + ["dev", device]
        case .sysctl(let key, let value):
            return ["sysctl", "-w", "\(key)=\(value)"]
        case .nftTable:
            return ["nft", "-f", "-"]
        case .iptablesRule(let table, let chain, let position, let rule):
            return ["iptables", "-t", table, "-I", chain, String(position)] + rule
        case .ip6tablesRule(let table, let chain, let position, let rule):
            return ["ip6tables", "-t", table, "-I", chain, String(position)] + rule
        case .device(let d):
            return ["ip", "link", "set", d.device, "mtu", String(d.mtu), "txqueuelen", String(d.transmitQueueLength), "up"]
        case .resolvectl(_, let arguments):
            return ["resolvectl"] + arguments
        case .resolvConf(let r):
            return [ResolvConf.program, "write", r.path]
        }
    }

    /// The command that undoes the change. For a sysctl it needs the value read before the change.
    public func undoCommand(previousValue: String? = nil) -> [String] {
        switch self {
        case .route(let destination, let via, let device):
            return ["ip", Self.family(destination), "route", "del", destination] + (via.map { ["via", $0] } ?? []) + ["dev", device]
        case .sysctl(let key, _):
            return ["sysctl", "-w", "\(key)=\(previousValue ?? "0")"]
        case .nftTable(let family, let name, _):
            return ["nft", "delete", "table", family, name]
        case .iptablesRule(let table, let chain, _, let rule):
            return ["iptables", "-t", table, "-D", chain] + rule
        case .ip6tablesRule(let table, let chain, _, let rule):
            return ["ip6tables", "-t", table, "-D", chain] + rule
        case .device:
            return []
        case .resolvectl(let device, _):
            return ["resolvectl", "revert", device]
        case .resolvConf(let r):
            // The real undo is `ResolvConf.restoreEntry`, made from what the file was when applied.
            return [ResolvConf.program, "restore", r.path]
        }
    }

    /// Standard input for the apply command, if any: for a table, one `nft -f` transaction that creates it
    /// empty if it is missing, deletes it and loads the ruleset (nft(8): a file is applied atomically), so
    /// an existing table is replaced without a moment in which neither version is loaded.
    public var applyInput: String? {
        if case .nftTable(let family, let name, let ruleset) = self {
            return "table \(family) \(name) {}\ndelete table \(family) \(name)\n" + ruleset
        }
        return nil
    }

    /// A short name of the step for errors ("add route 0.0.0.0/1 dev tun0").
    public var summary: String {
        switch self {
        case .route(let d, let via, let dev): return "add route \(d)\(via.map { " via \($0)" } ?? "") dev \(dev)"
        case .sysctl(let k, let v): return "set \(k)=\(v)"
        case .nftTable(let f, let n, _): return "load nftables table \(f) \(n)"
        case .iptablesRule(let t, let c, _, _): return "insert iptables rule in \(t)/\(c)"
        case .ip6tablesRule(let t, let c, _, _): return "insert ip6tables rule in \(t)/\(c)"
        case .device(let d): return "configure device \(d.device)"
        case .resolvectl(let dev, let a): return "set DNS of \(dev) (resolvectl \(a.first ?? ""))"
        case .resolvConf(let r): return "replace \(r.path)"
        }
    }

    /// `-6` for an IPv6 destination (it holds a colon), else `-4`.
    static func family(_ destination: String) -> String { destination.contains(":") ? "-6" : "-4" }

    /// The command line as a shell would show it (with the ruleset as a here-document for nft).
    public var displayCommand: String {
        let line = applyCommand.map(shellQuote).joined(separator: " ")
        if case .device(let d) = self {
            let address = d.address.map { "ip addr add \($0) dev \(d.device)" }
                ?? "# \(d.device): address assigned by the server at the handshake"
            return address + "\n" + line + (d.address6.map { "\nip -6 addr add \($0) dev \(d.device)" } ?? "")
        }
        if case .resolvConf(let r) = self {
            // The original's options lines are added when it is read, as the step is applied.
            return "# \(r.path): the original is saved in the journal and restored at exit; its options lines are kept\n"
                + line + " <<'EOF'\n" + ResolvConf.render(r, original: nil) + "EOF"
        }
        if let input = applyInput { return line + " <<'EOF'\n" + input + "EOF" }
        return line
    }
}

/// What `Change.device` gives the tunnel device.
public struct DeviceSettings: Equatable, Sendable {
    public var device: String
    /// `ADDRESS/LENGTH` (the device's own address and the tunnel prefix), or nil while it is not known: a
    /// client's comes from the server at each handshake (`withAddress`).
    public var address: String?
    /// The device's IPv6 address and the tunnel's IPv6 prefix ("fd00:8::1/64"), added once the device is
    /// up, or nil for none: applying a device step leaves the device no other global IPv6 address (a
    /// client's changes with the server's assignment, and goes when the server stops offering IPv6).
    public var address6: String?
    public var mtu: Int
    public var transmitQueueLength: Int

    public init(device: String, address: String?, address6: String? = nil, mtu: Int, transmitQueueLength: Int) {
        self.device = device
        self.address = address
        self.address6 = address6
        self.mtu = mtu
        self.transmitQueueLength = transmitQueueLength
    }
}

extension Plan {
    /// The plan with every device step given `address` and `address6` (a client's, once the server has
    /// assigned them; `address6` nil when the tunnel carries no IPv6 or the client was started with
    /// --no-ipv6).
    public func withDeviceAddress(_ address: String, address6: String? = nil) -> Plan {
        Plan(changes.map { change in
            guard case .device(var d) = change else { return change }
            d.address = address
            d.address6 = address6
            return .device(d)
        })
    }
}

/// Quotes an argument for display when it holds characters a shell would interpret.
public func shellQuote(_ s: String) -> String {
    let safe = s.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,@%+".contains($0) }
    return safe && !s.isEmpty ? s : "'" + s.replacingAll("'", with: "'\\''") + "'"
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}

/// An ordered list of changes, applied first to last and undone last to first.
public struct Plan: Equatable, Sendable {
    public var changes: [Change]
    public init(_ changes: [Change] = []) { self.changes = changes }

    /// The `--dry-run` rendering: one command per step, in order.
    public var script: String {
        changes.map { $0.displayCommand + "\n" }.joined()
    }
}

/// What a host's routing looked like before tunvpn (read by Platform, given to the planner).
public struct RouteLookup: Equatable, Sendable {
    /// Gateway of the route to the destination, if it is not on-link.
    public var via: String?
    /// Device of the route.
    public var device: String
    public init(via: String?, device: String) {
        self.via = via
        self.device = device
    }
}

/// How firewall and NAT rules are made.
public enum FirewallBackend: String, Sendable {
    /// A table of tunvpn's own, loaded in one transaction and removed as a unit (preferred).
    case nftables
    /// Rules in the built-in iptables chains, each tagged with a `tunvpn:DEV` comment (where nft is missing).
    case iptables
}

/// A device whose `accept_ra` tunvpn keeps working once it turns IPv6 forwarding on: with
/// `net.ipv6.conf.all.forwarding=1`, an interface with `accept_ra=1` stops accepting router advertisements
/// (ip-sysctl.rst), so a default route learnt by SLAAC would expire; `accept_ra=2` accepts them while
/// forwarding.
public struct RouterAdvertisements: Equatable, Sendable {
    public var device: String
    /// The device's `accept_ra` as the plan is made: the plan sets it to 2 when it is "1", and also when
    /// it is "2" already (the value a killed run leaves until its leftovers are undone, after the plan is
    /// made; the step reads the value to restore when it is applied, so a stop restores the original).
    public var acceptRA: String

    public init(device: String, acceptRA: String) {
        self.device = device
        self.acceptRA = acceptRA
    }
}

/// Inputs for a server's plan.
public struct ServerPlanInput: Sendable {
    public var tunDevice: String
    /// The tunnel network, e.g. "10.8.0.0/16".
    public var tunnelNetwork: String
    /// Egress interface for MASQUERADE (auto-detected from the default route or `--egress`).
    public var egressDevice: String
    public var mtu: Int
    /// Insert tagged ACCEPT rules at the top of an existing iptables FORWARD chain (see docs/ROUTING.md).
    public var iptablesForwardExists: Bool
    public var firewall: FirewallBackend
    /// The tunnel's IPv6 network ("fd00:8::/64") when the server forwards IPv6 beyond the tunnel (IPv6
    /// egress), else nil: then the plan changes nothing for IPv6.
    public var tunnelNetwork6: String?
    /// Egress interface for IPv6 MASQUERADE (the IPv6 default route's, or `--egress`).
    public var egressDevice6: String?
    /// The same as `iptablesForwardExists`, for ip6tables' filter/FORWARD chain.
    public var ip6tablesForwardExists: Bool
    /// `accept_ra` of `egressDevice6`, kept working with forwarding on.
    public var egressRouterAdvertisements: RouterAdvertisements?

    public init(
        tunDevice: String, tunnelNetwork: String, egressDevice: String, mtu: Int, iptablesForwardExists: Bool,
        firewall: FirewallBackend = .nftables, tunnelNetwork6: String? = nil, egressDevice6: String? = nil,
        ip6tablesForwardExists: Bool = false, egressRouterAdvertisements: RouterAdvertisements? = nil
    ) {
        self.firewall = firewall
        self.tunDevice = tunDevice
        self.tunnelNetwork = tunnelNetwork
        self.egressDevice = egressDevice
        self.mtu = mtu
        self.iptablesForwardExists = iptablesForwardExists
        self.tunnelNetwork6 = tunnelNetwork6
        self.egressDevice6 = egressDevice6
        self.ip6tablesForwardExists = ip6tablesForwardExists
        self.egressRouterAdvertisements = egressRouterAdvertisements
    }
}

/// Inputs for a client's plan.
public struct ClientPlanInput: Sendable {
    public var tunDevice: String
    /// The server's underlay address (IPv4 or IPv6) and how it was reached before tunvpn.
    public var serverAddress: String
    public var serverRoute: RouteLookup?
    /// Routes through the tunnel: empty means the full tunnel (0/1 and 128/1, and with `ipv6` ::/1 and
    /// 8000::/1); nil means `--no-routes`. IPv4 and IPv6 prefixes.
    public var routes: [String]?
    public var gateway: Bool
    public var mtu: Int
    public var firewall: FirewallBackend
    /// This host and the tunnel device have IPv6: the full tunnel takes all of IPv6 into the tunnel too
    /// (also when the server offers no IPv6, or with --no-ipv6: the client answers IPv6 packets itself),
    /// and gateway mode forwards IPv6 from the LAN.
    public var ipv6: Bool
    /// Gateway mode with IPv6: `accept_ra` of the device of this host's IPv6 default route.
    public var routerAdvertisements: RouterAdvertisements?
    /// The client's other servers (its later `--endpoint`s), each with how it was reached before tunvpn:
    /// each gets a host route like `serverAddress`'s.
    public var otherServers: [(address: String, route: RouteLookup?)] = []

    public init(
        tunDevice: String, serverAddress: String, serverRoute: RouteLookup?, routes: [String]?, gateway: Bool, mtu: Int,
        firewall: FirewallBackend = .nftables, ipv6: Bool = false, routerAdvertisements: RouterAdvertisements? = nil
    ) {
        self.firewall = firewall
        self.tunDevice = tunDevice
        self.serverAddress = serverAddress
        self.serverRoute = serverRoute
        self.routes = routes
        self.gateway = gateway
        self.mtu = mtu
        self.ipv6 = ipv6
        self.routerAdvertisements = routerAdvertisements
    }
}

/// Builds plans. Pure: the same input gives the same plan.
public enum Planner {
    /// nftables table name of one instance (one per device, so two instances never share a table). The
    /// IPv4 rules are in `table ip NAME`, the IPv6 ones in `table ip6 NAME` beside it.
    public static func tableName(device: String) -> String {
        "tunvpn_" + String(device.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// nftables table name of an instance's kill switch (`inet`).
    public static func lockTableName(device: String) -> String {
        "tunvpn_lock_" + String(device.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// The undo command of the kill switch of `device`: the journal entry kept when a client restarts
    /// with `--lockdown`, or when `tunvpn down --keep-lockdown` clears the rest.
    public static func lockdownUndo(device: String) -> [String] {
        ["nft", "delete", "table", "inet", lockTableName(device: device)]
    }

    /// The comment that tags tunvpn's iptables rules.
    public static func iptablesComment(device: String) -> String { "tunvpn:\(device)" }

    /// The IPv6 forwarding switch (ip-sysctl.rst: it also sets every interface's `forwarding`).
    public static let ipv6Forwarding = "net.ipv6.conf.all.forwarding"

    /// The step that keeps the tunnel device quiet on IPv6, applied before the device goes up:
    /// `addr_gen_mode=1` gives it no link-local address, so the kernel sends no router solicitations into
    /// the tunnel (the device is point-to-point and NOARP, so it has no neighbour discovery or solicited-
    /// node groups either; ip-sysctl.rst). Nil for a name with a dot, which a dotted sysctl key cannot
    /// hold; that device just stays a little noisier.
    public static func quietIPv6(device: String) -> Change? {
        device.contains(".") ? nil : .sysctl(key: "net.ipv6.conf.\(device).addr_gen_mode", value: "1")
    }

    /// `accept_ra=2` for `ra`'s device when it is 1 or 2 (see `RouterAdvertisements`), else nothing: 0
    /// means the operator wants no router advertisements there.
    static func keepAcceptingRA(_ ra: RouterAdvertisements?) -> [Change] {
        guard let ra, ra.acceptRA == "1" || ra.acceptRA == "2", !ra.device.contains(".") else { return [] }
        return [.sysctl(key: "net.ipv6.conf.\(ra.device).accept_ra", value: "2")]
    }

    /// Server: forwarding on, MASQUERADE of the tunnel network out of the egress device, FORWARD accepts
    /// for tunnel traffic and MSS clamping; the same for IPv6 when the input has an IPv6 network.
    public static func server(_ input: ServerPlanInput) -> Plan {
        let dev = input.tunDevice
        let tag = ["-m", "comment", "--comment", iptablesComment(device: dev)]
        var changes: [Change]
        if input.firewall == .iptables {
            changes =
                [.sysctl(key: "net.ipv4.ip_forward", value: "1")] + forwardAccepts(dev, tag, Change.iptablesRule)
                + mssClamp(dev, tag, Change.iptablesRule) + [
                    .iptablesRule(
                        table: "nat", chain: "POSTROUTING", position: 1,
                        rule: ["-s", input.tunnelNetwork, "-o", input.egressDevice] + tag + ["-j", "MASQUERADE"])
                ]
        } else {
            changes = [
                .sysctl(key: "net.ipv4.ip_forward", value: "1"),
                forwardingTable(
                    dev, family: "ip", connectionsEnter: "iifname",
                    masquerade: "ip saddr \(input.tunnelNetwork) oifname \"\(input.egressDevice)\" masquerade"),
            ]
            if input.iptablesForwardExists { changes += forwardAccepts(dev, tag, Change.iptablesRule) }
        }
        guard let network6 = input.tunnelNetwork6 else { return Plan(changes) }
        let egress6 = input.egressDevice6 ?? input.egressDevice
        // accept_ra first, so router advertisements are never ignored while forwarding is on.
        changes += keepAcceptingRA(input.egressRouterAdvertisements)
        changes.append(.sysctl(key: ipv6Forwarding, value: "1"))
        if input.firewall == .iptables {
            changes += forwardAccepts(dev, tag, Change.ip6tablesRule) + mssClamp(dev, tag, Change.ip6tablesRule)
            changes.append(
                .ip6tablesRule(
                    table: "nat", chain: "POSTROUTING", position: 1,
                    rule: ["-s", network6, "-o", egress6] + tag + ["-j", "MASQUERADE"]))
        } else {
            changes.append(
                forwardingTable(
                    dev, family: "ip6", connectionsEnter: "iifname",
                    masquerade: "ip6 saddr \(network6) oifname \"\(egress6)\" masquerade"))
            if input.ip6tablesForwardExists { changes += forwardAccepts(dev, tag, Change.ip6tablesRule) }
        }
        return Plan(changes)
    }

    /// Makes an iptables or ip6tables rule (`Change.iptablesRule` or `Change.ip6tablesRule`).
    typealias RuleMaker = (_ table: String, _ chain: String, _ position: Int, _ rule: [String]) -> Change

    /// iptables FORWARD accepts for tunnel traffic, inserted at the top of the chain.
    static func forwardAccepts(_ dev: String, _ tag: [String], _ rule: RuleMaker) -> [Change] {
        [
            rule("filter", "FORWARD", 1, ["-i", dev] + tag + ["-j", "ACCEPT"]),
            rule("filter", "FORWARD", 2, ["-o", dev, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"] + tag + ["-j", "ACCEPT"]),
        ]
    }

    /// iptables MSS clamping of forwarded TCP SYNs into and out of the tunnel (to the path MTU less 40
    /// bytes of headers for IPv4, 60 for IPv6).
    static func mssClamp(_ dev: String, _ tag: [String], _ rule: RuleMaker) -> [Change] {
        ["-o", "-i"].map { dir in
            rule("mangle", "FORWARD", 1, [dir, dev, "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN"] + tag + ["-j", "TCPMSS", "--clamp-mss-to-pmtu"])
        }
    }

    /// The host route that keeps the tunnel's own frames to the server at `address` out of the tunnel: the
    /// way `route` reached it before tunvpn.
    public static func serverHostRoute(_ address: String, _ route: RouteLookup) -> Change {
        .route(destination: address + (address.contains(":") ? "/128" : "/32"), via: route.via, device: route.device)
    }

    /// Client kill switch (`--lockdown`): an `inet` table (IPv4 and IPv6) whose output, input and forward
    /// chains drop everything except loopback, the tunnel device, and the tunnel's own UDP frames to and
    /// from the server. It is applied before the first handshake and stays while the client reconnects;
    /// after a crash it stays until `tunvpn down` removes it. For a server with an IPv6 address (`server`
    /// holds a colon) the frames are matched as IPv6, and neighbour discovery (ICMPv6 types 133 to 137 with
    /// hop limit 255, which never leaves the link; RFC 4861) is let through so the old gateway stays
    /// reachable.
    public static func lockdown(tunDevice dev: String, server: String, port: UInt16) -> Plan {
        lockdown(tunDevice: dev, servers: [(server, port)])
    }

    /// The kill switch of a client with several servers (its `--endpoint`s): the frames to and from each
    /// are let through, in the order given (a server named twice once).
    public static func lockdown(tunDevice dev: String, servers given: [(address: String, port: UInt16)]) -> Plan {
        let table = lockTableName(device: dev)
        var seen: Set<String> = []
        let servers = given.filter { seen.insert("\($0.address) \($0.port)").inserted }
        func rules(_ direction: String, _ portWord: String) -> String {
            servers.map { "\t\t\($0.address.contains(":") ? "ip6" : "ip") \(direction) \($0.address) udp \(portWord) \($0.port) accept\n" }
                .joined()
        }
        let neighbours = servers.contains(where: { $0.address.contains(":") })
            ? "\t\ticmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } ip6 hoplimit 255 accept\n"
            : ""
        let ruleset = """
            table inet \(table) {
            \tchain output {
            \t\ttype filter hook output priority filter - 20; policy drop;
            \t\toifname "lo" accept
            \t\toifname "\(dev)" accept
            \(rules("daddr", "dport"))\(neighbours)\t}
            \tchain input {
            \t\ttype filter hook input priority filter - 20; policy drop;
            \t\tiifname "lo" accept
            \t\tiifname "\(dev)" accept
            \(rules("saddr", "sport"))\(neighbours)\t}
            \tchain forward {
            \t\ttype filter hook forward priority filter - 20; policy drop;
            \t\toifname "\(dev)" accept
            \t\tiifname "\(dev)" ct state established,related accept
            \t}
            }

            """
        return Plan([.nftTable(family: "inet", name: table, ruleset: ruleset)])
    }

    /// Client: routes (full tunnel, split tunnel or none), the host route that keeps the tunnel's own
    /// frames out of the tunnel, MSS clamping, and in gateway mode forwarding and MASQUERADE into the tunnel
    /// (for IPv6 too, with `ipv6`).
    public static func client(_ input: ClientPlanInput) -> Plan {
        let dev = input.tunDevice
        var changes: [Change] = []
        if let routes = input.routes {
            var routed: Set<String> = []
            for (address, route) in [(input.serverAddress, input.serverRoute)] + input.otherServers {
                guard let r = route, r.device != dev, routed.insert(address).inserted else { continue }
                changes.append(serverHostRoute(address, r))
            }
            let everything = ["0.0.0.0/1", "128.0.0.0/1"] + (input.ipv6 ? ["::/1", "8000::/1"] : [])
            let targets = routes.isEmpty ? everything : routes
            for t in targets { changes.append(.route(destination: t, via: nil, device: dev)) }
        }
        if input.gateway { changes.append(.sysctl(key: "net.ipv4.ip_forward", value: "1")) }
        // The client's own TCP connections take their MSS from tun0's MTU, and the server clamps what it
        // forwards in both directions, so only a gateway (forwarding for the LAN) needs rules here.
        guard input.gateway else { return Plan(changes) }
        let tag = ["-m", "comment", "--comment", iptablesComment(device: dev)]
        let ipv6Steps = input.ipv6 ? keepAcceptingRA(input.routerAdvertisements) + [.sysctl(key: ipv6Forwarding, value: "1")] : []
        if input.firewall == .iptables {
            changes += gatewayRules(dev, tag, Change.iptablesRule)
            if input.ipv6 { changes += ipv6Steps + gatewayRules(dev, tag, Change.ip6tablesRule) }
            return Plan(changes)
        }
        let masquerade = "oifname \"\(dev)\" masquerade"
        changes.append(forwardingTable(dev, family: "ip", connectionsEnter: "oifname", masquerade: masquerade))
        if input.ipv6 {
            changes += ipv6Steps
            changes.append(forwardingTable(dev, family: "ip6", connectionsEnter: "oifname", masquerade: masquerade))
        }
        return Plan(changes)
    }

    /// A gateway's iptables or ip6tables rules: MSS clamping, accepts for traffic that enters from the LAN
    /// and leaves through the tunnel and for its replies, and MASQUERADE into the tunnel.
    static func gatewayRules(_ dev: String, _ tag: [String], _ rule: RuleMaker) -> [Change] {
        mssClamp(dev, tag, rule) + [
            rule("filter", "FORWARD", 1, ["-o", dev] + tag + ["-j", "ACCEPT"]),
            rule("filter", "FORWARD", 2, ["-i", dev, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"] + tag + ["-j", "ACCEPT"]),
            rule("nat", "POSTROUTING", 1, ["-o", dev] + tag + ["-j", "MASQUERADE"]),
        ]
    }

    /// The nftables table of an instance that forwards through `dev` (a server, or a gateway client), for
    /// `family` "ip" or "ip6": MSS clamping of SYNs both ways (`rt mtu` is the route's MTU less the
    /// family's IP and TCP headers, 40 or 60 bytes; nft(8)), an accept for connections that start in the
    /// direction `connectionsEnter` ("iifname": from the tunnel, on a server; "oifname": into it, on a
    /// gateway) and for their replies, and the MASQUERADE rule `masquerade`.
    static func forwardingTable(_ dev: String, family: String, connectionsEnter: String, masquerade: String) -> Change {
        let replies = connectionsEnter == "iifname" ? "oifname" : "iifname"
        let table = tableName(device: dev)
        let ruleset = """
            table \(family) \(table) {
            \tchain forward {
            \t\ttype filter hook forward priority filter - 10; policy accept;
            \t\toifname "\(dev)" tcp flags syn / syn,rst tcp option maxseg size set rt mtu
            \t\tiifname "\(dev)" tcp flags syn / syn,rst tcp option maxseg size set rt mtu
            \t\t\(connectionsEnter) "\(dev)" accept
            \t\t\(replies) "\(dev)" ct state established,related accept
            \t}
            \tchain postrouting {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\t\(masquerade)
            \t}
            }

            """
        return .nftTable(family: family, name: table, ruleset: ruleset)
    }
}

// `tunvpn client` without its flags: load the keys, plan the host changes (the kill switch; the device's
// MTU and queue, its address once the server assigns one, and the routes), own the device, and run the
// engine until a signal stops it. The device step and the routes are applied at each tunnel-up, with the
// address of that handshake, and the DNS settings it carries (docs/ROUTING.md, "DNS"). `--dry-run` prints
// the same plans instead.

import Crypto
import Engine
import Glibc
import Logging
import Platform
import Routing
import Synchronization
import Transport

/// The DNS settings a client applied and how, for `show` and `--json` (nil until applied).
final class DNSStatus: Sendable {
    private let value = Mutex<(method: DNSMethod, dns: DNSSettings)?>(nil)
    func set(_ v: (DNSMethod, DNSSettings)?) { value.withLock { $0 = v } }
    var current: (method: DNSMethod, dns: DNSSettings)? { value.withLock { $0 } }
}

/// Serialises a client's host changes between the threads that make them.
final class HostChangeLock: Sendable {
    let lock = Mutex<Void>(())
}

/// A client's settings, as `tunvpn client` (flags and config file) gives them.
public struct ClientConfiguration: Sendable {
    public var tunnel = TunnelSettings()
    /// The server's public key file.
    public var peerKeyFile: String
    /// The server's public key itself (a config file's `peer-public-key`), used instead of `peerKeyFile`.
    public var peerKey: PublicKey?
    /// This client's private key itself (a config file's `private-key`), used instead of `keyFile`.
    public var privateKey: PrivateKey?
    /// The servers' UDP endpoints, `HOST:PORT` each, tried in this order (`--endpoint`, repeatable); the
    /// first is the preferred one. Names are resolved at start and again at each handshake attempt.
    public var endpoints: [String]
    /// The first (preferred) endpoint.
    public var endpoint: String {
        get { endpoints.first ?? "" }
        set { if endpoints.isEmpty { endpoints = [newValue] } else { endpoints[0] = newValue } }
    }
    /// --failover-after: seconds of failed handshake attempts before the next endpoint is tried.
    public var failoverAfter: UInt64 = FailoverSettings.standard.failoverAfter / 1_000_000_000
    /// This client's private key file.
    public var keyFile = "keys/client.key"
    /// Send a keepalive at least this often (seconds).
    public var keepalive: UInt64?
    /// IPv4 networks routed through the tunnel (split tunnel); empty (with `routes6` empty) for all of
    /// IPv4 and IPv6; nil for no routes at all.
    public var routes: [IPv4Prefix]? = []
    /// IPv6 networks routed through the tunnel (split tunnel, with `routes`); ignored when `routes` is nil.
    public var routes6: [IPv6Prefix] = []
    /// --no-ipv6: no IPv6 address on the device; IPv6 is still routed into the tunnel in full-tunnel mode,
    /// where the client answers each packet with an ICMPv6 unreachable (`ClientSettings.ipv6Disabled`).
    public var noIPv6 = false
    /// Forward and MASQUERADE traffic from other LAN hosts into the tunnel.
    public var gateway = false
    /// Block all traffic outside the tunnel while the client runs (and after a crash).
    public var lockdown = false
    /// --no-dns: apply none of the DNS settings the server pushes.
    public var noDNS = false
    /// --dns: resolvers used instead of the pushed ones (the pushed search domains stay); empty for the
    /// pushed ones.
    public var dns: [IPAddress] = []
    /// --address, WireGuard mode only (`tunnel.protocolMode`): this client's own IPv4 tunnel address and
    /// prefix, which a WireGuard server does not push.
    public var address: IPv4Prefix?
    /// --address, WireGuard mode only: this client's own IPv6 tunnel address and prefix, if any.
    public var address6: IPv6Prefix?

    public init(peerKeyFile: String, endpoint: String) {
        self.peerKeyFile = peerKeyFile
        self.endpoints = [endpoint]
    }

    /// The failover policy of these settings.
    public var failoverSettings: FailoverSettings {
        FailoverSettings(failoverAfter: failoverAfter * 1_000_000_000, probeInterval: FailoverSettings.standard.probeInterval)
    }
}

/// Runs a client.
public enum ClientDaemon {
    /// The two plans of a client for the server at `server`: the kill switch (empty without `lockdown`),
    /// applied before the first handshake, and the tunnel plan (the device step, whose address comes with
    /// each handshake, then the routes), applied at tunnel-up. What `--dry-run` prints, in that order.
    ///
    /// - Throws: `ControlError` when no firewall is installed.
    public static func plans(_ c: ClientConfiguration, server: Endpoint) throws -> (lockdown: Plan, tunnel: Plan) {
        try plans(c, servers: [server])
    }

    /// `plans(_:server:)` for a client with several servers (the addresses of its `--endpoint`s, the first
    /// the preferred one). Every server gets its host route and its kill-switch exception from the start,
    /// rather than following the endpoint in use: a move between servers then needs no host change on the
    /// engine's thread (nothing to fail or wait for at the moment the tunnel is down), and it is as safe,
    /// since each route and each exception carries only the tunnel's own UDP frames to a server this client
    /// was told to use. A name that later resolves elsewhere gets its route then (`EndpointResolver`).
    public static func plans(_ c: ClientConfiguration, servers: [Endpoint]) throws -> (lockdown: Plan, tunnel: Plan) {
        guard let server = servers.first else { throw ControlError("--endpoint: none given, e.g. --endpoint vpn.example.org:51820") }
        // How each server is reached now, before the tunnel's routes exist.
        let serverRoute = HostNetwork.route(to: "\(server.address)")
        let others = servers.dropFirst().map { (address: "\($0.address)", route: HostNetwork.route(to: "\($0.address)")) }
        let ipv6 = c.tunnel.ipv6Capable
        let gatewayDevice6 = ipv6 && c.gateway ? HostNetwork.defaultRoute6()?.device : nil
        var input = ClientPlanInput(
            tunDevice: c.tunnel.device, serverAddress: "\(server.address)", serverRoute: serverRoute,
            routes: c.routes.map { $0.map { "\($0.network)/\($0.length)" } + c.routes6.map { "\($0.network)/\($0.length)" } },
            gateway: c.gateway, mtu: c.tunnel.mtu, firewall: try c.tunnel.firewallBackend(), ipv6: ipv6,
            routerAdvertisements: gatewayDevice6.flatMap { d in
                HostNetwork.sysctl("net.ipv6.conf.\(d).accept_ra").map { RouterAdvertisements(device: d, acceptRA: $0) }
            })
        input.otherServers = others
        let routes = Planner.client(input)
        let lockdown = c.lockdown
            ? Planner.lockdown(tunDevice: c.tunnel.device, servers: servers.map { ("\($0.address)", $0.port) }) : Plan()
        return (lockdown, Plan(c.tunnel.quietIPv6Steps() + [c.tunnel.deviceChange(address: nil)] + routes.changes))
    }

    /// The tunnel addressing of a client in WireGuard mode, where the server pushes nothing: its own
    /// --address prefixes and --dns resolvers, applied at tunnel-up as a pushed assignment would be. The
    /// server addresses are unused (0.0.0.0, no IPv6 one); IPv6 is carried beyond the tunnel when the
    /// client has an IPv6 address (the peer's AllowedIPs decide, as in WireGuard). Nil in tunvpn mode.
    public static func ownAddressing(_ c: ClientConfiguration) -> TunnelAssignment? {
        guard c.tunnel.protocolMode == .wireguard, let address = c.address else { return nil }
        let address6 = c.noIPv6 ? nil : c.address6
        return TunnelAssignment(
            client: address, server: IPv4Address(0, 0, 0, 0), client6: address6, server6: nil, ipv6Egress: address6 != nil,
            dns: DNSSettings(resolvers: c.dns, searchDomains: []))
    }

    /// Full tunnel: all of IPv4 (and IPv6) is routed into the tunnel (no --route, no --no-routes).
    static func fullTunnel(_ c: ClientConfiguration) -> Bool { c.routes?.isEmpty == true && c.routes6.isEmpty }

    /// The DNS settings in force for `pushed`: the client's --dns resolvers instead of the pushed ones, the
    /// pushed search domains; nothing with --no-dns.
    public static func dnsInForce(_ c: ClientConfiguration, pushed: DNSSettings) -> DNSSettings {
        guard !c.noDNS else { return .none }
        return DNSSettings(resolvers: c.dns.isEmpty ? pushed.resolvers : c.dns, searchDomains: pushed.searchDomains)
    }

    /// The resolver steps for `dns` by `method` (none when there is nothing to apply); applied at tunnel-up
    /// and again when a later handshake changes the settings.
    public static func dnsPlan(_ c: ClientConfiguration, dns: DNSSettings, method: DNSMethod) -> Plan {
        guard !dns.isEmpty else { return Plan() }
        return Planner.dns(
            DNSPlanInput(
                tunDevice: c.tunnel.device, method: method, resolvers: dns.resolvers.map(\.description), search: dns.searchDomains,
                fullTunnel: fullTunnel(c)))
    }

    /// The leak block applied at tunnel-up in full-tunnel mode without --lockdown (whose drop policy
    /// already stops DNS outside the tunnel), unless --no-dns.
    ///
    /// - Throws: `ControlError` when no firewall is installed.
    public static func dnsLeakPlan(_ c: ClientConfiguration) throws -> Plan {
        guard !c.noDNS, fullTunnel(c), !c.lockdown else { return Plan() }
        return Planner.dnsLeakBlock(tunDevice: c.tunnel.device, firewall: try c.tunnel.firewallBackend(), ipv6: c.tunnel.ipv6Capable)
    }

    /// "resolv.conf method, resolvers 10.8.0.1, search corp.example" for the log.
    static func dnsText(_ dns: DNSSettings, method: DNSMethod) -> String {
        let resolvers = dns.resolvers.isEmpty ? "no resolvers" : "resolvers " + dns.resolvers.map(\.description).joined(separator: " ")
        return "\(method.rawValue) method, \(resolvers)" + (dns.searchDomains.isEmpty ? "" : ", search " + dns.searchText)
    }

    /// The host's connected IPv6 networks (its LANs), which an assigned IPv6 prefix may not overlap, each
    /// with the words a refusal names it by (the IPv6 half of `AssignmentBounds`).
    public static func localNetworks6(excluding device: String) -> [(prefix: IPv6Prefix, name: String)] {
        HostNetwork.connectedNetworks6(excluding: device).compactMap { n in
            IPv6Prefix(n.network).map { ($0, "the local network \(n.network) on \(n.device)") }
        }
    }

    /// `plan` (the tunnel plan of `plans`) with the device's addresses of `assignment` filled in, as
    /// tunnel-up applies it.
    public static func dryRunPlan(_ c: ClientConfiguration, _ plan: Plan, _ assignment: TunnelAssignment) -> Plan {
        tunnelUpPlan(c, plan, assignment)
    }

    /// What tunnel-up applies: `plan` with the device's addresses of `assignment`, and without a `--route`
    /// to the very network an address of the device is in (`--route 10.8.0.0/16` with 10.8.0.2/16
    /// assigned): the kernel makes that route itself when the address is set, and `ip route add` of the
    /// same network after it fails ("File exists"), which would fail tunnel-up.
    public static func tunnelUpPlan(_ c: ClientConfiguration, _ plan: Plan, _ assignment: TunnelAssignment) -> Plan {
        let address6 = deviceAddress6(c, assignment)
        let own = ["\(IPv4Prefix(address: assignment.client.network, length: assignment.client.length))"]
            + (address6 == nil ? [] : assignment.client6.map { ["\(IPv6Prefix(address: $0.network, length: $0.length))"] } ?? [])
        let device = plan.withDeviceAddress("\(assignment.client)", address6: address6)
        return Plan(device.changes.filter { change in
            if case .route(let destination, nil, _) = change, own.contains(destination) { return false }
            return true
        })
    }

    /// The device's IPv6 address for `assignment`: none with --no-ipv6 or when the tunnel carries no IPv6.
    static func deviceAddress6(_ c: ClientConfiguration, _ assignment: TunnelAssignment) -> String? {
        c.noIPv6 || !c.tunnel.ipv6Capable ? nil : assignment.client6.map { "\($0)" }
    }

    /// "vpn1.example.org:51820 (192.0.2.1:51820), 198.51.100.1:51820" for the log.
    static func endpointList(_ texts: [String], _ resolved: [Endpoint?]) -> String {
        zip(texts, resolved).map { text, address in
            guard let address else { return "\(text) (unresolved)" }
            return "\(address)" == text ? text : "\(text) (\(address))"
        }.joined(separator: ", ")
    }

    /// The failover state for `show`, `--json` and metrics: `texts` as the operator gave them.
    static func failoverSnapshot(_ texts: [String], _ f: EndpointFailover) -> ClientFailoverSnapshot {
        ClientFailoverSnapshot(
            endpoints: zip(texts, f.endpoints).map { ClientFailoverSnapshot.EndpointEntry(text: $0.0, address: $0.1) },
            active: f.active, switches: f.switches,
            lastSwitch: f.lastSwitch.map {
                ClientFailoverSnapshot.Switch(from: $0.from, to: $0.to, reason: $0.reason.name, description: $0.reason.description)
            })
    }

    /// Makes an endpoint's new address usable before the core sends to it: the addresses of the start
    /// already have their host routes and kill-switch exceptions (`plans(_:servers:)`); a new one gets its
    /// host route (journaled like the others, through the old gateway) where the client routes. The kill
    /// switch is not widened while it runs (a table replaced at run time would be journaled twice), so with
    /// --lockdown a new address is refused until the next start, and the old one stays in use.
    static func endpointAdmitter(
        _ c: ClientConfiguration, resolved: [Endpoint?], instance: InstanceFiles, hostChanges: HostChangeLock, logger: Logger
    ) -> @Sendable (Endpoint) -> Bool {
        let dev = c.tunnel.device
        let covered = Mutex(Set(resolved.compactMap { $0?.address }))
        // Addresses refused under --lockdown, warned about once each.
        let refused = Mutex<Set<IPAddress>>([])
        // How the servers were reached before the tunnel's routes: the way to a new address once the
        // tunnel's own routes would take it.
        let before = resolved.compactMap { $0 }.compactMap { e in
            HostNetwork.route(to: "\(e.address)").map { (isIPv6: e.address.isIPv6, route: $0) }
        }.filter { $0.route.device != dev }
        return { endpoint in
            if covered.withLock({ $0.contains(endpoint.address) }) { return true }
            if c.lockdown {
                guard refused.withLock({ $0.insert(endpoint.address).inserted }) else { return false }
                logger.warning(
                    "--endpoint: a name now resolves to \(endpoint), which the kill switch set at start does not let through; the previous address stays in use until a restart")
                return false
            }
            if c.routes != nil {
                var route = HostNetwork.route(to: "\(endpoint.address)")
                if route == nil || route?.device == dev { route = before.first { $0.isIPv6 == endpoint.address.isIPv6 }?.route }
                guard let route else {
                    logger.warning("--endpoint: no route to \(endpoint) outside the tunnel; the previous address stays in use")
                    return false
                }
                do {
                    try hostChanges.lock.withLock { _ in
                        try HostSetup.apply(Plan([Planner.serverHostRoute("\(endpoint.address)", route)]), to: instance, logger: logger)
                    }
                } catch {
                    logger.error("--endpoint: the host route to \(endpoint): \(error); the previous address stays in use")
                    return false
                }
            }
            covered.withLock { _ = $0.insert(endpoint.address) }
            return true
        }
    }

    /// Runs the client until SIGINT or SIGTERM (returns) or an engine failure (throws); with `dryRun`,
    /// prints the plans and returns.
    public static func run(_ c: ClientConfiguration) throws {
        // What `wg show` gives as the server's allowed IPs: the --route list as given (wg-quick's AllowedIPs).
        let uapiAllowedIPs = UAPISettings.clientAllowedIPs(c)
        blockTerminationSignals()
        Privileges.disableCoreDumps()  // before any key is in memory
        if !c.tunnel.dryRun { try requireNetworkAdministration("tunvpn client") }
        let logger = c.tunnel.makeLogger("tunvpn")
        let dev = c.tunnel.device
        let cryptoProvider = try c.tunnel.applyCryptoProvider()
        let privateKey: PrivateKey
        if let inline = c.privateKey {
            privateKey = inline
        } else { do { privateKey = try KeyFiles.loadPrivateKey(c.keyFile) } catch {
            if !KeyFiles.exists(c.keyFile) {
                let base = c.keyFile.hasSuffix(".key") ? String(c.keyFile.dropLast(4)) : c.keyFile
                throw ControlError(
                    "\(c.keyFile): private key file not found; create it with `tunvpn keygen --name client` and add \(base).pub to the server's allow-list (one key per line in its keys/clients)")
            }
            throw error
        } }
        let serverKey = try c.peerKey ?? KeyFiles.loadPublicKey(c.peerKeyFile)
        var texts: [EndpointText] = []
        for text in c.endpoints { texts.append(try EndpointText(text, option: "--endpoint", allowsPortZero: false, examplePort: 51820)) }
        var resolved: [Endpoint?] = []
        var firstError: ControlError?
        for text in texts {
            do {
                let (endpoint, note) = try text.resolve(option: "--endpoint")
                if let note { logger.info("\(note)") }
                resolved.append(endpoint)
            } catch {
                // Another endpoint may carry the tunnel meanwhile; this one is resolved again at its turn.
                if texts.count > 1 { logger.warning("\(error); resolved again at its turn") }
                firstError = firstError ?? error
                resolved.append(nil)
            }
        }
        guard let serverEndpoint = resolved.compactMap({ $0 }).first else {
            throw firstError ?? ControlError("--endpoint: none given, e.g. --endpoint vpn.example.org:51820")
        }
        let initiator = HandshakeInitiator(
            localStatic: privateKey, serverKey: serverKey, settings: try c.tunnel.handshakeSettings(),
            offeredSuites: try c.tunnel.cipherSuites())
        // The server's assignment may not take over this host's LANs, the server's own address or more
        // than the --route prefixes (AssignmentBounds).
        // In WireGuard mode nothing is pushed: the addressing is the client's own (`ownAddressing`), which
        // it trusts as it trusts its other flags, so there is nothing to bound.
        let ownAddressing = ownAddressing(c)
        let bounds = ownAddressing != nil ? AssignmentBounds() : AssignmentBounds(
            localNetworks: HostNetwork.connectedNetworks(excluding: dev).compactMap { n in
                IPv4Prefix(n.network).map { AssignmentBounds.Network($0, name: "the local network \(n.network) on \(n.device)") }
            },
            routes: c.routes ?? [],
            localNetworks6: ClientDaemon.localNetworks6(excluding: dev).map { AssignmentBounds.Network6($0.prefix, name: $0.name) },
            routes6: c.routes6)
        let state = TunnelState(
            role: .client(ClientSettings(
                initiator: initiator, endpoint: serverEndpoint, persistentKeepalive: c.keepalive, assignmentBounds: bounds,
                ipv6Disabled: c.noIPv6, endpoints: resolved, failover: c.failoverSettings, protocolMode: c.tunnel.protocolMode,
                ownAddressing: ownAddressing)),
            timers: c.tunnel.timers)
        let (lockdownPlan, plan) = try plans(c, servers: resolved.compactMap { $0 })
        if c.routes?.isEmpty == true, c.routes6.isEmpty, !c.lockdown, !c.tunnel.ipv6Capable, HostNetwork.ipv6Available {
            logger.warning(
                "--mtu \(c.tunnel.mtu) is below IPv6's minimum link MTU of 1280: IPv6 is not routed into the tunnel and leaves outside it; use --mtu 1280 or more, or --lockdown")
        }
        let dnsMethod = ResolvConfFile.method()
        let leakPlan = try dnsLeakPlan(c)
        if c.tunnel.dryRun {
            print(lockdownPlan.script, terminator: "")
            // In WireGuard mode the device's addresses are known before the handshake.
            print((ownAddressing.map { dryRunPlan(c, plan, $0) } ?? plan).script, terminator: "")
            if !c.noDNS {
                // The pushed settings come with the handshake: with --dns the resolvers are known now.
                let known = dnsInForce(c, pushed: .none)
                let which =
                    ownAddressing != nil
                    ? "the resolvers of --dns (below; WireGuard mode pushes none)"
                    : c.dns.isEmpty ? "the server's resolvers and search domains" : "the resolvers of --dns (below) and the server's search domains"
                print("# DNS (\(dnsMethod.rawValue) method), applied at each handshake: \(which)")
                print(dnsPlan(c, dns: known, method: dnsMethod).script, terminator: "")
                print(leakPlan.script, terminator: "")
            }
            return
        }
        // Both DNS methods change root's files or services at each handshake, after the privilege drop: the
        // DNS agent, started below while this process is root, does it for the client (DNSAgent.swift). A
        // process not started as root cannot start it (nor journal host changes): DNS is then left alone,
        // with a warning.
        let applyingDNS = !c.noDNS && geteuid() == 0 && HostNetwork.stateDirectoryUsable
        // Ownership first: nothing of a running instance may be touched, not even its leftovers. With
        // --lockdown the previous run's kill switch stays until the new one replaces it atomically.
        let instance = try HostSetup.claim(device: dev)
        defer { instance.finish() }
        try HostSetup.removeLeftovers(
            instance, keeping: c.lockdown ? [Planner.lockdownUndo(device: dev)] : [], logger: logger)
        try HostNetwork.preflight(plan)
        try HostNetwork.preflight(leakPlan)
        if c.lockdown {
            guard (try? c.tunnel.firewallBackend()) == .nftables else {
                throw ControlError("--lockdown needs nftables (apt-get install nftables)")
            }
            try HostNetwork.preflight(lockdownPlan)
        }
        let device = try c.tunnel.openDevice(for: instance)
        // `[::]:0`, dual stack, reaches a server of either family and follows it when it roams between them.
        let (socket, noIPv6) = try UDPSocket.bindPreferringDualStack(Endpoint(address: IPv6Address.any, port: 0)) {
            (e) throws(IOError) in try UDPSocket.bind(e, segmentationOffload: c.tunnel.offload)
        }
        if let noIPv6 {
            guard !serverEndpoint.address.isIPv6 else {
                socket.close()
                throw ControlError(
                    "--endpoint \(serverEndpoint): this host has no IPv6, so it cannot reach the server there; give its IPv4 address, e.g. --endpoint 192.0.2.1:51820")
            }
            logger.notice("\(noIPv6)")
        }
        defer { HostSetup.tearDown(instance, logger: logger) }
        // The agent restores DNS first (at `revert`, or when this process's end closes however it exits).
        let agent = applyingDNS ? try DNSAgentClient.start(device: dev) : nil
        defer { agent?.revert(logger: logger) }
        if let agent { logger.info("DNS agent pid \(agent.pid) applies and restores the resolver settings") }
        // The kill switch goes up before the first handshake and stays while the client reconnects.
        if c.lockdown { try HostSetup.apply(lockdownPlan, to: instance, logger: logger) }
        if texts.count > 1 {
            logger.info(
                "endpoints in order: \(endpointList(c.endpoints, resolved)); the next is tried after \(c.failoverAfter) s without a handshake, and the first is probed every \(c.failoverSettings.probeInterval / 1_000_000_000) s while another is in use")
        }
        logger.info("\(cryptoProvider)")
        logger.info(
            "client connecting to \(serverEndpoint) from \(socket.localEndpoint), protocol \(c.tunnel.protocolMode.rawValue), public key \(privateKey.publicKey.base64), device \(device.name), TSO \(device.offloadsEnabled ? "on" : "off"), TUN USO \(device.udpOffloadEnabled ? "on" : "off"), UDP GSO \(socket.usesSegmentationOffload ? "on" : "off"), UDP GRO \(socket.usesReceiveOffload ? "on" : "off")")
        if !c.noDNS && !applyingDNS {
            logger.warning(
                "not started as root: the server's DNS settings are not applied (changing them at each handshake needs a DNS agent started as root); start as root to apply them, or add --no-dns")
        }
        logger.info(
            "DNS: \(!applyingDNS ? "not applied\(c.noDNS ? " (--no-dns)" : ""), this host's resolver settings stay as they are" : "\(dnsMethod.rawValue) method, \(c.dns.isEmpty ? "the server's resolvers" : "resolvers " + c.dns.map(\.description).joined(separator: " ") + " (--dns)"), applied at the handshake\(leakPlan.changes.isEmpty ? "" : ", DNS outside the tunnel refused once they are")")")
        // The DNS settings applied last (the hooks run on the engine's inbound thread, one at a time).
        let appliedDNS = Mutex<DNSSettings?>(nil)
        let dnsStatus = DNSStatus()
        @Sendable func applyDNS(_ assignment: TunnelAssignment) throws {
            let dns = dnsInForce(c, pushed: assignment.dns)
            let previous = appliedDNS.withLock { $0 }
            guard let agent, previous != dns else { return }
            // The leak block goes up with the first resolvers applied: without them the host still uses its
            // own, which the block would cut off.
            if previous?.resolvers.isEmpty ?? true, !dns.resolvers.isEmpty {
                try HostSetup.apply(leakPlan, to: instance, logger: logger)
            }
            if !dns.isEmpty {
                try agent.apply(DNSAgentApply(method: dnsMethod, device: dev, dns: dns, fullTunnel: fullTunnel(c)))
            }
            appliedDNS.withLock { $0 = dns }
            dnsStatus.set(dns.isEmpty ? nil : (dnsMethod, dns))
            let none = ownAddressing != nil ? "no --dns given; nothing applied" : "the server pushes none; nothing applied"
            logger.info("DNS: \(dns.isEmpty ? none : dnsText(dns, method: dnsMethod))")
        }
        // Host changes come from the engine's inbound thread (the hooks) and from the endpoint resolver's
        // thread: one at a time through the journal.
        let hostChanges = HostChangeLock()
        let engineBox = Mutex<TunnelEngine?>(nil)
        let resolver = EndpointResolver(
            texts: texts, resolved: resolved, logger: logger,
            admit: endpointAdmitter(c, resolved: resolved, instance: instance, hostChanges: hostChanges, logger: logger),
            deliver: { index, endpoint in engineBox.withLock { $0 }?.withStateMutation { $0.updateEndpoint(index, to: endpoint) } })
        defer { resolver.stop() }
        let hooks = EngineHooks(
            tunnelUp: { assignment in
                try hostChanges.lock.withLock { _ in
                    try HostSetup.apply(tunnelUpPlan(c, plan, assignment), to: instance, device: device, logger: logger)
                    try applyDNS(assignment)
                }
            },
            addressChanged: { assignment in
                // SIOCSIFADDR replaces the IPv4 address, and the device step leaves no other global IPv6
                // address; the plan's routes name the device, not the address.
                let deviceStep = Plan(plan.changes.filter { if case .device = $0 { true } else { false } })
                try hostChanges.lock.withLock { _ in
                    try HostSetup.apply(
                        deviceStep.withDeviceAddress("\(assignment.client)", address6: deviceAddress6(c, assignment)), to: instance,
                        device: device, logger: logger)
                    try applyDNS(assignment)
                }
            },
            endpointAttempted: { resolver.attempted($0) })
        let engine = TunnelEngine(
            state: state, device: device, socket: socket, clock: SystemClock(wallOffset: c.tunnel.clockOffset),
            logger: logger, hooks: hooks, settings: EngineSettings(mtu: c.tunnel.mtu))
        engineBox.withLock { $0 = engine }
        let endpointTexts = c.endpoints
        let failoverStatus: (@Sendable () -> ClientFailoverSnapshot?)? =
            texts.count < 2 ? nil : { @Sendable () -> ClientFailoverSnapshot? in
                engine.withState { $0.failover }.map { failoverSnapshot(endpointTexts, $0) }
            }
        let status = try StatusServices.start(
            engine: engine, device: dev, listenPort: socket.localEndpoint.port,
            metricsAddress: c.tunnel.metrics, reload: nil,
            dns: {
                dnsStatus.current.map {
                    ClientDNSSnapshot(method: $0.method.rawValue, resolvers: $0.dns.resolvers.map(\.description), search: $0.dns.searchDomains)
                }
            },
            failover: failoverStatus,
            uapi: c.tunnel.protocolMode == .wireguard
                ? UAPISettings(
                    privateKey: privateKey, presharedKey: initiator.settings.psk,
                    allowedIPs: { _ in uapiAllowedIPs }, keeper: geteuid() == 0) : nil,
            logger: logger)
        defer { status.stop() }
        try runUntilSignalled(
            engine, device: dev, user: c.tunnel.user, logger: logger, adapters: { adapterStats(device, socket) })
    }
}

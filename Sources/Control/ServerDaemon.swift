// `tunvpn server` without its flags: load the key and the allow-list, plan the host changes (the device's
// address, MTU and queue, then forwarding and NAT), own the device, apply the plan, and run the engine with
// the status socket, metrics and reload until a signal stops it. `--dry-run` prints the same plan instead.

import Crypto
import Engine
import Glibc
import Logging
import Platform
import Routing
import Transport

/// A server's settings, as `tunvpn server` (flags and config file) gives them.
public struct ServerConfiguration: Sendable {
    public var tunnel = TunnelSettings()
    /// The server's private key file.
    public var keyFile = "keys/server.key"
    /// UDP address and port to listen on: by default `[::]`, one socket for IPv4 and IPv6 clients (on a
    /// host without IPv6, 0.0.0.0; `UDPSocket.bindPreferringDualStack`).
    public var listen = Endpoint(address: IPv6Address.any, port: 51820)
    /// The server's tunnel address and the tunnel prefix.
    public var address: IPv4Prefix
    /// The server's IPv6 tunnel address and prefix (/64 to /120); nil for the default, a unique local /64
    /// derived from the server's key (`IPv6Prefix.defaultTunnelPrefix`).
    public var address6: IPv6Prefix?
    /// --no-ipv6: the tunnel carries no IPv6, and the server changes nothing for IPv6.
    public var noIPv6 = false
    /// The allow-list file.
    public var clientsFile = "keys/clients"
    /// Admit any client key (lab use).
    public var allowAnyClient = false
    /// Interface to MASQUERADE out of; nil for the default route's.
    public var egress: String?
    /// Leave forwarding and NAT to the operator.
    public var noNAT = false
    /// The resolvers and search domains pushed to clients (--dns, --dns-search; checked by the command).
    public var dns = DNSSettings.none
    /// --registry: the peers come from this PostgreSQL database instead of `clientsFile`.
    public var registry: RegistryURL?
    /// --registry-password-file: the database password (else libpq's PGPASSWORD or ~/.pgpass).
    public var registryPasswordFile: String?
    /// --registry-cache: the directory of the registry's local cache.
    public var registryCacheDirectory = "/var/lib/tunvpn/registry"

    public init(address: IPv4Prefix) { self.address = address }
}

/// The one-line error for a `--listen` endpoint that could not be bound, with what to do for the usual
/// causes (bind(2): EADDRINUSE, EADDRNOTAVAIL).
func listenFailure(_ endpoint: Endpoint, _ error: IOError) -> String {
    var hint = ""
    if error.call == "bind" && error.errno == EADDRINUSE {
        hint = "; another process (another tunvpn or WireGuard?) uses that UDP port (`ss -lunp` names it): stop it or choose another, e.g. --listen [::]:51821"
    } else if error.call == "bind" && error.errno == EADDRNOTAVAIL {
        hint = "; that address is not on this host (`ip addr` lists them), e.g. --listen [::]:\(endpoint.port)"
    }
    return "--listen \(endpoint): \(error)\(hint)"
}

/// "resolvers 10.8.0.1 fd00::1, search corp.example" (the words the server's log and dry run use).
func pushedDNSText(_ dns: DNSSettings) -> String {
    let resolvers = dns.resolvers.isEmpty ? "no resolvers" : "resolvers " + dns.resolvers.map(\.description).joined(separator: " ")
    return resolvers + (dns.searchDomains.isEmpty ? "" : ", search " + dns.searchText)
}

/// Runs a server.
public enum ServerDaemon {
    /// The IPv6 prefix the tunnel carries: `c.address6` or the default for `serverKey`; nil with
    /// --no-ipv6, or when the device cannot carry IPv6 (no IPv6 here, or an MTU below 1280).
    public static func tunnelPrefix6(_ c: ServerConfiguration, serverKey: PublicKey?) -> IPv6Prefix? {
        guard !c.noIPv6, c.tunnel.ipv6Capable else { return nil }
        return c.address6 ?? serverKey.map { IPv6Prefix.defaultTunnelPrefix(serverKey: $0) }
    }

    /// The device IPv6 traffic leaves by, when the server has IPv6 egress: the tunnel carries IPv6
    /// (`c.address6` set, as `run` sets it) and there is an IPv6 default route (through `--egress`, when
    /// given). Nil otherwise: clients then answer IPv6 beyond the tunnel themselves.
    public static func ipv6EgressDevice(_ c: ServerConfiguration) -> String? {
        guard !c.noIPv6, c.address6 != nil, c.tunnel.ipv6Capable else { return nil }
        return HostNetwork.defaultRoute6(device: c.egress)?.device
    }

    /// The host changes a server makes: the device step (before it, `Planner.quietIPv6`), a route into the
    /// device for every prefix `routed` behind a client (allow-list lines, outside the tunnel prefix), then
    /// (unless `noNAT`) forwarding and NAT, for IPv6 too when the server has IPv6 egress. What `--dry-run`
    /// prints and what `run` applies. `c.address6` is the device's IPv6 address (nil: none).
    ///
    /// - Throws: `ControlError` when the egress interface cannot be found, or no firewall is installed.
    public static func plan(_ c: ServerConfiguration, routed: [IPPrefix] = []) throws -> Plan {
        let address6 = c.noIPv6 || !c.tunnel.ipv6Capable ? nil : c.address6
        var plan = Plan(c.tunnel.quietIPv6Steps() + [c.tunnel.deviceChange(address: "\(c.address)", address6: address6.map { "\($0)" })])
        plan.changes += routedRoutes(routed, c)
        if !c.noNAT {
            guard let egressDevice = c.egress ?? HostNetwork.defaultRoute()?.device else {
                throw ControlError("no default route to find the egress interface for NAT: pass --egress IF (or --no-nat)")
            }
            guard HostNetwork.interfaceExists(egressDevice) else {
                throw ControlError("--egress \(egressDevice): no such interface here; `ip link` lists them")
            }
            let egress6 = ipv6EgressDevice(c)
            plan.changes += Planner.server(
                ServerPlanInput(
                    tunDevice: c.tunnel.device, tunnelNetwork: "\(c.address.network)/\(c.address.length)",
                    egressDevice: egressDevice, mtu: c.tunnel.mtu,
                    iptablesForwardExists: HostNetwork.iptablesForwardChainExists(),
                    firewall: try c.tunnel.firewallBackend(),
                    tunnelNetwork6: egress6 == nil ? nil : address6.map { "\($0.network)/\($0.length)" },
                    egressDevice6: egress6,
                    ip6tablesForwardExists: egress6 != nil && HostNetwork.ip6tablesForwardChainExists(),
                    egressRouterAdvertisements: egress6.flatMap { d in
                        HostNetwork.sysctl("net.ipv6.conf.\(d).accept_ra").map { RouterAdvertisements(device: d, acceptRA: $0) }
                    })
            ).changes
        }
        return plan
    }

    /// `PREFIX dev DEV` for each routed prefix outside the tunnel prefix of its family (IPv6 ones only when
    /// the device has IPv6), in order, each once.
    public static func routedRoutes(_ routed: [IPPrefix], _ c: ServerConfiguration) -> [Change] {
        let address6 = c.noIPv6 || !c.tunnel.ipv6Capable ? nil : c.address6
        let tunnel = IPPrefix.v4(IPv4Prefix(address: c.address.network, length: c.address.length))
        let tunnel6 = address6.map { IPPrefix.v6(IPv6Prefix(address: $0.network, length: $0.length)) }
        var seen = Set<IPPrefix>()
        var changes: [Change] = []
        for p in routed where seen.insert(p.network).inserted {
            switch p {
            case .v4: if p.overlaps(tunnel) { continue }
            case .v6:
                guard let tunnel6, !p.overlaps(tunnel6) else { continue }
            }
            changes.append(.route(destination: "\(p.network)", via: nil, device: c.tunnel.device))
        }
        return changes
    }

    /// Runs the server until SIGINT or SIGTERM (returns) or an engine failure (throws); with `dryRun`,
    /// prints the plan and returns.
    public static func run(_ c: ServerConfiguration) throws {
        blockTerminationSignals()
        Privileges.disableCoreDumps()  // before any key is in memory
        if !c.tunnel.dryRun { try requireNetworkAdministration("tunvpn server") }
        let logger = c.tunnel.makeLogger("tunvpn")
        let privateKey = try KeyFiles.loadPrivateKey(c.keyFile)
        let cryptoProvider = try c.tunnel.applyCryptoProvider()
        var c = c
        if let asked = c.address6, !c.noIPv6, !c.tunnel.ipv6Capable {
            logger.warning("--address \(asked): the tunnel carries no IPv6, this host has IPv6 turned off")
        }
        c.address6 = tunnelPrefix6(c, serverKey: privateKey.publicKey)
        let egress6 = ipv6EgressDevice(c)
        let prefix = c.address
        // With a registry, its peers (read before any host change: a database that cannot be used stops the
        // start here, unless a cache of it can stand in); a dry run does not connect.
        var registryStart: RegistryStart? = nil
        if let url = c.registry, !c.tunnel.dryRun {
            registryStart = try RegistryStart.load(
                url: url, passwordFile: c.registryPasswordFile, prefix: prefix, prefix6: c.address6,
                cacheDirectory: c.registryCacheDirectory, device: c.tunnel.device)
        }
        let allowList =
            try registryStart?.list
            ?? (c.registry != nil
                ? AllowList()
                : AllowListFile.loadAllowList(
                    c.clientsFile, prefix: prefix, prefix6: c.address6, allowAnyClient: c.allowAnyClient,
                    protocolMode: c.tunnel.protocolMode))
        let responder = HandshakeResponder(
            localStatic: privateKey, settings: try c.tunnel.handshakeSettings(), acceptedSuites: try c.tunnel.cipherSuites())
        let state = TunnelState(
            role: .server(
                ServerSettings(
                    responder: responder, address: prefix, address6: c.address6, ipv6Egress: egress6 != nil, allowList: allowList,
                    allowAnyClient: c.allowAnyClient, dns: c.dns, protocolMode: c.tunnel.protocolMode)),
            timers: c.tunnel.timers)
        let plan = try plan(c, routed: allowList.routedPrefixes)
        if c.tunnel.dryRun {
            // What clients are told is no host change; the script says it as a comment.
            if !c.dns.isEmpty { print("# pushed to clients in the handshake: \(pushedDNSText(c.dns))") }
            print(plan.script, terminator: "")
            return
        }
        // Ownership first: nothing of a running instance may be touched, not even its leftovers.
        let instance = try HostSetup.claim(device: c.tunnel.device)
        defer { instance.finish() }
        try HostSetup.removeLeftovers(instance, logger: logger)
        try HostNetwork.preflight(plan)
        let device = try c.tunnel.openDevice(for: instance)
        defer { HostSetup.tearDown(instance, logger: logger) }
        try HostSetup.apply(plan, to: instance, device: device, logger: logger)
        let socket: UDPSocket
        let noIPv6: String?
        do {
            (socket, noIPv6) = try UDPSocket.bindPreferringDualStack(c.listen) { (e) throws(IOError) in
                try UDPSocket.bind(e, segmentationOffload: c.tunnel.offload)
            }
        } catch { throw ControlError(listenFailure(c.listen, error)) }
        if let noIPv6 { logger.notice("\(noIPv6)") }
        if !c.dns.isEmpty { logger.info("pushing DNS to clients: \(pushedDNSText(c.dns))") }
        if c.allowAnyClient { logger.warning("--allow-any-client: any client key is admitted; use an allow-list outside the lab") }
        logger.info("\(cryptoProvider)")
        logger.info(
            "server listening on \(socket.localEndpoint), protocol \(c.tunnel.protocolMode.rawValue), public key \(privateKey.publicKey.base64), device \(device.name) \(prefix)\(c.address6.map { " \($0)" } ?? ""), IPv6 egress \(egress6 ?? "none"), \(allowList.clients.count) allowed client(s), TSO \(device.offloadsEnabled ? "on" : "off"), TUN USO \(device.udpOffloadEnabled ? "on" : "off"), UDP GSO \(socket.usesSegmentationOffload ? "on" : "off"), UDP GRO \(socket.usesReceiveOffload ? "on" : "off")")
        let engine = TunnelEngine(
            state: state, device: device, socket: socket, clock: SystemClock(wallOffset: c.tunnel.clockOffset),
            logger: logger, settings: EngineSettings(mtu: c.tunnel.mtu))
        var follower: RegistryFollower? = nil
        if let registryStart {
            follower = try startRegistry(registryStart, c, logger: logger)
        }
        let routes = RoutedPrefixRoutes(
            installed: routedRoutes(allowList.routedPrefixes, c), routes: { [c] in routedRoutes($0, c) }, journal: instance.journal)
        defer { routes.stop() }
        let reload =
            follower?.makeReloader(engine: engine)
            ?? AllowListFile.reloader(
                engine: engine, clients: c.clientsFile, prefix: prefix, prefix6: c.address6, allowAnyClient: c.allowAnyClient,
                protocolMode: c.tunnel.protocolMode, routes: routes, logger: logger)
        defer { follower?.stop() }
        let status = try StatusServices.start(
            engine: engine, device: c.tunnel.device, listenPort: socket.localEndpoint.port,
            metricsAddress: c.tunnel.metrics, reload: reload,
            uapi: c.tunnel.protocolMode == .wireguard
                ? UAPISettings(privateKey: privateKey, presharedKey: responder.settings.psk, keeper: geteuid() == 0) : nil,
            logger: logger)
        defer { status.stop() }
        try runUntilSignalled(
            engine, device: c.tunnel.device, user: c.tunnel.user, logger: logger,
            adapters: { adapterStats(device, socket) }, reload: reload,
            afterDrop: {
                follower?.start()
                routes.start()
            })
    }

    /// Logs where the peers came from, opens the registry's cache (writing it when the database answered)
    /// and returns the thread that will follow the registry once started.
    static func startRegistry(_ start: RegistryStart, _ c: ServerConfiguration, logger: Logger) throws -> RegistryFollower {
        let owner = geteuid() == 0 ? Privileges.Account.named(c.tunnel.user ?? Privileges.defaultUserName) : nil
        let cache = try RegistryCache(directory: c.registryCacheDirectory, device: c.tunnel.device, owner: owner)
        if start.fromCache {
            logger.warning(
                "registry \(start.url.display) unavailable (\(start.failure ?? "")): serving the \(start.list.clients.count) cached peer(s) of \(cache.path) until it is back")
        } else {
            logger.info("registry \(start.url.display): \(start.list.clients.count) peer(s), schema version \(RegistrySchema.latest), cache \(cache.path)")
            for line in start.skipped { logger.warning("registry \(start.url.display): \(line), left out") }
            do throws(ControlError) { try cache.write(start.list, source: start.url.display) } catch { logger.warning("\(error.message)") }
        }
        return RegistryFollower(start: start, prefix: c.address, prefix6: c.address6, cache: cache, logger: logger)
    }
}

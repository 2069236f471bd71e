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
    /// The allow-list file.
    public var clientsFile = "keys/clients"
    /// Admit any client key (lab use).
    public var allowAnyClient = false
    /// Interface to MASQUERADE out of; nil for the default route's.
    public var egress: String?
    /// Leave forwarding and NAT to the operator.
    public var noNAT = false

    public init(address: IPv4Prefix) { self.address = address }
}

/// The one-line error for a `--listen` endpoint that could not be bound, with what to do for the usual
/// causes (bind(2): EADDRINUSE, EADDRNOTAVAIL).
func listenFailure(_ endpoint: Endpoint, _ error: IOError) -> String {
    var hint = ""
    if error.call == "bind" && error.errno == EADDRINUSE {
        hint = "; another process uses that UDP port (`ss -lunp` names it): stop it or choose another, e.g. --listen [::]:51821"
    } else if error.call == "bind" && error.errno == EADDRNOTAVAIL {
        hint = "; that address is not on this host (`ip addr` lists them), e.g. --listen [::]:\(endpoint.port)"
    }
    return "--listen \(endpoint): \(error)\(hint)"
}

/// Runs a server.
public enum ServerDaemon {
    /// The host changes a server makes: the device step, then (unless `noNAT`) forwarding and NAT. What
    /// `--dry-run` prints and what `run` applies.
    ///
    /// - Throws: `ControlError` when the egress interface cannot be found, or no firewall is installed.
    public static func plan(_ c: ServerConfiguration) throws -> Plan {
        var plan = Plan([c.tunnel.deviceChange(address: "\(c.address)")])
        if !c.noNAT {
            guard let egressDevice = c.egress ?? HostNetwork.defaultRoute()?.device else {
                throw ControlError("no default route to find the egress interface for NAT: pass --egress IF (or --no-nat)")
            }
            guard HostNetwork.interfaceExists(egressDevice) else {
                throw ControlError("--egress \(egressDevice): no such interface here; `ip link` lists them")
            }
            plan.changes += Planner.server(
                ServerPlanInput(
                    tunDevice: c.tunnel.device, tunnelNetwork: "\(c.address.network)/\(c.address.length)",
                    egressDevice: egressDevice, mtu: c.tunnel.mtu,
                    iptablesForwardExists: HostNetwork.iptablesForwardChainExists(),
                    firewall: try c.tunnel.firewallBackend())
            ).changes
        }
        return plan
    }

    /// Runs the server until SIGINT or SIGTERM (returns) or an engine failure (throws); with `dryRun`,
    /// prints the plan and returns.
    public static func run(_ c: ServerConfiguration) throws {
        blockTerminationSignals()
        Privileges.disableCoreDumps()  // before any key is in memory
        let logger = c.tunnel.makeLogger("tunvpn")
        let privateKey = try KeyFiles.loadPrivateKey(c.keyFile)
        let prefix = c.address
        let allowList = try AllowListFile.loadAllowList(c.clientsFile, prefix: prefix, allowAnyClient: c.allowAnyClient)
        let responder = HandshakeResponder(
            localStatic: privateKey, settings: try c.tunnel.handshakeSettings(), acceptedSuites: try c.tunnel.cipherSuites())
        let state = TunnelState(
            role: .server(
                ServerSettings(responder: responder, address: prefix, allowList: allowList, allowAnyClient: c.allowAnyClient)),
            timers: c.tunnel.timers)
        let plan = try plan(c)
        if c.tunnel.dryRun {
            print(plan.script, terminator: "")
            return
        }
        // Ownership first: nothing of a running instance may be touched, not even its leftovers.
        let instance = try HostSetup.claim(device: c.tunnel.device)
        defer { instance.finish() }
        try HostSetup.removeLeftovers(instance, logger: logger)
        try HostNetwork.preflight(plan)
        let device = try c.tunnel.openDevice()
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
        if c.allowAnyClient { logger.warning("--allow-any-client: any client key is admitted; use an allow-list outside the lab") }
        logger.info(
            "server listening on \(socket.localEndpoint), public key \(privateKey.publicKey.base64), device \(device.name) \(prefix), \(allowList.clients.count) allowed client(s), TSO \(device.offloadsEnabled ? "on" : "off"), TUN USO \(device.udpOffloadEnabled ? "on" : "off"), UDP GSO \(socket.usesSegmentationOffload ? "on" : "off"), UDP GRO \(socket.usesReceiveOffload ? "on" : "off")")
        let engine = TunnelEngine(
            state: state, device: device, socket: socket, clock: SystemClock(wallOffset: c.tunnel.clockOffset),
            logger: logger, settings: EngineSettings(mtu: c.tunnel.mtu))
        let reload = AllowListFile.reloader(
            engine: engine, clients: c.clientsFile, prefix: prefix, allowAnyClient: c.allowAnyClient, logger: logger)
        let status = try StatusServices.start(
            engine: engine, device: c.tunnel.device, listenPort: socket.localEndpoint.port,
            metricsAddress: c.tunnel.metrics, reload: reload, logger: logger)
        defer { status.stop() }
        try runUntilSignalled(
            engine, device: c.tunnel.device, user: c.tunnel.user, logger: logger,
            adapters: { adapterStats(device, socket) }, reload: reload)
    }
}

// `tunvpn server` and `tunvpn client`: load keys and settings, open the real TUN device and UDP socket,
// and run the engine until SIGINT/SIGTERM. SIGUSR1 prints the counters as one `stats:` line.

import ArgumentParser
import Crypto
import Engine
import Glibc
import Logging
import Platform
import Routing
import Synchronization
import Transport

/// Options both commands share.
struct CommonOptions: ParsableArguments {
    @Option(help: "TUN device name (a pre-created persistent device is used as it is).")
    var dev: String = "tun0"

    @Option(help: "Tunnel MTU.")
    var mtu: Int = 1420

    @Option(help: "File with a 32-byte pre-shared key (base64), mixed into the handshake as WireGuard's psk.")
    var psk: String?

    @Option(help: ArgumentHelp("Cipher suite to allow, repeatable, in preference order.", valueName: "NAME"))
    var suite: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Testing only: multiply every protocol timer by this factor.", visibility: .hidden))
    var timerScale: Double = 1

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Testing only: shift the wall clock used for handshake timestamps by SECONDS.", visibility: .hidden))
    var clockOffset: Int64 = 0

    /// The protocol timers (WireGuard's unless --timer-scale shrinks them for a test).
    var timers: ProtocolTimers { timerScale == 1 ? .standard : ProtocolTimers.standard.scaled(by: timerScale) }

    @Option(
        help: ArgumentHelp(
            "Packets the kernel queues on the TUN device for tunvpn before it drops (the kernel's default is 500).",
            valueName: "PACKETS"))
    var txqueuelen: Int = 1000

    @Flag(help: "Do not use TUN segmentation offloads (IFF_VNET_HDR with TSO and USO) or UDP GSO/GRO, even where the kernel has them.")
    var noOffload = false

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://ADDR:PORT/metrics.", valueName: "ADDR:PORT"))
    var metrics: String?

    @Option(
        help: ArgumentHelp(
            "The user to run as once setup is done, with CAP_NET_ADMIN alone (default: tunvpn if that user exists, else nobody; root keeps uid 0 and is not recommended).",
            valueName: "NAME"))
    var user: String?

    func validateCommon() throws {
        try validateInterfaceName(dev, option: "--dev")
        guard (576...9000).contains(mtu) else { throw ValidationError("--mtu must be between 576 and 9000") }
        guard (16...100_000).contains(txqueuelen) else {
            throw ValidationError("--txqueuelen must be between 16 and 100000 packets")
        }
        for name in suite where CipherSuites.named(name) == nil {
            let known = CipherSuites.all.map { $0.name }.joined(separator: ", ")
            throw ValidationError("unknown suite '\(name)' (known: \(known))")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        guard timerScale > 0 && timerScale <= 1 else { throw ValidationError("--timer-scale must be in (0, 1]") }
        if let metrics, Endpoint(metrics) == nil {
            throw ValidationError("--metrics '\(metrics)' must be ADDRESS:PORT, like 127.0.0.1:9586")
        }
        if let user, Privileges.Account.named(user) == nil {
            throw ValidationError(
                "--user '\(user)': no such user; create it (adduser --system --group --no-create-home \(user)) or name an existing one")
        }
    }

    func suites() throws -> [any CipherSuite.Type] {
        if suite.isEmpty { return CipherSuites.available }
        let chosen = suite.compactMap { CipherSuites.named($0) }
        let usable = chosen.filter { $0.isAvailable }
        guard !usable.isEmpty else {
            throw CLIError("none of the chosen suites runs on this machine (aes256gcm needs AES-NI)")
        }
        return usable
    }

    func settings() throws -> HandshakeSettings {
        guard let psk else { return HandshakeSettings() }
        let key = try KeyFiles.loadPrivateKey(psk)
        return HandshakeSettings(psk: key.secret)
    }

    func makeLogger(_ label: String) -> Logger {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    func openDevice() throws -> TunDevice {
        do { return try TunDevice.open(name: dev, offload: !noOffload) } catch { throw CLIError("\(error)") }
    }
}

extension TunError: KeyFileErrorConvertible { var oneLine: String { description } }
extension IOError: KeyFileErrorConvertible { var oneLine: String { description } }

/// Parses "HOST:PORT" and resolves HOST (IPv4).
func resolveEndpoint(_ text: String, option: String) throws -> Endpoint {
    if let e = Endpoint(text) { return e }
    guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
        throw CLIError("\(option) '\(text)' is not HOST:PORT")
    }
    let host = String(text[..<colon])
    do { return try UDPSocket.resolve(host: host, port: port) } catch {
        throw CLIError("\(option): cannot resolve '\(host)': \(error)")
    }
}

/// What a reload of the allow-list did: the line logged, and what `tunvpn reload` prints.
struct ReloadOutcome: Sendable, Equatable {
    /// False when the server kept its old list (or has none: a client).
    var succeeded: Bool
    /// One line: the counts, or the reason with the file and line.
    var message: String
}

/// Runs `engine` until SIGINT/SIGTERM (exit 0) or an engine failure (exit 1); SIGUSR1 prints stats,
/// SIGHUP calls `reload` (which logs its outcome). The instance lock (`HostSetup.claim`) names this
/// process while it runs.
func runUntilSignalled(
    _ engine: TunnelEngine, device: String, user: String?, logger: Logger, adapters: (() -> String)? = nil,
    reload: AllowListReloader? = nil
) throws {
    /// The counters, then the adapters' own (offload and skip counts) when given.
    func statsLine() -> String { engine.counters.statsLine + (adapters.map { " " + $0() } ?? "") }
    var set = terminationSignals()
    // Setup is done: nothing from here on needs root or more than CAP_NET_ADMIN (the client's routes at
    // tunnel-up, teardown's ip/nft and sysctls, through the journal opened while root). Capabilities are
    // per thread, so drop them before the engine's threads exist; they inherit the reduced sets.
    try dropPrivileges(user: user, logger: logger)
    engine.start()
    var timeout = timespec(tv_sec: 0, tv_nsec: 200_000_000)
    while true {
        let signal = sigtimedwait(&set, nil, &timeout)
        if signal == SIGUSR1 {
            printLine(statsLine())
        } else if signal == SIGHUP {
            if let reload { _ = reload.fromFile() } else { logger.notice("SIGHUP: nothing to reload for a client") }
        } else if signal == SIGINT || signal == SIGTERM {
            logger.info("signal \(signal == SIGINT ? "SIGINT" : "SIGTERM"): shutting down")
            engine.stop()
            printLine(statsLine())
            return
        }
        if !engine.isRunning {
            engine.stop()
            printLine(statsLine())
            let message = engine.failure.withLock { $0 } ?? "engine stopped"
            throw CLIError(message)
        }
    }
}

/// The TUN device's and UDP socket's own counters, as `key=value` pairs for the `stats:` line.
func adapterStats(_ device: TunDevice, _ socket: UDPSocket) -> String {
    let t = device.stats
    let u = socket.stats
    return "tun.segmented_reads=\(t.segmentedReads) tun.merged_writes=\(t.mergedWrites) tun.rejected_writes=\(t.rejectedWrites) "
        + "tun.truncated_reads=\(t.truncatedReads) udp.skipped_sends=\(u.skippedSends) udp.truncated_receives=\(u.truncatedReceives)"
}

/// The signals the main thread waits for with sigtimedwait(2).
func terminationSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGINT, SIGTERM, SIGUSR1, SIGHUP] { sigaddset(&set, s) }
    return set
}

/// Blocks SIGINT, SIGTERM, SIGUSR1 and SIGHUP first thing, before any host change or thread exists:
/// a signal that arrives during setup then waits for the main loop (which tears down what was set up)
/// instead of killing the process half way; every thread inherits the mask, so only the main thread
/// receives them. Children started with CommandRunner get an empty mask.
func blockTerminationSignals() {
    var set = terminationSignals()
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Writes one line to stdout at once (no buffering surprises for log readers).
func printLine(_ line: String) {
    let text = line + "\n"
    _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(1, $0.baseAddress, $0.count - 1) }
}

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accept clients, decrypt their packets into a TUN device, and send replies back encrypted.",
        discussion: """
            The allow-list (--clients) holds one client public key per line, optionally followed by a fixed
            tunnel address and a # comment; other clients get addresses from the --address prefix.
            Examples:
              tunvpn server --key keys/server.key
              tunvpn server --key keys/server.key --listen 0.0.0.0:51820 --address 10.8.0.1/16 --clients keys/clients
              tunvpn server --key keys/server.key --allow-any-client      # lab use only
              tunvpn server --config config/server.toml --mtu 1380        # a file, one option overridden
            """)

    @Option(help: "The server's private key file.")
    var key: String = "keys/server.key"

    @Option(help: "UDP address and port to listen on.")
    var listen: String = "0.0.0.0:51820"

    @Option(help: "The server's tunnel address and the tunnel prefix.")
    var address: String = "10.8.0.1/16"

    @Option(help: "Allow-list file: one client public key per line, optional address and # comment.")
    var clients: String = "keys/clients"

    @Flag(help: "Admit any client key (lab use; logs a warning).")
    var allowAnyClient = false

    @Option(help: "Interface to MASQUERADE tunnel traffic out of (default: the default route's).")
    var egress: String?

    @Flag(help: "Do not enable forwarding or NAT (the operator handles it).")
    var noNat = false

    @OptionGroup var common: CommonOptions
    @OptionGroup var host: HostOptions
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        try common.validateCommon()
        guard let prefix = IPv4Prefix(address), prefix.length <= 30 else {
            throw ValidationError("--address '\(address)' must be an IPv4 address with a prefix of /30 or wider, like 10.8.0.1/16")
        }
        guard Endpoint(listen) != nil else { throw ValidationError("--listen '\(listen)' must be ADDRESS:PORT, like 0.0.0.0:51820") }
        if let egress { try validateInterfaceName(egress, option: "--egress") }
    }

    func run() throws {
        blockTerminationSignals()
        Privileges.disableCoreDumps()  // before any key is in memory
        try reportingErrors {
            let logger = common.makeLogger("tunvpn")
            let privateKey = try KeyFiles.loadPrivateKey(key)
            guard let prefix = IPv4Prefix(address), let listenEndpoint = Endpoint(listen) else {
                throw CLIError("validated above")
            }
            let allowList = try Self.loadAllowList(clients, prefix: prefix, allowAnyClient: allowAnyClient)
            let responder = HandshakeResponder(
                localStatic: privateKey, settings: try common.settings(), acceptedSuites: try common.suites())
            let state = TunnelState(
                role: .server(ServerSettings(responder: responder, address: prefix, allowList: allowList, allowAnyClient: allowAnyClient)),
                timers: common.timers)
            var plan = Plan()
            if !noNat {
                guard let egressDevice = egress ?? HostNetwork.defaultRoute()?.device else {
                    throw CLIError("no default route to find the egress interface for NAT: pass --egress IF (or --no-nat)")
                }
                guard HostNetwork.interfaceExists(egressDevice) else {
                    throw CLIError("--egress \(egressDevice): no such interface here; `ip link` lists them")
                }
                plan = Planner.server(
                    ServerPlanInput(
                        tunDevice: common.dev, tunnelNetwork: "\(prefix.network)/\(prefix.length)", egressDevice: egressDevice,
                        mtu: common.mtu, iptablesForwardExists: HostNetwork.iptablesForwardChainExists(),
                        firewall: try host.backend()))
            }
            if host.dryRun {
                print("ip addr add \(prefix) dev \(common.dev)\nip link set \(common.dev) mtu \(common.mtu) txqueuelen \(common.txqueuelen) up")
                print(plan.script, terminator: "")
                return
            }
            // Ownership first: nothing of a running instance may be touched, not even its leftovers.
            let instance = try HostSetup.claim(device: common.dev)
            defer { instance.finish() }
            try HostSetup.removeLeftovers(instance, logger: logger)
            try HostNetwork.preflight(plan)
            let device = try common.openDevice()
            do { try device.configure(address: prefix, mtu: common.mtu, transmitQueueLength: common.txqueuelen) } catch { throw CLIError("\(error)") }
            defer { HostSetup.tearDown(instance, logger: logger) }
            try HostSetup.apply(plan, to: instance, logger: logger)
            let socket = try UDPSocket.bind(listenEndpoint, segmentationOffload: !common.noOffload)
            if allowAnyClient { logger.warning("--allow-any-client: any client key is admitted; use an allow-list outside the lab") }
            logger.info(
                "server listening on \(socket.localEndpoint), public key \(privateKey.publicKey.base64), device \(device.name) \(prefix), \(allowList.clients.count) allowed client(s), TSO \(device.offloadsEnabled ? "on" : "off"), TUN USO \(device.udpOffloadEnabled ? "on" : "off"), UDP GSO \(socket.usesSegmentationOffload ? "on" : "off"), UDP GRO \(socket.usesReceiveOffload ? "on" : "off")")
            let engine = TunnelEngine(
                state: state, device: device, socket: socket, clock: SystemClock(wallOffset: common.clockOffset),
                logger: logger, settings: EngineSettings(mtu: common.mtu))
            let reload = Self.reloader(engine: engine, clients: clients, prefix: prefix, allowAnyClient: allowAnyClient, logger: logger)
            let status = try StatusServices.start(
                engine: engine, device: common.dev, listenPort: socket.localEndpoint.port,
                metricsAddress: common.metrics, reload: reload, logger: logger)
            defer { status.stop() }
            try runUntilSignalled(
                engine, device: common.dev, user: common.user, logger: logger, adapters: { adapterStats(device, socket) },
                reload: reload)
        }
    }

    /// The reload of the allow-list, for SIGHUP and `tunvpn reload`.
    static func reloader(
        engine: TunnelEngine, clients: String, prefix: IPv4Prefix, allowAnyClient: Bool, logger: Logger
    ) -> AllowListReloader {
        AllowListReloader(
            path: absolutePath(clients), logger: logger,
            load: { bytes in
                if let bytes { return try parseAllowList(bytes, file: clients, prefix: prefix) }
                return try loadAllowList(clients, prefix: prefix, allowAnyClient: allowAnyClient)
            },
            apply: { list in "\(list.clients.count) client(s), \(engine.reload(allowList: list))" })
    }

    /// Reads and checks the allow-list file `clients` (missing is fine with --allow-any-client).
    static func loadAllowList(_ clients: String, prefix: IPv4Prefix, allowAnyClient: Bool) throws -> AllowList {
        var st = stat()
        if lstat(clients, &st) != 0 {
            if errno == EACCES {
                throw CLIError(
                    "\(clients): allow-list not readable by \(Privileges.Account.withID(geteuid()).name), the user this server runs as; run `tunvpn reload` as root (it reads the file for the server)")
            }
            guard allowAnyClient else {
                throw CLIError(
                    "\(clients): allow-list not found; add each client's public key to it (one per line, e.g. `cat client.pub >> \(clients)`), or pass --allow-any-client for lab use")
            }
            return AllowList()
        }
        return try parseAllowList(KeyFiles.readConfigurationFile(clients, what: "allow-list"), file: clients, prefix: prefix)
    }

    /// Parses allow-list text and checks that its fixed addresses are client addresses in `prefix`.
    static func parseAllowList(_ bytes: [UInt8], file clients: String, prefix: IPv4Prefix) throws -> AllowList {
        let allowList: AllowList
        do { allowList = try AllowList(parsing: String(decoding: bytes, as: UTF8.self)) } catch {
            throw CLIError("\(clients): \(error)")
        }
        for c in allowList.clients {
            if let a = c.address, !prefix.contains(a) || a == prefix.address {
                throw CLIError("\(clients): address \(a) for \(c.key.base64) is not a client address in \(prefix)")
            }
        }
        return allowList
    }
}

/// `path` made absolute against the working directory, so that another process can find the file.
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = getcwd(nil, 0) else { return path }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// A server's allow-list reload, shared by SIGHUP and the status socket: one reload runs at a time, each
/// logs its outcome and returns it. A reload either reads the file itself (SIGHUP, `reload`), which a
/// server that gave up root may not be allowed to do, or takes the text `tunvpn reload` read as root.
final class AllowListReloader: Sendable {
    /// The allow-list file, as an absolute path.
    let path: String
    private let logger: Logger
    private let load: @Sendable ([UInt8]?) throws -> AllowList
    private let apply: @Sendable (AllowList) -> String
    private let oneAtATime = Mutex(())

    /// - Parameters:
    ///   - load: reads the file (given nil) or parses the given text, checking it.
    ///   - apply: gives the list to the engine and describes what changed.
    init(
        path: String, logger: Logger, load: @escaping @Sendable ([UInt8]?) throws -> AllowList,
        apply: @escaping @Sendable (AllowList) -> String
    ) {
        self.path = path
        self.logger = logger
        self.load = load
        self.apply = apply
    }

    /// Re-reads the file.
    func fromFile() -> ReloadOutcome { reload(nil) }

    /// Takes `bytes` as the file's text.
    func fromBytes(_ bytes: [UInt8]) -> ReloadOutcome { reload(bytes) }

    private func reload(_ bytes: [UInt8]?) -> ReloadOutcome {
        oneAtATime.withLock { _ in
            do {
                let list = try load(bytes)
                let message = "reloaded \(path): " + apply(list)
                logger.notice("\(message)")
                return ReloadOutcome(succeeded: true, message: message)
            } catch {
                let message = "reload failed, kept the current allow-list: \(error)"
                logger.error("\(message)")
                return ReloadOutcome(succeeded: false, message: message)
            }
        }
    }
}

struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to a server and carry this host's packets through the tunnel.",
        discussion: """
            The client's own key defaults to keys/client.key; its public key (keys/client.pub) must be on the
            server's allow-list. The tunnel address comes from the server.
            Examples:
              tunvpn client --peer-key keys/server.pub --endpoint vpn.example.com:51820
              tunvpn client --peer-key keys/server.pub --endpoint 203.0.113.7:51820 --keepalive 25
              tunvpn client --config config/client.toml --route 10.8.0.0/16   # the file's routes replaced
            """)

    @Option(help: "The server's public key file.")
    var peerKey: String

    @Option(help: "The server's UDP endpoint, HOST:PORT.")
    var endpoint: String

    @Option(help: "This client's private key file.")
    var key: String = "keys/client.key"

    @Option(help: "Send a keepalive at least this often (seconds), for clients behind NAT.")
    var keepalive: UInt64?

    @Option(help: ArgumentHelp("Route only this network through the tunnel (repeatable; split tunnel).", valueName: "CIDR"))
    var route: [String] = []

    @Flag(help: "Add no routes (the operator routes traffic into the tunnel).")
    var noRoutes = false

    @Flag(help: "Gateway mode: forward and MASQUERADE traffic from other LAN hosts into the tunnel.")
    var gateway = false

    @Flag(help: "Kill switch: block all IPv4 and IPv6 traffic outside the tunnel while the client runs, and after a crash until `tunvpn down` or the next start with --lockdown, which replaces it without a gap.")
    var lockdown = false

    @OptionGroup var common: CommonOptions
    @OptionGroup var host: HostOptions
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        try common.validateCommon()
        if let k = keepalive, !(1...65535).contains(k) { throw ValidationError("--keepalive must be 1...65535 seconds") }
        for r in route where IPv4Prefix(r) == nil || !r.contains("/") {
            throw ValidationError("--route '\(r)' is not an IPv4 network like 10.0.0.0/8")
        }
        if noRoutes && !route.isEmpty { throw ValidationError("--route and --no-routes cannot be combined") }
    }

    func run() throws {
        blockTerminationSignals()
        Privileges.disableCoreDumps()  // before any key is in memory
        try reportingErrors {
            let logger = common.makeLogger("tunvpn")
            let privateKey: PrivateKey
            do { privateKey = try KeyFiles.loadPrivateKey(key) } catch {
                if !KeyFiles.exists(key) {
                    let base = key.hasSuffix(".key") ? String(key.dropLast(4)) : key
                    throw CLIError(
                        "\(key): private key file not found; create it with `tunvpn keygen --name client` and add \(base).pub to the server's allow-list (one key per line in its keys/clients)")
                }
                throw error
            }
            let serverKey = try KeyFiles.loadPublicKey(peerKey)
            let serverEndpoint = try resolveEndpoint(endpoint, option: "--endpoint")
            let initiator = HandshakeInitiator(
                localStatic: privateKey, serverKey: serverKey, settings: try common.settings(),
                offeredSuites: try common.suites())
            // The server's assignment may not take over this host's LANs, the server's own address or more
            // than the --route prefixes (AssignmentBounds).
            let bounds = AssignmentBounds(
                localNetworks: HostNetwork.connectedNetworks(excluding: common.dev).compactMap { n in
                    IPv4Prefix(n.network).map { AssignmentBounds.Network($0, name: "the local network \(n.network) on \(n.device)") }
                },
                routes: noRoutes ? [] : route.compactMap { IPv4Prefix($0) })
            let state = TunnelState(
                role: .client(ClientSettings(
                    initiator: initiator, endpoint: serverEndpoint, persistentKeepalive: keepalive, assignmentBounds: bounds)),
                timers: common.timers)
            // How the server is reached now, before the tunnel's routes exist.
            let serverRoute = HostNetwork.route(to: "\(serverEndpoint.address)")
            let plan = Planner.client(
                ClientPlanInput(
                    tunDevice: common.dev, serverAddress: "\(serverEndpoint.address)", serverRoute: serverRoute,
                    routes: noRoutes ? nil : route.map { p in IPv4Prefix(p).map { "\($0.network)/\($0.length)" } ?? p },
                    gateway: gateway, mtu: common.mtu, firewall: try host.backend()))
            let lockdownPlan = lockdown
                ? Planner.lockdown(tunDevice: common.dev, server: "\(serverEndpoint.address)", port: serverEndpoint.port)
                : Plan()
            if host.dryRun {
                print(lockdownPlan.script, terminator: "")
                print("# \(common.dev): address assigned by the server at the handshake\nip link set \(common.dev) mtu \(common.mtu) txqueuelen \(common.txqueuelen) up")
                print(plan.script, terminator: "")
                return
            }
            // Ownership first: nothing of a running instance may be touched, not even its leftovers. With
            // --lockdown the previous run's kill switch stays until the new one replaces it atomically.
            let instance = try HostSetup.claim(device: common.dev)
            defer { instance.finish() }
            try HostSetup.removeLeftovers(
                instance, keeping: lockdown ? [Planner.lockdownUndo(device: common.dev)] : [], logger: logger)
            try HostNetwork.preflight(plan)
            if lockdown {
                guard (try? host.backend()) == .nftables else { throw CLIError("--lockdown needs nftables (apt-get install nftables)") }
                try HostNetwork.preflight(lockdownPlan)
            }
            let device = try common.openDevice()
            let socket = try UDPSocket.bind(Endpoint(address: .any, port: 0), segmentationOffload: !common.noOffload)
            let mtu = common.mtu
            let queueLength = common.txqueuelen
            let dev = common.dev
            defer { HostSetup.tearDown(instance, logger: logger) }
            // The kill switch goes up before the first handshake and stays while the client reconnects.
            if lockdown { try HostSetup.apply(lockdownPlan, to: instance, logger: logger) }
            logger.info(
                "client connecting to \(serverEndpoint) from \(socket.localEndpoint), public key \(privateKey.publicKey.base64), device \(device.name), TSO \(device.offloadsEnabled ? "on" : "off"), TUN USO \(device.udpOffloadEnabled ? "on" : "off"), UDP GSO \(socket.usesSegmentationOffload ? "on" : "off"), UDP GRO \(socket.usesReceiveOffload ? "on" : "off")")
            let hooks = EngineHooks(
                tunnelUp: { assignment in
                    do { try device.configure(address: assignment.client, mtu: mtu, transmitQueueLength: queueLength) } catch { throw CLIError("\(error)") }
                    try HostSetup.apply(plan, to: instance, logger: logger)
                },
                addressChanged: { assignment in
                    // SIOCSIFADDR replaces the address; the plan's routes name the device, not the address.
                    do { try device.configure(address: assignment.client, mtu: mtu, transmitQueueLength: queueLength) } catch { throw CLIError("\(error)") }
                })
            let engine = TunnelEngine(
                state: state, device: device, socket: socket, clock: SystemClock(wallOffset: common.clockOffset),
                logger: logger, hooks: hooks, settings: EngineSettings(mtu: mtu))
            let status = try StatusServices.start(
                engine: engine, device: dev, listenPort: socket.localEndpoint.port,
                metricsAddress: common.metrics, reload: nil, logger: logger)
            defer { status.stop() }
            try runUntilSignalled(engine, device: dev, user: common.user, logger: logger, adapters: { adapterStats(device, socket) })
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running server re-read its allow-list, and print what changed.",
        discussion: """
            Clients added to the file can connect at once; clients removed lose their sessions; everyone
            else keeps theirs. If the file is wrong the server keeps its current list, and this exits 1 with
            the reason. Run it in the network namespace of the server; without --dev it finds the server.
            SIGHUP does the same, with the outcome in the server's log only.
            Example:
              echo "$(cat keys/laptop.pub) 10.8.0.9  # laptop" >> keys/clients && tunvpn reload
            """)

    @Option(help: "TUN device name of the server instance (default: the only one in this network namespace).")
    var dev: String?

    @Option(help: "The server instance run by this process id (systemd's $MAINPID), instead of --dev.")
    var pid: Int32?

    func validate() throws {
        if let dev { try validateInterfaceName(dev, option: "--dev") }
        if dev != nil && pid != nil { throw ValidationError("--dev and --pid cannot be combined; pass one") }
    }

    func run() throws {
        try reportingErrors {
            let device: String
            if let dev {
                device = dev
            } else if let pid {
                guard let owned = try HostNetwork.instances().first(where: { $0.owner == pid }) else {
                    throw CLIError("pid \(pid) runs no tunvpn instance in this network namespace")
                }
                device = owned.device
            } else {
                let running = try HostNetwork.instances().filter { $0.owner != nil }
                device = try soleInstance(of: running, "the server to reload").device
            }
            let path = HostNetwork.statusSocketPath(device: device)
            let reply: [UInt8]
            // The server may run as a user that cannot read its allow-list: read it here, as root, with the
            // same checks, and hand over its text. Without a path (a client) it answers for itself.
            var allowList: [UInt8]? = nil
            if let asked = try? UnixSocketClient.fetch(path, request: "allow-list-path", timeout: 10) {
                let answer = String(decoding: asked, as: UTF8.self).trimmingSuffix("\n")
                if answer.hasPrefix("ok /") {
                    let file = String(answer.dropFirst(3))
                    if KeyFiles.exists(file) { allowList = try KeyFiles.readConfigurationFile(file, what: "allow-list") }
                }
            }
            do throws(IOError) {
                if let allowList {
                    reply = try UnixSocketClient.fetch(path, request: "reload-file", body: allowList, timeout: 30)
                } else {
                    reply = try UnixSocketClient.fetch(path, request: "reload", timeout: 30)
                }
            } catch {
                if error.errno == ENOENT || error.errno == ECONNREFUSED {
                    if let pid = InstanceLock.owner(device: device), pid > 0 {
                        throw CLIError(
                            "tunvpn pid \(pid) on \(device) has no status socket to answer; `kill -HUP \(pid)` reloads it, with the outcome in its log")
                    }
                    throw CLIError("no tunvpn instance on \(device) in this network namespace")
                }
                throw CLIError("cannot ask the instance on \(device) to reload (\(path)): \(Show.reason(error))")
            }
            let text = String(decoding: reply, as: UTF8.self).trimmingSuffix("\n")
            if text.hasPrefix("ok ") {
                print(String(text.dropFirst(3)))
            } else if text.hasPrefix("error ") {
                throw CLIError(String(text.dropFirst(6)))
            } else {
                throw CLIError("the instance on \(device) gave no reload outcome (an older tunvpn?): \(text.prefix(200))")
            }
        }
    }
}

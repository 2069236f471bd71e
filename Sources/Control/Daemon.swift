// The composition root of `tunvpn server` and `tunvpn client`: the settings both roles share, and the run
// loop that keeps the engine going until SIGINT/SIGTERM. SIGUSR1 prints the counters as one `stats:` line;
// SIGHUP reloads a server's allow-list. `ServerDaemon` and `ClientDaemon` wire the real adapters, the plan
// and the engine from their settings; the command line only fills the settings in from flags.

import Crypto
import Engine
import Glibc
import Logging
import Platform
import Routing
import Transport

/// What a server and a client share: the device, the protocol's options, the host options and the logging.
/// The command line's `CommonOptions` and `HostOptions` validate the values before they get here.
public struct TunnelSettings: Sendable {
    /// TUN device name (a pre-created persistent device is used as it is).
    public var device = "tun0"
    public var mtu = 1420
    /// File with a 32-byte pre-shared key (base64), mixed into the handshake as WireGuard's psk.
    public var pskFile: String?
    /// The pre-shared key itself, from a config file's `preshared-key` (instead of `pskFile`).
    public var psk: PrivateKey?
    /// Cipher suites to allow, in preference order; empty for every suite this machine runs.
    public var suites: [String] = []
    /// Who computes the per-packet AEAD (`--crypto-provider`); the frames are the same bytes either way.
    public var cryptoProvider: AEADProviderChoice = .auto
    public var logLevel: Logger.Level = .info
    /// Testing only: every protocol timer multiplied by this factor, in (0, 1].
    public var timerScale: Double = 1
    /// Testing only: seconds added to the wall clock used for handshake timestamps.
    public var clockOffset: Int64 = 0
    /// Packets the kernel queues on the TUN device for tunvpn before it drops.
    public var transmitQueueLength = 1000
    /// TUN segmentation offloads and UDP GSO/GRO where the kernel has them.
    public var offload = true
    /// `ADDR:PORT` of the Prometheus metrics endpoint, if any (`[IPV6]:PORT` and `HOST:PORT` too; see
    /// `EndpointText`).
    public var metrics: String?
    /// The user to run as once setup is done (nil: tunvpn if that user exists, else nobody).
    public var user: String?
    /// Print the host changes as commands and exit without making them.
    public var dryRun = false
    /// `nftables` or `iptables`; nil picks the one installed (nftables first).
    public var firewall: String?
    /// The wire protocol (`--protocol`, config key `protocol`).
    public var protocolMode: ProtocolMode = .tunvpn

    public init() {}

    /// The protocol timers (WireGuard's unless `timerScale` shrinks them for a test).
    public var timers: ProtocolTimers { timerScale == 1 ? .standard : ProtocolTimers.standard.scaled(by: timerScale) }

    /// The suites to offer or accept, those this machine runs.
    ///
    /// - Throws: `ControlError` when none of the chosen suites runs here.
    public func cipherSuites() throws(ControlError) -> [any CipherSuite.Type] {
        // WireGuard's transport data is ChaCha20-Poly1305 only (the command line refuses another --suite).
        if protocolMode == .wireguard { return [ChaCha20Poly1305.self] }
        if suites.isEmpty { return CipherSuites.available }
        let usable = suites.compactMap { CipherSuites.named($0) }.filter { $0.isAvailable }
        guard !usable.isEmpty else {
            throw ControlError("none of the chosen suites runs on this machine (aes256gcm needs AES-NI)")
        }
        return usable
    }

    /// Resolves `cryptoProvider` (with `auto`, OpenSSL only after its self-test against libsodium) and makes
    /// it the process's default for every session from now on. Call once at startup, before any session
    /// exists. Returns the line to log once setup is done (not before: an error or a dry run prints nothing
    /// else).
    ///
    /// - Throws: `ControlError` when `openssl` was asked for and cannot run here.
    func applyCryptoProvider() throws(ControlError) -> String {
        let selection: AEADProviderSelection
        do { selection = try AEADProviders.select(cryptoProvider) } catch { throw ControlError(error.description) }
        AEADProviders.setProcessDefault(selection.provider)
        return "crypto provider: \(selection.provider), \(selection.summary)"
    }

    /// The handshake's settings: the pre-shared key, when a file names one.
    public func handshakeSettings() throws -> HandshakeSettings {
        if let psk { return HandshakeSettings(psk: psk.secret) }
        guard let pskFile else { return HandshakeSettings() }
        let key = try KeyFiles.loadPresharedKey(pskFile)
        return HandshakeSettings(psk: key.secret)
    }

    /// The firewall backend to plan with.
    public func firewallBackend() throws(ControlError) -> FirewallBackend { try Control.firewallBackend(named: firewall) }

    /// A logger writing to stderr at `logLevel` (bootstraps the logging system: once per process).
    func makeLogger(_ label: String) -> Logger {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }

    func openDevice() throws(ControlError) -> TunDevice {
        do { return try TunDevice.open(name: device, offload: offload) } catch { throw ControlError("\(error)") }
    }

    /// Opens the device for `instance`. A pre-created persistent device (one found before opening) is left
    /// as it was found: what puts it back (`Planner.restoreDevice`) is journaled before anything changes it,
    /// so a clean exit, `tunvpn down` and the next start after a crash all restore it. An unprivileged run
    /// has no journal and leaves the device as its owner set it up.
    func openDevice(for instance: InstanceFiles) throws -> TunDevice {
        let found = TunDevice.foundState(of: device)
        let opened = try openDevice()
        if let found, let journal = instance.journal {
            for entry in Planner.restoreDevice(device, found: found, ipv6: HostNetwork.ipv6Available) { try journal.append(entry) }
        }
        return opened
    }

    /// The device step of both plans: addresses (nil for a client until its handshake), MTU and queue length.
    func deviceChange(address: String?, address6: String? = nil) -> Change {
        .device(
            DeviceSettings(device: device, address: address, address6: address6, mtu: mtu, transmitQueueLength: transmitQueueLength))
    }

    /// The tunnel device can carry IPv6: this host runs IPv6 and the MTU is at least IPv6's minimum
    /// link MTU of 1280 bytes (RFC 8200, section 5; the kernel drops IPv6 from a device below it).
    public var ipv6Capable: Bool { mtu >= 1280 && HostNetwork.ipv6Available }

    /// The steps before the device step: `Planner.quietIPv6` where the device will carry IPv6 and the
    /// change can be journaled (an unprivileged run, which cannot use the state directory, makes no host
    /// changes of its own; its device just keeps its link-local address).
    func quietIPv6Steps() -> [Change] {
        guard ipv6Capable, HostNetwork.stateDirectoryUsable, let step = Planner.quietIPv6(device: device) else { return [] }
        return [step]
    }
}

/// Why `command` (`tunvpn server`, `tunvpn client`) cannot run with these privileges, or nil: it opens the
/// TUN device and changes addresses, routes and firewall rules, all of which need CAP_NET_ADMIN in the
/// effective set (capabilities(7)); root has it unless a container or `capsh --drop` took it away.
public func missingPrivilegeProblem(command: String, effectiveCapabilities: UInt64, euid: uid_t, user: String) -> String? {
    guard effectiveCapabilities & Privileges.netAdminMask == 0 else { return nil }
    let who = euid == 0 ? "root without CAP_NET_ADMIN (a container or `capsh --drop` removed it)" : "\(user) (uid \(euid)) without CAP_NET_ADMIN"
    return "\(command) needs root or CAP_NET_ADMIN to open the TUN device and change routes and firewall rules, and runs as \(who); run it as root (sudo \(command) ...) or give it CAP_NET_ADMIN (systemd's AmbientCapabilities=CAP_NET_ADMIN, or `setcap cap_net_admin+ep`); --dry-run needs neither"
}

/// Refuses to start `command` without CAP_NET_ADMIN (`missingPrivilegeProblem`), before anything that
/// would fail later for that reason with an error that blames something else (a key file, NAT support).
func requireNetworkAdministration(_ command: String) throws(ControlError) {
    let euid = geteuid()
    if let problem = missingPrivilegeProblem(
        command: command, effectiveCapabilities: Privileges.effectiveCapabilities, euid: euid,
        user: Privileges.Account.withID(euid).name)
    {
        throw ControlError(problem)
    }
}

/// Applies `Change.device` steps (`HostSetup.apply`): Platform's `TunDevice` does it with ioctls
/// (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFMTU, SIOCSIFTXQLEN, SIOCSIFFLAGS; then the IPv6 address with
/// SIOCSIFADDR/SIOCDIFADDR on an AF_INET6 socket, `HostNetwork.setIPv6Address`); tests record the calls.
public protocol DeviceConfiguring {
    /// Gives the device `settings`, whose address is known.
    func apply(_ settings: DeviceSettings) throws(ControlError)
}

extension TunDevice: DeviceConfiguring {
    public func apply(_ settings: DeviceSettings) throws(ControlError) {
        guard let text = settings.address, let address = IPv4Prefix(text) else {
            preconditionFailure("a device step is applied only once its address is known (Plan.withDeviceAddress)")
        }
        do { try configure(address: address, mtu: settings.mtu, transmitQueueLength: settings.transmitQueueLength) } catch {
            throw ControlError("\(error)")
        }
        let address6 = settings.address6.flatMap { IPv6Prefix($0) }
        // A device without IPv6 (MTU below 1280, IPv6 off) has no IPv6 address to remove either.
        guard address6 != nil || HostNetwork.ipv6Available && settings.mtu >= 1280 else { return }
        do { try HostNetwork.setIPv6Address(address6, device: name) } catch {
            throw ControlError("\(name): cannot set its IPv6 address \(settings.address6 ?? "(none)"): \(error)")
        }
    }
}

/// Runs `engine` until SIGINT/SIGTERM (exit 0) or an engine failure (exit 1); SIGUSR1 prints stats,
/// SIGHUP calls `reload` (which logs its outcome). The instance lock (`HostSetup.claim`) names this
/// process while it runs.
public func runUntilSignalled(
    _ engine: TunnelEngine, device: String, user: String?, logger: Logger, adapters: (() -> String)? = nil,
    reload: AllowListReloader? = nil, afterDrop: (() -> Void)? = nil
) throws {
    /// The counters, then the adapters' own (offload and skip counts) when given.
    func statsLine() -> String { engine.counters.statsLine + (adapters.map { " " + $0() } ?? "") }
    var set = terminationSignals()
    // Setup is done: nothing from here on needs root or more than CAP_NET_ADMIN (the client's routes at
    // tunnel-up, teardown's ip/nft and sysctls, through the journal opened while root). Capabilities are
    // per thread, so drop them before the engine's threads exist; they inherit the reduced sets.
    try dropPrivileges(user: user, logger: logger)
    afterDrop?()
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
            throw ControlError(message)
        }
    }
}

/// The TUN device's and UDP socket's own counters, as `key=value` pairs for the `stats:` line.
public func adapterStats(_ device: TunDevice, _ socket: UDPSocket) -> String {
    let t = device.stats
    let u = socket.stats
    return "tun.segmented_reads=\(t.segmentedReads) tun.merged_writes=\(t.mergedWrites) tun.rejected_writes=\(t.rejectedWrites) "
        + "tun.truncated_reads=\(t.truncatedReads) tun.dropped_super_packets=\(t.droppedSuperPackets) "
        + "udp.skipped_sends=\(u.skippedSends) udp.truncated_receives=\(u.truncatedReceives)"
}

/// The signals the main thread waits for with sigtimedwait(2).
public func terminationSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGINT, SIGTERM, SIGUSR1, SIGHUP] { sigaddset(&set, s) }
    return set
}

/// Blocks SIGINT, SIGTERM, SIGUSR1 and SIGHUP first thing, before any host change or thread exists:
/// a signal that arrives during setup then waits for the main loop (which tears down what was set up)
/// instead of killing the process half way; every thread inherits the mask, so only the main thread
/// receives them. Children started with CommandRunner get an empty mask.
public func blockTerminationSignals() {
    var set = terminationSignals()
    pthread_sigmask(SIG_BLOCK, &set, nil)
}


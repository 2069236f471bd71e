// wg(8) itself reading tunvpn's configuration socket (`UAPIService`), served in this process from the fixed
// snapshot of the status rendering tests: `wg show`, `wg show dump` and `wg showconf` parse every line,
// `wg set` is refused and changes nothing, a live socket is never replaced, and the socket file is gone
// after `stop()` or, once the server is no longer root, after the `uapi-cleanup` keeper sees it end.

import Crypto
import Engine
import Foundation
import Glibc
import Logging
import Platform
import Synchronization
import Testing
import TestSupport
import Transport

@testable import Control

@Suite(.serialized, .needsRoot("needs root: it binds a socket in the root-owned /var/run/wireguard"))
struct UAPIServiceTests {
    /// A device name of this test process only: the socket directory is the host's, not a namespace's.
    static let device = "tvuapi\(getpid() % 100_000)"
    static let privateKey = PrivateKey(secret: SecretBytes(copying: (0..<32).map { UInt8($0) }))

    static func start(device: String = device) throws -> UAPIService {
        var logger = Logger(label: "uapi-test")
        logger.logLevel = .critical
        var snapshot = StatusFixture.snapshot
        snapshot.device = device
        let fixed = snapshot
        return try UAPIService.start(
            device: device,
            settings: UAPISettings(privateKey: privateKey, presharedKey: SecretBytes(zeros: 32), keeper: false),
            snapshot: { fixed }, threadStart: {}, logger: logger)
    }

    @Test func wgShowsTheInterfaceAndItsPeersAndCannotSetAnything() throws {
        let path = HostNetwork.uapiSocketPath(device: Self.device)
        let service = try Self.start()
        defer { service.stop() }
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600 && st.st_uid == 0)

        let dump = try runCommand("/usr/bin/wg", ["show", Self.device, "dump"])
        #expect(dump.status == 0, "wg show dump: \(dump.stderr)")
        let lines = dump.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(lines.count == 3)
        let publicKey = Self.privateKey.publicKey.base64
        #expect(lines.first == [Self.privateKey.base64, publicKey, "51820", "off"])
        #expect(
            lines.contains([
                StatusFixture.clientKey, "(none)", "10.100.3.2:40000", "10.8.0.2/32,fd00:8::2/128",
                "\(StatusFixture.now - 63)", "1258291", "3565158", "25",
            ]))
        #expect(lines.contains([StatusFixture.idleKey, "(none)", "(none)", "10.8.0.3/32", "0", "0", "0", "off"]))

        let show = try runCommand("/usr/bin/wg", ["show", Self.device])
        #expect(show.status == 0, "wg show: \(show.stderr)")
        #expect(show.stdout.contains("interface: \(Self.device)\n  public key: \(publicKey)\n  private key: (hidden)\n  listening port: 51820\n"))
        #expect(show.stdout.contains("peer: \(StatusFixture.clientKey)\n  endpoint: 10.100.3.2:40000\n  allowed ips: 10.8.0.2/32, fd00:8::2/128\n"))
        #expect(show.stdout.contains("  transfer: 1.20 MiB received, 3.40 MiB sent\n  persistent keepalive: every 25 seconds"))

        let conf = try runCommand("/usr/bin/wg", ["showconf", Self.device])
        #expect(conf.status == 0)
        #expect(conf.stdout.contains("[Interface]\nListenPort = 51820\nPrivateKey = \(Self.privateKey.base64)\n"))

        let set = try runCommand("/usr/bin/wg", ["set", Self.device, "listen-port", "1"])
        #expect(set.status != 0)
        #expect(set.stderr.contains("Operation not supported"), "\(set.stderr)")
        #expect(try runCommand("/usr/bin/wg", ["show", Self.device, "listen-port"]).stdout == "51820\n")

        // A second instance with the same device never takes over the live socket.
        #expect(throws: IOError(call: "bind", errno: EADDRINUSE, detail: "\(path) is served by another running process")) {
            try Self.start()
        }
        service.stop()
        #expect(lstat(path, &st) != 0 && errno == ENOENT, "the socket file is removed at stop()")
        #expect(try runCommand("/usr/bin/wg", ["show", Self.device]).status != 0)
    }

    /// Two real engines (a server and its client, over in-memory devices and network) and the server's
    /// services started as `ServerDaemon` starts them, with the configuration socket on: `wg show` reads the
    /// handshake the engines made and the traffic they carried from the server's own snapshot.
    @Test func wgReadsARealServerEnginesHandshakeAndTrafficThroughStatusServices() throws {
        let device = "tvreal\(getpid() % 100_000)"
        var logger = Logger(label: "uapi-test")
        logger.logLevel = .critical
        let serverKey = PrivateKey()
        let clientKey = PrivateKey()
        let network = MemoryNetwork()
        let serverEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)
        let serverDevice = MemoryPacketDevice(name: device)
        let clientDevice = MemoryPacketDevice(name: "tun-client")
        let up = Mutex(false)
        let server = TunnelEngine(
            state: TunnelState(
                role: .server(
                    ServerSettings(
                        responder: HandshakeResponder(localStatic: serverKey),
                        address: IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16),
                        allowList: AllowList(clients: [AllowedClient(key: clientKey.publicKey, address: IPv4Address(10, 8, 0, 2))]),
                        allowAnyClient: false))),
            device: serverDevice, socket: try network.bind(serverEndpoint), logger: logger)
        let client = TunnelEngine(
            state: TunnelState(
                role: .client(
                    ClientSettings(
                        initiator: HandshakeInitiator(localStatic: clientKey, serverKey: serverKey.publicKey),
                        endpoint: serverEndpoint))),
            device: clientDevice, socket: try network.bind(Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)),
            logger: logger, hooks: EngineHooks(tunnelUp: { _ in up.withLock { $0 = true } }))
        let services = try StatusServices.start(
            engine: server, device: device, listenPort: serverEndpoint.port, metricsAddress: nil, reload: nil,
            uapi: UAPISettings(privateKey: serverKey, presharedKey: SecretBytes(zeros: 32), keeper: false), logger: logger)
        let path = HostNetwork.uapiSocketPath(device: device)
        var st = stat()
        #expect(lstat(path, &st) == 0)
        defer { services.stop() }
        // Before the engines start: the peer with no endpoint, no handshake and no traffic.
        let before = try runCommand("/usr/bin/wg", ["show", device, "dump"]).stdout.split(separator: "\n")
        #expect(before.first == "\(serverKey.base64)\t\(serverKey.publicKey.base64)\t51820\toff")
        #expect(before.dropFirst().first == "\(clientKey.publicKey.base64)\t(none)\t(none)\t10.8.0.2/32\t0\t0\t0\toff")
        server.start()
        client.start()
        defer {
            client.stop()
            server.stop()
        }

        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while !up.withLock({ $0 }) && clock.now < deadline { usleep(5_000) }
        try #require(up.withLock { $0 }, "the client's tunnel came up")
        let (c, s) = (Endpoint(address: IPv4Address(10, 8, 0, 2), port: 5000), Endpoint(address: IPv4Address(10, 8, 0, 1), port: 5000))
        let outbound = (0..<20).map { PacketBuilder.ipv4UDP(from: c, to: s, payload: [UInt8](repeating: UInt8($0), count: 100)) }
        for p in outbound { _ = clientDevice.inject(p) }
        #expect(serverDevice.waitForWritten(count: 20).count == 20)
        let inbound = (0..<10).map { PacketBuilder.ipv4UDP(from: s, to: c, payload: [UInt8](repeating: UInt8($0), count: 200)) }
        for p in inbound { _ = serverDevice.inject(p) }
        #expect(clientDevice.waitForWritten(count: 10).count == 10)

        let dump = try runCommand("/usr/bin/wg", ["show", device, "dump"])
        #expect(dump.status == 0, "wg show dump: \(dump.stderr)")
        let peer = try #require(dump.stdout.split(separator: "\n").dropFirst().first).split(separator: "\t").map(String.init)
        #expect(peer.count == 8)
        #expect(peer.prefix(4) == [clientKey.publicKey.base64, "(none)", "10.99.0.2:40000", "10.8.0.2/32"])
        let handshake = try #require(Int(peer[4]))
        #expect(abs(Double(handshake) - Date().timeIntervalSince1970) < 60, "a handshake just now")
        let snapshot = server.snapshot(now: SystemClock().monotonicNow(), device: device, listenPort: 51820)
        let (rx, tx) = (try #require(UInt64(peer[5])), try #require(UInt64(peer[6])))
        #expect(rx >= 20 * 128 && tx >= 10 * 228, "every packet counted: rx \(rx), tx \(tx)")
        #expect(rx <= snapshot.peers[0].rxBytes && tx <= snapshot.peers[0].txBytes, "what the engine counted, read before")
        let show = try runCommand("/usr/bin/wg", ["show", device]).stdout
        #expect(show.contains("  latest handshake: "))
        #expect(show.contains("  transfer: "))
        services.stop()
        #expect(lstat(path, &st) != 0 && errno == ENOENT, "the socket file is removed at stop()")
    }

    @Test func theKeeperRemovesTheSocketFileWhenTheServersEndOfItsSocketpairCloses() throws {
        let device = "tvkeep\(getpid() % 100_000)"
        let path = HostNetwork.uapiSocketPath(device: device)
        let service = try Self.start(device: device)
        defer { service.stop() }
        let keeper = try UAPISocketKeeper.start(device: device, identity: service.server.identity, executable: TestBinaries.tunvpn)
        // Still answering: the keeper waits for the end of the socketpair, whatever happens meanwhile.
        usleep(200_000)
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(kill(keeper.pid, 0) == 0, "the keeper runs")
        keeper.finish()
        #expect(lstat(path, &st) != 0 && errno == ENOENT, "the keeper removed \(path)")
        #expect(kill(keeper.pid, 0) != 0, "and exited (reaped)")
    }

    @Test func theKeeperLeavesAnotherSocketAtThePathAlone() throws {
        let device = "tvkeepo\(getpid() % 100_000)"
        let path = HostNetwork.uapiSocketPath(device: device)
        let service = try Self.start(device: device)
        defer { service.stop() }
        let keeper = try UAPISocketKeeper.start(
            device: device, identity: (service.server.identity.device, service.server.identity.inode + 1),
            executable: TestBinaries.tunvpn)
        keeper.finish()
        var st = stat()
        #expect(lstat(path, &st) == 0, "not the socket it was told of: left alone")
    }
}

/// The keeper refuses what it was not started with, before it looks at anything (`tunvpn uapi-cleanup`).
@Suite struct UAPICleanupArgumentTests {
    @Test func aDeviceThatIsNoInterfaceNameOrAMalformedSocketIDIsRefused() throws {
        let badDevice = try runCommand(TestBinaries.tunvpn, ["uapi-cleanup", "--fd", "3", "--dev", "../../etc/x", "--socket-id", "1:2"])
        #expect(badDevice.status == 1)
        #expect(badDevice.stderr == "tunvpn: error: uapi-cleanup: --dev: not an interface name, e.g. --dev tun0\n")
        let badID = try runCommand(TestBinaries.tunvpn, ["uapi-cleanup", "--fd", "3", "--dev", "tun0", "--socket-id", "12"])
        #expect(badID.status == 1)
        #expect(badID.stderr == "tunvpn: error: uapi-cleanup: --socket-id: not DEVICE:INODE, e.g. --socket-id 25:1234\n")
    }
}

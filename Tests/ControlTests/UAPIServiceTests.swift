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

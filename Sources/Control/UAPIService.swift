// The configuration socket wg(8) reads a userspace WireGuard implementation through, served by a running
// server or client in WireGuard mode: `/var/run/wireguard/DEV.sock` (`HostNetwork.uapiSocketPath`), so
// `wg show DEV`, `wg showconf DEV` and WireGuard exporters read this instance. The answers are
// `UAPIText`'s, from a fresh `EngineSnapshot` per request.
//
// Ownership and permissions: bound as root before the privilege drop, mode 0600, so only root connects
// (unix(7)), as with wireguard-go. A socket there that answers belongs to another live process (another
// tunvpn, or wireguard-go with the same device name) and is never replaced: this instance then runs
// without one, with a warning. One left by a process that died (nobody answers) is replaced.
//
// Removal: once the process has given up root it may no longer unlink in the root-owned directory. So a
// root run starts a keeper first, `tunvpn uapi-cleanup` (the same executable), which stays uid 0 with no
// capability at all, sets no_new_privs, ignores the terminal's signals and waits for the end of a
// socketpair whose other end only the server holds; at that end (the server stopped, crashed or was
// killed) it removes the socket file if it is still the one this server bound (same device and inode),
// and exits.

import Crypto
import Engine
import Glibc
import Logging
import Platform
import Transport

/// What the configuration socket answers with besides the snapshot.
public struct UAPISettings: Sendable {
    /// The interface's private key (answered as `private_key`; see `UAPIText.get`).
    public var privateKey: PrivateKey
    /// The pre-shared key (32 zero bytes when none).
    public var presharedKey: SecretBytes
    /// Each peer's allowed IPs (default: its tunnel addresses; a client gives its routes).
    public var allowedIPs: @Sendable (PeerSnapshot) -> [String]
    /// Start the `uapi-cleanup` keeper, so the socket file goes away after the privilege drop too (the
    /// daemons: when running as root).
    public var keeper: Bool

    public init(
        privateKey: PrivateKey, presharedKey: SecretBytes,
        allowedIPs: @escaping @Sendable (PeerSnapshot) -> [String] = UAPIText.allowedIPs, keeper: Bool
    ) {
        self.privateKey = privateKey
        self.presharedKey = presharedKey
        self.allowedIPs = allowedIPs
        self.keeper = keeper
    }

    /// A client's allowed IPs for its server: what it routes into the tunnel (all of IPv4 and IPv6 in a
    /// full tunnel, its `--route`s in a split one, nothing with no routes).
    static func clientAllowedIPs(_ c: ClientConfiguration) -> [String] {
        guard let routes = c.routes else { return [] }
        if ClientDaemon.fullTunnel(c) { return ["0.0.0.0/0", "::/0"] }
        return routes.map { "\($0.network)/\($0.length)" } + c.routes6.map { "\($0.network)/\($0.length)" }
    }
}

/// The configuration socket of one running instance.
///
/// Lifetime: `start` binds it (and starts the keeper); `stop()` stops answering, removes the socket file
/// if this process still may, and lets the keeper remove it otherwise. Idempotent.
final class UAPIService: Sendable {
    let server: UnixSocketServer
    private let keeper: UAPISocketKeeper?

    private init(server: UnixSocketServer, keeper: UAPISocketKeeper?) {
        self.server = server
        self.keeper = keeper
    }

    /// Connections served at once: `wg` asks once per command.
    static let maximumConnections = 2

    /// Binds `HostNetwork.uapiSocketPath(device:)` and answers from `snapshot()`.
    ///
    /// - Throws: `RoutingError` for the directory, `IOError` for the socket (EADDRINUSE when another live
    ///   process serves the path).
    static func start(
        device: String, settings: UAPISettings, snapshot: @escaping @Sendable () -> EngineSnapshot,
        threadStart: @escaping @Sendable () -> Void, logger: Logger
    ) throws -> UAPIService {
        try HostNetwork.checkUAPIDirectory()
        let path = HostNetwork.uapiSocketPath(device: device)
        let server = try UnixSocketServer(
            path: path, name: "uapi", maximumConnections: maximumConnections, threadStart: threadStart
        ) { request in
            switch UAPIOperation(requestLine: request.prefix { $0 != UInt8(ascii: "\n") }) {
            case .get:
                return .secret(
                    UAPIText.get(
                        snapshot(), privateKey: settings.privateKey.secret, presharedKey: settings.presharedKey,
                        allowedIPs: settings.allowedIPs))
            case .set: return .bytes(UAPIText.setRefused)
            case .unknown: return .none
            }
        }
        var keeper: UAPISocketKeeper? = nil
        if settings.keeper {
            do { keeper = try UAPISocketKeeper.start(device: device, identity: server.identity) } catch {
                logger.warning("\(error); \(path) will be left behind at exit (wg removes it when it finds nobody answering)")
            }
        }
        return UAPIService(server: server, keeper: keeper)
    }

    func stop() {
        server.stop()
        keeper?.finish()
    }
}

/// The server's side of the `uapi-cleanup` keeper: its end of the socketpair and the keeper's PID.
final class UAPISocketKeeper: Sendable {
    private let fd: Int32
    let pid: pid_t

    private init(fd: Int32, pid: pid_t) {
        self.fd = fd
        self.pid = pid
    }

    /// The descriptor the keeper gets its end of the socketpair as.
    static let descriptor: Int32 = 3

    /// Starts `tunvpn uapi-cleanup` for the socket of `device` with `identity`; `executable` is this
    /// process's own unless a test names the built `tunvpn`.
    static func start(
        device: String, identity: (device: UInt64, inode: UInt64), executable: String? = nil
    ) throws(ControlError) -> UAPISocketKeeper {
        var ends: [Int32] = [-1, -1]
        // A socketpair rather than pipe2(2), which Glibc's module does not export: close-on-exec atomically.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw ControlError("cannot start the UAPI socket keeper: socketpair failed: \(String(cString: strerror(errno)))")
        }
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = executable == nil ? readlink("/proc/self/exe", &path, Int(PATH_MAX)) : 0
        guard executable != nil || length > 0 else {
            close(ends[0])
            close(ends[1])
            throw ControlError("cannot start the UAPI socket keeper: readlink /proc/self/exe failed: \(String(cString: strerror(errno)))")
        }
        let executable = executable ?? String(decoding: path.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let spawned = CommandRunner.spawn(
            [executable, "uapi-cleanup", "--fd", "\(descriptor)", "--dev", device, "--socket-id", "\(identity.device):\(identity.inode)"],
            passing: ends[0], as: descriptor)
        close(ends[0])
        switch spawned {
        case .success(let pid): return UAPISocketKeeper(fd: ends[1], pid: pid)
        case .failure(let e):
            close(ends[1])
            throw ControlError("cannot start the UAPI socket keeper: \(e)")
        }
    }

    /// Closes this end (the keeper then removes the socket file) and reaps the keeper, waiting at most 2 s.
    func finish() {
        close(fd)
        let deadline = SpawnedProcess.monotonicNanoseconds() + 2_000_000_000
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 && SpawnedProcess.monotonicNanoseconds() < deadline {
            var pause = timespec(tv_sec: 0, tv_nsec: 5_000_000)
            _ = nanosleep(&pause, nil)
        }
    }
}

/// The keeper process (`tunvpn uapi-cleanup`); see the file comment.
public enum UAPICleanup {
    /// Waits for the end of `fd`, then removes the UAPI socket of `device` if it still has `socketID`
    /// (`DEV:INODE`). Returns the exit status.
    public static func run(fd: Int32, device: String, socketID: String) -> Int32 {
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { signal(s, SIG_IGN) }
        _ = Privileges.disableCoreDumps()
        func fail(_ message: String) -> Int32 {
            printError("uapi-cleanup: \(message)")
            return 1
        }
        guard TunDevice.invalidNameReason(device) == nil else { return fail("--dev: not an interface name, e.g. --dev tun0") }
        let parts = socketID.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let inode = UInt64(parts[1]) else {
            return fail("--socket-id: not DEVICE:INODE, e.g. --socket-id 25:1234")
        }
        guard geteuid() == 0 else { return fail("runs as root only (started by tunvpn server or client)") }
        if let failure = Privileges.dropAllCapabilities() { return fail("cannot drop capabilities: \(failure)") }
        var scratch = [UInt8](repeating: 0, count: 64)
        while true {
            let n = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
        }
        HostNetwork.removeSocketFile(HostNetwork.uapiSocketPath(device: device), identity: (dev, inode))
        return 0
    }
}

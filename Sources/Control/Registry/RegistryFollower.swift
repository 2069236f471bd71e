// A server with `--registry`: the peers read at start (or from the local cache while the database is
// down), then a thread of its own that LISTENs for the peers table's notifications and applies every change
// through the allow-list reload (`AllowListReloader.applyList`), so other clients keep their sessions. The
// connection never touches the data path. On any failure the thread keeps the peers it knows, reconnects
// with backoff, and resynchronises fully (a notification sent while it was away is never needed).

import Crypto
import Engine
import Glibc
import Logging
import Platform
import Synchronization
import Transport

/// The local copy of the registry's peers, `<device>.peers` in a directory the server owns: written
/// atomically (a temporary file renamed over it) with mode 0600, read at a start while the database is
/// down. The directory is opened before the privilege drop, so the server can still write it afterwards
/// through the descriptor (the directory belongs to the user it runs as).
public final class RegistryCache: @unchecked Sendable {
    public let path: String
    private let directory: Int32
    private let name: String

    /// The cache's path for `device` in `directory`.
    public static func path(directory: String, device: String) -> String { directory + "/" + device + ".peers" }

    /// Reads the cache of the registry `source` for `device`, checked against the server's prefixes; nil
    /// when there is none, it is of another registry, or it does not fit the prefixes.
    public static func load(directory: String, device: String, source: String, prefix: IPv4Prefix, prefix6: IPv6Prefix?)
        -> AllowList?
    {
        let path = path(directory: directory, device: device)
        guard let read = try? KeyFiles.readSmallFile(path, what: "registry cache", limit: 64 << 20),
            let list = RegistryCacheText.parse(String(decoding: read.text, as: UTF8.self), source: source),
            list.outOfPrefix(prefix, prefix6) == nil
        else { return nil }
        return list
    }

    /// Creates `directory` (mode 0700, owned by `owner` when given, so the server can write it after its
    /// privilege drop) and opens it.
    public init(directory: String, device: String, owner: Privileges.Account?) throws(ControlError) {
        path = Self.path(directory: directory, device: device)
        name = device + ".peers"
        var parts: [Substring] = []
        for part in directory.split(separator: "/") {
            parts.append(part)
            let prefix = (directory.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw ControlError(
                    "--registry-cache \(directory): cannot create \(prefix): \(String(cString: strerror(errno))); name a directory root can create, e.g. --registry-cache /var/lib/tunvpn/registry"
                )
            }
        }
        self.directory = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard self.directory >= 0 else {
            throw ControlError("--registry-cache \(directory): cannot open it: \(String(cString: strerror(errno)))")
        }
        var st = stat()
        if let owner, fstat(self.directory, &st) == 0, st.st_uid != owner.uid {
            if fchown(self.directory, owner.uid, owner.gid) != 0 {
                let reason = String(cString: strerror(errno))
                Glibc.close(self.directory)
                throw ControlError("--registry-cache \(directory): cannot give it to \(owner.name): \(reason)")
            }
        }
        fchmod(self.directory, 0o700)
    }

    deinit { Glibc.close(directory) }

    /// Writes the cache: a temporary file (0600) written, synced and renamed over the old one.
    public func write(_ list: AllowList, source: String) throws(ControlError) {
        let temporary = name + ".tmp"
        let bytes = Array(RegistryCacheText.render(list, source: source).utf8)
        let fd = openat(directory, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw ControlError("\(path): cannot write the registry cache: \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                Glibc.close(fd)
                unlinkat(directory, temporary, 0)
                throw ControlError("\(path): cannot write the registry cache: \(reason)")
            }
            written += n
        }
        fchmod(fd, 0o600)
        let synced = fsync(fd) == 0
        Glibc.close(fd)
        guard synced, renameat(directory, temporary, directory, name) == 0 else {
            let reason = String(cString: strerror(errno))
            unlinkat(directory, temporary, 0)
            throw ControlError("\(path): cannot replace the registry cache: \(reason)")
        }
    }
}

/// What a server starts with: the registry's peers (or the cache's), and how to reach it again.
public struct RegistryStart: Sendable {
    public var url: RegistryURL
    /// The password of the first connection, for reconnects (nil: none was needed).
    public var password: String?
    public var list: AllowList
    /// Rows left out, for the log.
    public var skipped: [String]
    /// Whether `list` came from the cache (the database was unreachable).
    public var fromCache: Bool
    /// The keys decoded at the first read (`RegistryPeers.keys`), so the first resync decodes none again.
    public var keys: [String: PublicKey] = [:]
    /// Why the database could not be used (with `fromCache`).
    public var failure: String?

    /// Connects, migrates the schema and reads the peers; when the database cannot be reached, reads the
    /// cache instead.
    ///
    /// - Throws: `ControlError`, one line: a bad password file; the database unreachable or refusing the
    ///   credentials and no usable cache; a schema newer than this binary (never a fallback).
    public static func load(
        url: RegistryURL, passwordFile: String?, prefix: IPv4Prefix, prefix6: IPv6Prefix?, cacheDirectory: String,
        device: String
    ) throws(ControlError) -> RegistryStart {
        let password = try passwordFile.map { (file) throws(ControlError) in try PeerRegistry.readPassword(file) }
        let connection: PostgresConnection
        do throws(PostgresError) { connection = try PostgresConnection(url, password: password) } catch {
            let cachePath = RegistryCache.path(directory: cacheDirectory, device: device)
            guard let cached = RegistryCache.load(
                directory: cacheDirectory, device: device, source: url.display, prefix: prefix, prefix6: prefix6)
            else {
                throw ControlError(
                    "--registry \(url.display): \(error.message) (and no cache of it at \(cachePath) to start from); check that the database runs and the URL and credentials, e.g. psql '\(url.display)'"
                )
            }
            return RegistryStart(
                url: url, password: password, list: cached, skipped: [], fromCache: true, keys: [:], failure: error.message)
        }
        defer { connection.close() }
        let registry = try PeerRegistry(url, connection: connection)
        let rows: [RegistryRow]
        do throws(PostgresError) { rows = try registry.rows() } catch { throw ControlError("--registry \(url.display): \(error.message)") }
        let peers = RegistryPeers(rows: rows, prefix: prefix, prefix6: prefix6)
        return RegistryStart(
            url: url, password: connection.usedPassword ?? password, list: peers.allowList, skipped: peers.skipped,
            fromCache: false, keys: peers.keys, failure: nil)
    }
}

/// The thread that follows the registry while the server runs.
public final class RegistryFollower: Sendable {
    private struct State {
        var stopping = false
        var resyncRequested = false
        var current: AllowList
        var connected = false
        /// The keys of the last read, decoded (base64 decoding 10,000 keys again at every change is slow).
        var keys: [String: PublicKey] = [:]
    }

    private let url: RegistryURL
    private let password: String?
    private let prefix: IPv4Prefix
    private let prefix6: IPv6Prefix?
    private let cache: RegistryCache?
    private let logger: Logger
    private let state: Mutex<State>
    private let thread = Mutex<EngineThread?>(nil)
    /// Set once the server's reloader exists (it needs the engine, which needs the first list).
    private let reloader = Mutex<AllowListReloader?>(nil)
    /// Seconds between reconnection attempts: from the first, doubled up to the last.
    static let backoff: (first: Double, last: Double) = (0.25, 8)

    public init(start: RegistryStart, prefix: IPv4Prefix, prefix6: IPv6Prefix?, cache: RegistryCache?, logger: Logger) {
        url = start.url
        password = start.password
        self.prefix = prefix
        self.prefix6 = prefix6
        self.cache = cache
        self.logger = logger
        state = Mutex(State(current: start.list, keys: start.keys))
    }

    /// The reload of a server with a registry: SIGHUP and `tunvpn reload` ask the thread for a full
    /// resynchronisation (reported in the log) and change nothing themselves.
    public func makeReloader(engine: TunnelEngine) -> AllowListReloader {
        let made = AllowListReloader(
            path: "registry \(url.display)", logger: logger,
            load: { [self] _ in
                state.withLock { s in
                    s.resyncRequested = true
                    return s.current
                }
            },
            apply: { list in "\(list.clients.count) client(s), \(engine.reload(allowList: list)); a full resync follows" })
        reloader.withLock { $0 = made }
        return made
    }

    /// Starts the thread (after the privilege drop: it inherits the reduced capabilities).
    public func start() {
        let t = EngineThread(name: "tunvpn-registry") { [self] in run() }
        thread.withLock { $0 = t }
    }

    /// Stops the thread and waits for it (at most one connection attempt's timeout).
    public func stop() {
        state.withLock { $0.stopping = true }
        thread.withLock { $0?.join() }
    }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        var delay = Self.backoff.first
        var lastFailure = ""
        while !stopping {
            do throws(ControlError) {
                let connection: PostgresConnection
                do throws(PostgresError) { connection = try PostgresConnection(url, password: password) } catch {
                    throw ControlError(error.message)
                }
                let registry = try PeerRegistry(url, connection: connection)
                defer { registry.close() }
                do throws(PostgresError) {
                    try registry.listen()
                    // Everything, since notifications sent while this server was away are gone.
                    let count = try resync(registry)
                    if !lastFailure.isEmpty { logger.notice("registry \(url.display) is back: resynchronised, \(count) peer(s)") }
                    state.withLock { $0.connected = true }
                    lastFailure = ""
                    delay = Self.backoff.first
                    var idle = 0
                    while !stopping {
                        let changes = try registry.waitForChanges(timeout: 200)
                        let asked = state.withLock { s in
                            defer { s.resyncRequested = false }
                            return s.resyncRequested
                        }
                        if changes > 0 || asked {
                            try resync(registry)
                            idle = 0
                        } else {
                            idle += 200
                            // A connection that broke while idle (a silent network) is found by a round trip.
                            if idle >= 10_000 {
                                try registry.ping()
                                idle = 0
                            }
                        }
                    }
                } catch { throw ControlError(error.message) }
            } catch {
                state.withLock { $0.connected = false }
                let known = state.withLock { $0.current.clients.count }
                if error.message != lastFailure {
                    logger.warning(
                        "registry \(url.display) unavailable, serving the \(known) peer(s) known: \(error.message); retrying (every \(Self.backoff.last) s at most)"
                    )
                    lastFailure = error.message
                }
                var waited = 0.0
                while waited < delay && !stopping {
                    usleep(50_000)
                    waited += 0.05
                }
                delay = min(delay * 2, Self.backoff.last)
            }
        }
    }

    /// Reads every peer and applies the list if it changed; returns the number of peers.
    @discardableResult
    private func resync(_ registry: PeerRegistry) throws(PostgresError) -> Int {
        let clock = SystemClock()
        var marks = [clock.monotonicNow()]
        let rows = try registry.rows()
        marks.append(clock.monotonicNow())
        let peers = RegistryPeers(rows: rows, prefix: prefix, prefix6: prefix6, decoded: state.withLock { $0.keys })
        marks.append(clock.monotonicNow())
        let changed = state.withLock { s in
            s.keys = peers.keys
            guard s.current != peers.allowList else { return false }
            s.current = peers.allowList
            return true
        }
        guard changed else { return peers.allowList.clients.count }
        for line in peers.skipped { logger.warning("registry \(url.display): \(line), left out") }
        if let reloader = reloader.withLock({ $0 }) { _ = reloader.applyList(peers.allowList) }
        marks.append(clock.monotonicNow())
        if let cache {
            do throws(ControlError) { try cache.write(peers.allowList, source: url.display) } catch { logger.warning("\(error.message)") }
        }
        marks.append(clock.monotonicNow())
        let ms = zip(marks.dropFirst(), marks).map { String(format3: Double($0 - $1) / 1e6) }
        logger.debug("registry resync: \(rows.count) row(s) read in \(ms[0]) ms, listed in \(ms[1]) ms, applied in \(ms[2]) ms, cached in \(ms[3]) ms")
        return peers.allowList.clients.count
    }
}

extension String {
    /// `x` with one decimal (no Foundation here).
    init(format3 x: Double) {
        let tenths = Int((x * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}

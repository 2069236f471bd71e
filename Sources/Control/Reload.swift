// The server's allow-list: reading and checking the file, and reloading it into a running engine (SIGHUP
// and `tunvpn reload`), one reload at a time, each with a one-line outcome.

import Engine
import Glibc
import Logging
import Platform
import Synchronization
import Transport

/// What a reload of the allow-list did: the line logged, and what `tunvpn reload` prints.
public struct ReloadOutcome: Sendable, Equatable {
    /// False when the server kept its old list (or has none: a client).
    public var succeeded: Bool
    /// One line: the counts, or the reason with the file and line.
    public var message: String

    public init(succeeded: Bool, message: String) {
        self.succeeded = succeeded
        self.message = message
    }
}

/// `path` made absolute against the working directory, so that another process can find the file.
public func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = getcwd(nil, 0) else { return path }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// A server's allow-list reload, shared by SIGHUP and the status socket: one reload runs at a time, each
/// logs its outcome and returns it. A reload either reads the file itself (SIGHUP, `reload`), which a
/// server that gave up root may not be allowed to do, or takes the text `tunvpn reload` read as root.
public final class AllowListReloader: Sendable {
    /// The allow-list file, as an absolute path.
    public let path: String
    private let logger: Logger
    private let load: @Sendable ([UInt8]?) throws -> AllowList
    private let apply: @Sendable (AllowList) -> String
    private let oneAtATime = Mutex(())

    /// - Parameters:
    ///   - load: reads the file (given nil) or parses the given text, checking it.
    ///   - apply: gives the list to the engine and describes what changed.
    public init(
        path: String, logger: Logger, load: @escaping @Sendable ([UInt8]?) throws -> AllowList,
        apply: @escaping @Sendable (AllowList) -> String
    ) {
        self.path = path
        self.logger = logger
        self.load = load
        self.apply = apply
    }

    /// Re-reads the file.
    public func fromFile() -> ReloadOutcome { reload(nil) }

    /// Takes `bytes` as the file's text.
    public func fromBytes(_ bytes: [UInt8]) -> ReloadOutcome { reload(bytes) }

    /// Applies a list read elsewhere (the peer registry's thread), one reload at a time with the others.
    public func applyList(_ list: AllowList) -> ReloadOutcome {
        oneAtATime.withLock { _ in
            let message = "reloaded \(path): " + apply(list)
            logger.notice("\(message)")
            return ReloadOutcome(succeeded: true, message: message)
        }
    }

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

/// Reading, checking and reloading a server's allow-list file.
public enum AllowListFile {
    /// The reload of the allow-list, for SIGHUP and `tunvpn reload`.
    public static func reloader(
        engine: TunnelEngine, clients: String, prefix: IPv4Prefix, prefix6: IPv6Prefix? = nil, allowAnyClient: Bool,
        protocolMode: ProtocolMode = .tunvpn, logger: Logger
    ) -> AllowListReloader {
        AllowListReloader(
            path: absolutePath(clients), logger: logger,
            load: { bytes in
                if let bytes {
                    return try parseAllowList(bytes, file: clients, prefix: prefix, prefix6: prefix6, protocolMode: protocolMode)
                }
                return try loadAllowList(
                    clients, prefix: prefix, prefix6: prefix6, allowAnyClient: allowAnyClient, protocolMode: protocolMode)
            },
            apply: { list in "\(list.clients.count) client(s), \(engine.reload(allowList: list))" })
    }

    /// Reads and checks the allow-list file `clients` (missing is fine with --allow-any-client).
    /// `prefix6` is the server's IPv6 tunnel prefix, nil when its tunnel carries no IPv6.
    public static func loadAllowList(
        _ clients: String, prefix: IPv4Prefix, prefix6: IPv6Prefix? = nil, allowAnyClient: Bool, protocolMode: ProtocolMode = .tunvpn
    ) throws -> AllowList {
        var st = stat()
        if lstat(clients, &st) != 0 {
            if errno == EACCES {
                throw ControlError(
                    "\(clients): allow-list not readable by \(Privileges.Account.withID(geteuid()).name), the user this server runs as; run `tunvpn reload` as root (it reads the file for the server)")
            }
            guard allowAnyClient else {
                throw ControlError(
                    "\(clients): allow-list not found; add each client's public key to it (one per line, e.g. `cat client.pub >> \(clients)`), or pass --allow-any-client for lab use")
            }
            return AllowList()
        }
        return try parseAllowList(
            KeyFiles.readConfigurationFile(clients, what: "allow-list"), file: clients, prefix: prefix, prefix6: prefix6,
            protocolMode: protocolMode)
    }

    /// Parses allow-list text and checks that its fixed addresses are client addresses in the prefix of
    /// their family (`prefix6` nil: the tunnel carries no IPv6, and an IPv6 address is an error). In
    /// WireGuard mode every line must give an address (`wireGuardProblem`).
    public static func parseAllowList(
        _ bytes: [UInt8], file clients: String, prefix: IPv4Prefix, prefix6: IPv6Prefix? = nil, protocolMode: ProtocolMode = .tunvpn
    ) throws -> AllowList {
        let allowList: AllowList
        do { allowList = try AllowList(parsing: String(decoding: bytes, as: UTF8.self)) } catch {
            throw ControlError("\(clients): \(error)")
        }
        if let error = allowList.outOfPrefix(prefix, prefix6) { throw ControlError("\(clients): \(error)") }
        if protocolMode == .wireguard, let error = wireGuardProblem(allowList) { throw ControlError("\(clients): \(error)") }
        return allowList
    }

    /// The first line of `list` that WireGuard mode cannot use: one without an address, which tunvpn mode
    /// would fill from the pool but WireGuard mode, which assigns nothing, cannot (its allowed IPs are
    /// what the line gives).
    public static func wireGuardProblem(_ list: AllowList) -> String? {
        guard let bare = list.clients.first(where: { $0.address == nil && $0.address6 == nil }) else { return nil }
        let who = bare.name.isEmpty ? "" : " (\(bare.name))"
        return
            "line \(bare.line): the key\(who) has no address, and --protocol wireguard assigns none from a pool: give the peer's addresses (its allowed IPs), e.g. `\(bare.key.base64) 10.8.0.5/32 # laptop`"
    }
}

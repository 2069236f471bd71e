// The server's allow-list: reading and checking the file, and reloading it into a running engine (SIGHUP
// and `tunvpn reload`), one reload at a time, each with a one-line outcome.

import Engine
import Glibc
import Logging
import Platform
import Routing
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
    /// The reload of the allow-list, for SIGHUP and `tunvpn reload`. With `routes`, the kernel routes of
    /// routed prefixes follow the list: those of new prefixes are added before the list is used (a route
    /// that cannot be added fails the reload, which keeps the old list), those of prefixes gone are
    /// removed once it is.
    public static func reloader(
        engine: TunnelEngine, clients: String, prefix: IPv4Prefix, prefix6: IPv6Prefix? = nil, allowAnyClient: Bool,
        protocolMode: ProtocolMode = .tunvpn, routes: RoutedPrefixRoutes? = nil, logger: Logger
    ) -> AllowListReloader {
        AllowListReloader(
            path: absolutePath(clients), logger: logger,
            load: { bytes in
                let list: AllowList
                if let bytes {
                    list = try parseAllowList(bytes, file: clients, prefix: prefix, prefix6: prefix6, protocolMode: protocolMode)
                } else {
                    list = try loadAllowList(clients, prefix: prefix, prefix6: prefix6, allowAnyClient: allowAnyClient, protocolMode: protocolMode)
                }
                try routes?.add(for: list)
                return list
            },
            apply: { list in
                let change = engine.reload(allowList: list)
                return "\(list.clients.count) client(s), \(change)" + (routes?.removeStale(keeping: list) ?? "")
            })
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
        do { allowList = try AllowList(parsing: String(decoding: bytes, as: UTF8.self), prefix: prefix, prefix6: prefix6) } catch {
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
        guard let bare = list.clients.first(where: { $0.address == nil && $0.address6 == nil && $0.routed.isEmpty }) else { return nil }
        let who = bare.name.isEmpty ? "" : " (\(bare.name))"
        return
            "line \(bare.line): the key\(who) has no address, and --protocol wireguard assigns none from a pool: give the peer's addresses (its allowed IPs), e.g. `\(bare.key.base64) 10.8.0.5/32 # laptop`"
    }
}

/// The kernel routes (`PREFIX dev DEVICE`) of a running server's routed prefixes, kept equal to its
/// allow-list across reloads. A route is added as every host change is: its undo journaled first, so a
/// crash leaves it to `tunvpn down`. A route removed at a reload keeps its journal entry; the undo at
/// teardown then finds nothing to remove, which is no error (`PlanExecutor.tearDown`).
///
/// The `ip` commands run on a thread of this object's own, made by `start` after the privilege drop: a
/// reload from the status socket runs on a thread made before it, which lost CAP_NET_ADMIN then
/// (capabilities are per thread; capabilities(7)). Until `start`, and after `stop`, they run on the
/// caller's thread.
public final class RoutedPrefixRoutes: Sendable {
    struct State {
        /// The route changes in force.
        var installed: [Change]
        /// Those the latest `add` added, for `removeStale`'s summary.
        var added: [Change] = []
        let executor: any CommandExecutor
        let journal: (any JournalStore)?
    }

    private let state: Mutex<State>
    private let routes: @Sendable ([IPPrefix]) -> [Change]
    private let worker = CapableWorker(name: "tunvpn-routes")

    /// Starts the thread the commands run on; call it on the main thread after the privilege drop.
    public func start() { worker.start() }

    /// Ends that thread (the commands run on the caller's thread again).
    public func stop() { worker.stop() }

    /// - Parameters:
    ///   - installed: the routes the server's start applied.
    ///   - routes: the route changes for a list's routed prefixes (`ServerDaemon.routedRoutes`).
    ///   - journal: the instance's journal (nil for an instance that cannot journal: a reload that needs
    ///     a new route then fails).
    public init(
        installed: [Change], routes: @escaping @Sendable ([IPPrefix]) -> [Change], journal: sending (any JournalStore)?,
        executor: sending any CommandExecutor = SystemCommandExecutor()
    ) {
        self.routes = routes
        state = Mutex(State(installed: installed, executor: executor, journal: journal))
    }

    /// The route changes in force.
    public var installed: [Change] { state.withLock { $0.installed } }

    /// Adds the routes `list` needs that are not in force. When one fails, those added here are removed
    /// again and the error names the route and what `ip` said.
    public func add(for list: AllowList) throws(ControlError) {
        let wanted = routes(list.routedPrefixes)
        let failure = worker.run { self.state.withLock { state -> String? in
            let missing = wanted.filter { !state.installed.contains($0) }
            guard !missing.isEmpty else { return nil }
            guard let journal = state.journal else {
                return "cannot add \(missing.map(\.summary).joined(separator: ", ")): this server cannot journal host changes (\(HostNetwork.stateDirectory) is not usable); restart it as root to change routed prefixes"
            }
            var added: [Change] = []
            for change in missing {
                var failure: String?
                do {
                    let entry = JournalEntry(undo: change.undoCommand())
                    if !(try journal.entries().contains(entry)) { try journal.append(entry) }
                    failure = state.executor.run(change.applyCommand, input: nil)
                } catch { failure = "\(error)" }
                if let failure {
                    for done in added.reversed() { _ = state.executor.run(done.undoCommand(), input: nil) }
                    return "\(change.summary) failed: \(failure); fix the route or remove the prefix from the allow-list"
                }
                added.append(change)
            }
            state.installed += added
            state.added = added
            return nil
        } }
        if let failure { throw ControlError(failure) }
    }

    /// Removes the routes in force that `list` no longer needs; returns `, routes: +A -B` naming the
    /// routes this reload added and removed (empty when none), with any removal that failed.
    public func removeStale(keeping list: AllowList) -> String {
        let wanted = routes(list.routedPrefixes)
        return worker.run { self.state.withLock { state -> String in
            let stale = state.installed.filter { !wanted.contains($0) }
            var words = state.added.map { "+\(Self.destination($0))" }
            state.added = []
            for change in stale {
                if let failure = state.executor.run(change.undoCommand(), input: nil), !PlanExecutor.isAlreadyGone(failure) {
                    words.append("-\(Self.destination(change)) (\(failure))")
                } else {
                    words.append("-\(Self.destination(change))")
                }
            }
            state.installed.removeAll { stale.contains($0) }
            return words.isEmpty ? "" : ", routes: " + words.joined(separator: " ")
        } }
    }

    static func destination(_ change: Change) -> String {
        if case .route(let destination, _, _) = change { return destination }
        return change.summary
    }
}

/// Runs closures, one at a time, on a thread made by `start` (see `RoutedPrefixRoutes`), or on the
/// caller's thread while that thread is not running.
final class CapableWorker: @unchecked Sendable {  // the semaphores need stable addresses; all else is behind `jobs`
    private final class Job: @unchecked Sendable {  // `done` is posted once `body` ran
        let body: @Sendable () -> Void
        let done = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        init(_ body: @escaping @Sendable () -> Void) {
            self.body = body
            sem_init(done, 0, 0)
        }
        deinit {
            sem_destroy(done)
            done.deallocate()
        }
    }

    private struct Queue {
        var jobs: [Job] = []
        var thread: EngineThread?
        var stopping = false
    }

    private let name: String
    private let queue = Mutex(Queue())
    private let wake = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init(name: String) {
        self.name = name
        sem_init(wake, 0, 0)
    }

    deinit {
        stop()
        sem_destroy(wake)
        wake.deallocate()
    }

    func start() {
        queue.withLock { q in
            guard q.thread == nil else { return }
            q.stopping = false
            q.thread = EngineThread(name: name) { [self] in
                while true {
                    while sem_wait(wake) != 0 {}
                    let (job, stopping) = queue.withLock { q in (q.jobs.isEmpty ? nil : q.jobs.removeFirst(), q.stopping) }
                    if let job {
                        job.body()
                        sem_post(job.done)
                    } else if stopping {
                        return
                    }
                }
            }
        }
    }

    func stop() {
        let thread = queue.withLock { q -> EngineThread? in
            q.stopping = true
            defer { q.thread = nil }
            return q.thread
        }
        guard let thread else { return }
        sem_post(wake)
        thread.join()
    }

    /// Runs `body` on the thread (waiting for it), or here when it is not running.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = WorkerResult<T>()
        let job = Job { result.value = body() }
        let queued = queue.withLock { q -> Bool in
            guard q.thread != nil, !q.stopping else { return false }
            q.jobs.append(job)
            return true
        }
        guard queued else { return body() }
        sem_post(wake)
        while sem_wait(job.done) != 0 {}
        guard let value = result.value else { preconditionFailure("the worker posts `done` only after storing the result") }
        return value
    }
}

/// A job's result: written by the worker before the job's `done` is posted, read by the caller after.
private final class WorkerResult<T>: @unchecked Sendable {
    var value: T?
}

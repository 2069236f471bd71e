// The DNS agent (docs/ROUTING.md, "DNS"): privilege separation for a client's resolver changes, as
// OpenVPN's down-root plugin does it. Before the client drops privileges it starts the agent, the same
// executable as `tunvpn dns-agent --fd 3 --dev DEV`, connected by a socketpair on descriptor 3. The agent
// stays uid 0 with no capability at all (a root-owned /etc/resolv.conf and /etc need only the owner's
// rights, and systemd-resolved grants a uid-0 caller its per-link settings), sets no_new_privs, holds no
// network socket and carries out only two requests of a line protocol, each checked again in full:
//
//   apply METHOD DEVICE full|split RESOLVERS SEARCH\n    RESOLVERS, SEARCH: comma-separated, or "-"
//   revert\n
//
// answered `ok\n` or `error TEXT\n`; it says `ready\n` once it runs. It owns the resolver changes and their
// journal (`<netns id>-<dev>.dns.journal`), and restores everything at `revert` or when the client's end
// of the socket closes (the client exited, crashed or was killed), then exits.

import Glibc
import Logging
import Platform
import Routing
import Synchronization
import Transport

/// What the client asks the DNS agent to apply.
public struct DNSAgentApply: Equatable, Sendable {
    public var method: DNSMethod
    public var device: String
    public var dns: DNSSettings
    /// Full tunnel (no --route, no --no-routes): every query goes to the tunnel's resolvers.
    public var fullTunnel: Bool

    public init(method: DNSMethod, device: String, dns: DNSSettings, fullTunnel: Bool) {
        self.method = method
        self.device = device
        self.dns = dns
        self.fullTunnel = fullTunnel
    }
}

/// A request of the DNS agent's line protocol.
public enum DNSAgentRequest: Equatable, Sendable {
    case apply(DNSAgentApply)
    case revert

    /// The longest line either end accepts, newline included.
    public static let maxLineLength = 512

    /// The line that carries this request, newline included.
    public var line: String {
        switch self {
        case .revert:
            return "revert\n"
        case .apply(let a):
            let resolvers = a.dns.resolvers.isEmpty ? "-" : a.dns.resolvers.map(\.description).joined(separator: ",")
            let search = a.dns.searchDomains.isEmpty ? "-" : a.dns.searchDomains.joined(separator: ",")
            return "apply \(a.method.rawValue) \(a.device) \(a.fullTunnel ? "full" : "split") \(resolvers) \(search)\n"
        }
    }

    /// Parses and checks one line (without its newline) for the agent of `device`: every field is checked
    /// as if it came from anyone (the client may have been taken over). Returns the request, or why it is
    /// refused (printable, never the line in full).
    public static func parse(_ bytes: [UInt8], device: String) -> Result<DNSAgentRequest, DNSAgentRefusal> {
        guard bytes.count < maxLineLength else { return .failure(DNSAgentRefusal("a line of \(bytes.count) bytes (at most \(maxLineLength - 1))")) }
        guard bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return .failure(DNSAgentRefusal("a line with bytes other than printable ASCII")) }
        let words = bytes.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        switch words.first {
        case "revert":
            guard words.count == 1 else { return .failure(DNSAgentRefusal("revert takes no arguments")) }
            return .success(.revert)
        case "apply":
            guard words.count == 6 else { return .failure(DNSAgentRefusal("apply takes 5 arguments, not \(words.count - 1)")) }
            guard let method = DNSMethod(rawValue: words[1]) else { return .failure(DNSAgentRefusal("unknown method \(clipped(words[1]))")) }
            if let reason = TunDevice.invalidNameReason(words[2]) { return .failure(DNSAgentRefusal("bad device name: \(reason)")) }
            guard words[2] == device else { return .failure(DNSAgentRefusal("device \(words[2]) is not this agent's (\(device))")) }
            let fullTunnel: Bool
            switch words[3] {
            case "full": fullTunnel = true
            case "split": fullTunnel = false
            default: return .failure(DNSAgentRefusal("tunnel mode \(clipped(words[3])) (full or split)"))
            }
            let resolverWords = list(words[4])
            guard resolverWords.count <= WireFormat.maxDNSResolvers else {
                return .failure(DNSAgentRefusal("\(resolverWords.count) resolvers (at most \(WireFormat.maxDNSResolvers))"))
            }
            var resolvers: [IPAddress] = []
            for w in resolverWords {
                guard let address = IPAddress(w) else { return .failure(DNSAgentRefusal("\(clipped(w)) is not an IP address")) }
                resolvers.append(address)
            }
            let domains = list(words[5])
            guard domains.count <= WireFormat.maxDNSSearchLength / 2 + 1 else { return .failure(DNSAgentRefusal("\(domains.count) search domains")) }
            let dns = DNSSettings(resolvers: resolvers, searchDomains: domains)
            if let problem = dns.problem { return .failure(DNSAgentRefusal(problem)) }
            guard !dns.isEmpty else { return .failure(DNSAgentRefusal("nothing to apply (no resolvers and no search domains)")) }
            return .success(.apply(DNSAgentApply(method: method, device: words[2], dns: dns, fullTunnel: fullTunnel)))
        default:
            return .failure(DNSAgentRefusal("unknown request \(clipped(words.first ?? ""))"))
        }
    }

    /// The comma-separated items of a field, none for "-" (an empty item stays, for the checks to refuse).
    static func list(_ field: String) -> [String] {
        field == "-" ? [] : field.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }

    /// At most 40 characters of untrusted text, for a refusal.
    static func clipped(_ text: String) -> String {
        text.utf8.count <= 40 ? "'\(text)'" : "'\(String(decoding: text.utf8.prefix(40), as: UTF8.self))…'"
    }
}

/// Why the agent refused a request.
public struct DNSAgentRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Splits a byte stream into lines of at most `limit` bytes (newline included); a longer line is reported
/// once as `overlong` and skipped up to its newline.
public struct LineSplitter: Sendable {
    public enum Event: Equatable, Sendable {
        case line([UInt8])
        case overlong
    }

    let limit: Int
    var pending: [UInt8] = []
    var skipping = false

    public init(limit: Int) { self.limit = limit }

    public mutating func feed(_ bytes: some Collection<UInt8>) -> [Event] {
        var events: [Event] = []
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                if !skipping { events.append(.line(pending)) }
                pending.removeAll(keepingCapacity: true)
                skipping = false
            } else if !skipping {
                pending.append(b)
                if pending.count >= limit {
                    events.append(.overlong)
                    pending.removeAll(keepingCapacity: true)
                    skipping = true
                }
            }
        }
        return events
    }
}

/// The agent process (`tunvpn dns-agent`).
public enum DNSAgent {
    /// The descriptor the client passes the agent's end of the socketpair as.
    public static let descriptor: Int32 = 3

    /// Runs the agent on `fd` for `device` until `revert` or the client's end closes; returns the exit
    /// status.
    public static func run(fd: Int32, device: String) -> Int32 {
        // A terminal's Ctrl-C or a service manager's SIGTERM to the whole group reaches the client, which
        // then asks for `revert`; the agent waits for that or for the client's end to close.
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { signal(s, SIG_IGN) }
        _ = Privileges.disableCoreDumps()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "tunvpn dns-agent[\(getpid())]")
        guard TunDevice.invalidNameReason(device) == nil else {
            logger.error("--dev: not an interface name")
            return 1
        }
        guard geteuid() == 0 else {
            logger.error("the DNS agent runs as root only (started by tunvpn client)")
            return 1
        }
        if let failure = Privileges.dropAllCapabilities() {
            logger.error("cannot drop capabilities: \(failure)")
            return 1
        }
        let journal: FileJournal
        do { journal = try HostNetwork.dnsJournal(device: device) } catch {
            logger.error("\(error)")
            return 1
        }
        var agent = Agent(fd: fd, device: device, journal: journal, logger: logger)
        guard agent.send("ready") else {
            agent.revert()
            return 1
        }
        logger.info("running as uid 0 with no capabilities, for \(device); journal \(journal.path)")
        return agent.serve()
    }

    struct Agent {
        let fd: Int32
        let device: String
        let journal: FileJournal
        let logger: Logger
        var splitter = LineSplitter(limit: DNSAgentRequest.maxLineLength)

        init(fd: Int32, device: String, journal: FileJournal, logger: Logger) {
            self.fd = fd
            self.device = device
            self.journal = journal
            self.logger = logger
        }

        /// Reads requests until `revert` or end of file; restores in both cases.
        mutating func serve() -> Int32 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    logger.notice("the client's end closed; restoring DNS")
                    return revert() ? 0 : 1
                }
                for event in splitter.feed(buffer.prefix(n)) {
                    guard case .line(let bytes) = event else {
                        logger.warning("refused: a line longer than \(DNSAgentRequest.maxLineLength) bytes")
                        _ = send("error line longer than \(DNSAgentRequest.maxLineLength) bytes")
                        continue
                    }
                    switch DNSAgentRequest.parse(bytes, device: device) {
                    case .failure(let refusal):
                        logger.warning("refused: \(refusal)")
                        _ = send("error refused: \(refusal)")
                    case .success(.revert):
                        let ok = revert()
                        _ = send(ok ? "ok" : "error could not restore everything (see the log)")
                        return ok ? 0 : 1
                    case .success(.apply(let a)):
                        _ = send(apply(a))
                    }
                }
            }
        }

        /// Applies `a` through the agent's journal; the reply line.
        func apply(_ a: DNSAgentApply) -> String {
            let plan = Planner.dns(
                DNSPlanInput(
                    tunDevice: a.device, method: a.method, resolvers: a.dns.resolvers.map(\.description), search: a.dns.searchDomains,
                    fullTunnel: a.fullTunnel))
            do {
                try HostNetwork.preflight(plan)
                try PlanExecutor(executor: SystemCommandExecutor(), journal: journal).apply(plan)
            } catch {
                logger.error("\(error)")
                return "error \(error)"
            }
            logger.info("applied \(plan.changes.count) change(s): \(plan.changes.map { $0.summary }.joined(separator: "; "))")
            return "ok"
        }

        /// Undoes what the journal records and deletes it; false when an undo failed.
        @discardableResult
        func revert() -> Bool {
            defer { journal.unlinkIfEmpty() }
            do {
                let (undone, failures) = try PlanExecutor(executor: SystemCommandExecutor(), journal: journal).tearDown()
                if undone > 0 { logger.info("restored \(undone) DNS change(s)") }
                for f in failures { logger.error("could not undo \(f)") }
                return failures.isEmpty
            } catch {
                logger.error("restore: \(error)")
                return false
            }
        }

        /// Writes one reply line (made one line and clipped); false when the client's end is gone.
        func send(_ text: String) -> Bool {
            let flat = String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
            let line = Array(flat.utf8.prefix(DNSAgentRequest.maxLineLength - 1)) + [UInt8(ascii: "\n")]
            return DNSAgentClient.writeAll(fd, line)
        }
    }
}

/// The client's end of the agent: starts it, sends requests, reads replies (one request at a time).
public final class DNSAgentClient: Sendable {
    let fd: Int32
    public let pid: pid_t
    private let state = Mutex<(splitter: LineSplitter, finished: Bool)>((LineSplitter(limit: DNSAgentRequest.maxLineLength), false))

    private init(fd: Int32, pid: pid_t) {
        self.fd = fd
        self.pid = pid
    }

    /// Starts the agent for `device` (as root, before the privilege drop) and waits for its `ready`.
    ///
    /// - Throws: `ControlError` naming what failed.
    public static func start(device: String) throws -> DNSAgentClient {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw ControlError("cannot start the DNS agent: socketpair failed: \(String(cString: strerror(errno))); or add --no-dns")
        }
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &path, Int(PATH_MAX))
        guard length > 0 else {
            close(pair[0])
            close(pair[1])
            throw ControlError("cannot start the DNS agent: readlink /proc/self/exe failed: \(String(cString: strerror(errno))); or add --no-dns")
        }
        let executable = String(decoding: path.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let spawned = CommandRunner.spawn(
            [executable, "dns-agent", "--fd", "\(DNSAgent.descriptor)", "--dev", device], passing: pair[1], as: DNSAgent.descriptor)
        close(pair[1])
        guard case .success(let pid) = spawned else {
            close(pair[0])
            if case .failure(let e) = spawned { throw ControlError("cannot start the DNS agent: \(e); or add --no-dns") }
            throw ControlError("cannot start the DNS agent; or add --no-dns")
        }
        let client = DNSAgentClient(fd: pair[0], pid: pid)
        guard let ready = client.readLine(timeoutMilliseconds: 15_000), ready == "ready" else {
            client.finish()
            throw ControlError("the DNS agent (pid \(pid)) did not start (its log lines above say why); or add --no-dns")
        }
        return client
    }

    /// Asks the agent to apply `request`.
    ///
    /// - Throws: `ControlError` with the agent's reason.
    public func apply(_ request: DNSAgentApply) throws {
        guard Self.writeAll(fd, Array(DNSAgentRequest.apply(request).line.utf8)) else {
            throw ControlError("DNS agent (pid \(pid)) is gone: DNS not applied")
        }
        guard let reply = readLine(timeoutMilliseconds: 60_000) else {
            throw ControlError("DNS agent (pid \(pid)) did not answer: DNS not applied")
        }
        guard reply == "ok" else { throw ControlError("DNS agent: \(reply.hasPrefix("error ") ? String(reply.dropFirst(6)) : reply)") }
    }

    /// Asks the agent to restore everything and waits for it to exit; logs a failure.
    public func revert(logger: Logger) {
        if Self.writeAll(fd, Array(DNSAgentRequest.revert.line.utf8)) {
            if let reply = readLine(timeoutMilliseconds: 60_000), reply != "ok" {
                logger.error("DNS agent: \(reply.hasPrefix("error ") ? String(reply.dropFirst(6)) : reply)")
            }
        }
        finish()
    }

    /// Closes the client's end (which makes a running agent restore and exit) and reaps the agent.
    func finish() {
        let first = state.withLock { s in
            defer { s.finished = true }
            return !s.finished
        }
        guard first else { return }
        close(fd)
        // Reaped within 10 s, else left to finish on its own (a hung `resolvectl`): the client's exit must
        // not wait for it.
        let deadline = SpawnedProcess.monotonicNanoseconds() + 10_000_000_000
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 && SpawnedProcess.monotonicNanoseconds() < deadline {
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            _ = nanosleep(&pause, nil)
        }
    }

    /// The next reply line, or nil on end of file, an error, an overlong line or the timeout.
    func readLine(timeoutMilliseconds: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let deadline = SpawnedProcess.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        var queued: [LineSplitter.Event] = []
        while true {
            if let first = queued.first {
                guard case .line(let bytes) = first else { return nil }
                return String(decoding: bytes, as: UTF8.self)
            }
            let now = SpawnedProcess.monotonicNanoseconds()
            guard now < deadline else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1)
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { return nil }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            queued = state.withLock { $0.splitter.feed(buffer.prefix(n)) }
        }
    }

    /// Writes all of `bytes` to `fd` (MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}

// The host side of routing plans: running their commands, reading sysctls, keeping the journal under
// /run/tunvpn, and reading the routes tunvpn plans around (default route, route to the server).
//
// The journal is keyed by network namespace (the inode of /proc/self/ns/net) and device, so instances in
// different namespaces of one machine, as the tests run them, never see or undo each other's state.

import CLinux
import Glibc
import Routing
import Transport

/// Runs plan commands for real. `sysctl -w key=value` is carried out by writing /proc/sys directly, so
/// procps is not required and the value always applies to this network namespace.
public struct SystemCommandExecutor: CommandExecutor {
    public init() {}

    public func run(_ command: [String], input: String?) -> String? {
        // The resolv.conf steps run in process (there is no such program; Routing's `ResolvConf`).
        if command.first == ResolvConf.program {
            if command.count == 3, command[1] == "write" {
                return ResolvConfFile.write(command[2], bytes: Array((input ?? "").utf8))
            }
            guard let (path, saved) = ResolvConf.saved(in: JournalEntry(undo: command, input: input)) else {
                return "not a resolv.conf step: \(command.joined(separator: " "))"
            }
            return ResolvConfFile.restore(path, saved: saved)
        }
        if command.count == 3, command[0] == "sysctl", command[1] == "-w", let eq = command[2].firstIndex(of: "=") {
            let key = String(command[2][..<eq])
            let value = String(command[2][command[2].index(after: eq)...])
            return writeSysctl(key, value)
        }
        let out = CommandRunner.run(command, input: input)
        if out.succeeded { return nil }
        let text = (out.stderr.isEmpty ? out.stdout : out.stderr).split(separator: "\n").joined(separator: "; ")
        return text.isEmpty ? "exit status \(out.status)" : text
    }

    static func sysctlPath(_ key: String) -> String { "/proc/sys/" + key.split(separator: ".").joined(separator: "/") }

    public func readFile(_ path: String) -> SavedFile? { ResolvConfFile.read(path) }

    public func readSysctl(_ key: String) -> String? {
        guard let bytes = try? KeyFiles.readSmallFile(Self.sysctlPath(key), what: "sysctl").text else { return nil }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    func writeSysctl(_ key: String, _ value: String) -> String? {
        // Already at the value: nothing to write. Containers mount /proc/sys read-only and set
        // net.ipv4.ip_forward through the runtime (compose `sysctls:`), where a write fails with EROFS.
        if readSysctl(key) == value { return nil }
        let fd = open(Self.sysctlPath(key), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return "cannot open \(Self.sysctlPath(key)): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let text = value + "\n"
        let n = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        return n < 0 ? "cannot write \(Self.sysctlPath(key)): \(String(cString: strerror(errno)))" : nil
    }
}

/// The journal as a file under the state directory: one `JournalEntry` per line, appended and fsync'd
/// before each change.
///
/// Lifetime: `open` opens the file once (O_NOFOLLOW, so a symbolic link planted at the path is refused,
/// open(2)) and checks what it opened (fstat(2): a regular file owned by root or this user, without
/// group or other permissions); the descriptor is kept until `deinit`, so an instance that later gives up
/// root still appends to and empties its own journal. `remove()` empties it (ftruncate(2)): an empty
/// journal means nothing to undo; `unlinkIfEmpty()` deletes it for a caller that may.
public final class FileJournal: JournalStore, Sendable {
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Opens (creating, mode 0600) and checks the journal at `path`.
    ///
    /// - Throws: `RoutingError` naming the path when it cannot be opened, is a symbolic link, is not a
    ///   regular file, is owned by another user or is open to group or others.
    public static func open(path: String) throws(RoutingError) -> FileJournal {
        // O_NONBLOCK keeps a FIFO planted at the path from blocking the open; fstat then refuses it.
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            let why = code == ELOOP ? "it is a symbolic link" : String(cString: strerror(code))
            throw RoutingError(step: "journal", command: "", message: "cannot open \(path): \(why); remove it after checking what it holds")
        }
        if let problem = HostNetwork.ownershipProblem(fd: fd) {
            close(fd)
            throw RoutingError(
                step: "journal", command: "",
                message: "refusing \(path): \(problem); remove it after checking what it holds (tunvpn creates it root-owned, mode 0600)")
        }
        return FileJournal(path: path, fd: fd)
    }

    /// Opens the journal at `path` as `open` does and holds an exclusive flock(2) on it for the journal's
    /// life, waiting up to `timeoutSeconds` for another holder (a DNS agent still restoring after its
    /// client died) to finish; a file its last holder deleted meanwhile is reopened at the path.
    ///
    /// - Throws: `RoutingError` as `open` does, or when the lock is still held after the timeout.
    public static func openLocked(path: String, timeoutSeconds: Int) throws(RoutingError) -> FileJournal {
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let deadline = clock.tv_sec + timeoutSeconds
        while true {
            let journal = try open(path: path)
            if flock(journal.fd, LOCK_EX | LOCK_NB) == 0 {
                var mine = stat()
                var there = stat()
                if fstat(journal.fd, &mine) == 0, lstat(path, &there) == 0, there.st_dev == mine.st_dev, there.st_ino == mine.st_ino {
                    return journal
                }
                continue  // deleted by the holder we waited for: open the file now at the path
            }
            guard errno == EWOULDBLOCK || errno == EINTR else {
                throw RoutingError(step: "journal", command: "", message: "cannot lock \(path): \(String(cString: strerror(errno)))")
            }
            clock_gettime(CLOCK_MONOTONIC, &clock)
            guard clock.tv_sec < deadline else {
                throw RoutingError(
                    step: "journal", command: "",
                    message: "\(path) is still locked after \(timeoutSeconds) s (a tunvpn dns-agent still restoring?); check `ps -C tunvpn`, then run tunvpn down")
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            _ = nanosleep(&pause, nil)
        }
    }

    public func append(_ entry: JournalEntry) throws(RoutingError) {
        let line = entry.encoded + "\n"
        let n = line.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        guard n == line.utf8.count, fsync(fd) == 0 else {
            throw RoutingError(step: "journal", command: "", message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    public func entries() throws(RoutingError) -> [JournalEntry] {
        let limit = 1 << 20
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while bytes.count <= limit {
            let offset = off_t(bytes.count)
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw RoutingError(step: "journal", command: "", message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        guard bytes.count <= limit else {
            throw RoutingError(step: "journal", command: "", message: "\(path) is larger than \(limit) bytes; it was not written by tunvpn")
        }
        var result: [JournalEntry] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where !line.isEmpty {
            // A torn last line (crash mid-write) is skipped: its change was never made.
            if let entry = JournalEntry(encoded: line) { result.append(entry) }
        }
        return result
    }

    /// Empties the journal (ftruncate(2) and fsync(2) on the descriptor).
    public func remove() throws(RoutingError) {
        guard ftruncate(fd, 0) == 0, fsync(fd) == 0 else {
            throw RoutingError(step: "journal", command: "", message: "cannot empty \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Deletes the file if it is empty and still the one opened here; does nothing when this process may
    /// not (after giving up root, the state directory is closed to it).
    public func unlinkIfEmpty() {
        var mine = stat()
        var there = stat()
        guard fstat(fd, &mine) == 0, mine.st_size == 0, lstat(path, &there) == 0, there.st_dev == mine.st_dev,
            there.st_ino == mine.st_ino
        else { return }
        unlink(path)
    }
}

/// Facts about the host's network, read with `ip`.
public enum HostNetwork {
    /// Where journals, instance locks and status sockets live.
    public static let stateDirectory = "/run/tunvpn"

    /// True when this process may use the state directory (an unprivileged run with only CAP_NET_ADMIN,
    /// whose plans are empty, may not: root owns /run/tunvpn, mode 0700).
    public static var stateDirectoryUsable: Bool {
        var st = stat()
        if stat(stateDirectory, &st) != 0 { return geteuid() == 0 }
        return access(stateDirectory, R_OK | W_OK | X_OK) == 0
    }

    /// Why the file open as `fd` must not be trusted, or nil: it must be a regular file owned by root or
    /// this process's user, with no group or other permissions (fstat(2)).
    static func ownershipProblem(fd: Int32) -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "fstat failed: \(String(cString: strerror(errno)))" }
        guard st.st_mode & S_IFMT == S_IFREG else { return "it is not a regular file" }
        guard st.st_uid == 0 || st.st_uid == geteuid() else { return "it is owned by uid \(st.st_uid), not root" }
        guard st.st_mode & 0o077 == 0 else {
            return "its mode is 0\(String(st.st_mode & 0o777, radix: 8)), open to group or others (expected 0600)"
        }
        return nil
    }

    /// Checks the state directory before anything in it is used, creating it (root, mode 0700) if it is
    /// missing: it must be a real directory (lstat(2), not a symbolic link) owned by root, with no group
    /// or other write permission, since root later replays the journals kept there.
    ///
    /// - Throws: `RoutingError` naming the directory, what is wrong and the commands that fix it.
    public static func checkStateDirectory() throws(RoutingError) {
        try checkRootDirectory(stateDirectory, mode: 0o700, step: "state directory")
    }

    /// Checks `path` before root uses what is in it, creating it with `mode` (owned by root) if it is
    /// missing: it must be a real directory (lstat(2), not a symbolic link) owned by root, with no group
    /// or other write permission, so that nobody but root can put files of their own there.
    ///
    /// - Throws: `RoutingError` (`step` names the directory's role) naming the directory, what is wrong
    ///   and the commands that fix it.
    static func checkRootDirectory(_ path: String, mode: mode_t, step: String) throws(RoutingError) {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT, mkdir(path, mode) == 0 || errno == EEXIST, lstat(path, &st) == 0 else {
                throw RoutingError(step: step, command: "", message: "cannot create \(path): \(String(cString: strerror(errno)))")
            }
        }
        let fix = "check what it holds, then run `chown root:root \(path) && chmod \(String(mode, radix: 8)) \(path)`"
        guard st.st_mode & S_IFMT == S_IFDIR else {
            let what = st.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a directory"
            throw RoutingError(step: step, command: "", message: "\(path) is \(what); remove it")
        }
        guard st.st_uid == 0 else {
            throw RoutingError(step: step, command: "", message: "\(path) is owned by uid \(st.st_uid), not root; \(fix)")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw RoutingError(
                step: step, command: "",
                message: "\(path) is writable by group or others (mode 0\(String(st.st_mode & 0o777, radix: 8))); \(fix)")
        }
    }

    /// An identifier of the current network namespace that is never reused while the machine is up:
    /// the kernel's network-namespace cookie (getsockopt SO_NETNS_COOKIE, Linux 5.14+). Inode numbers of
    /// deleted namespaces come back, so with them a stale journal could be replayed in an unrelated
    /// namespace; the inode is only the fallback for older kernels.
    public static func namespaceID() -> String {
        let soNetnsCookie: Int32 = 71  // SO_NETNS_COOKIE, include/uapi/asm-generic/socket.h
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd >= 0 {
            defer { close(fd) }
            var cookie: UInt64 = 0
            var length = socklen_t(MemoryLayout<UInt64>.size)
            if getsockopt(fd, SOL_SOCKET, soNetnsCookie, &cookie, &length) == 0, length == 8 { return "netns-\(cookie)" }
        }
        var st = stat()
        guard stat("/proc/self/ns/net", &st) == 0 else { return "netns-unknown" }
        return "netns\(st.st_ino)"
    }

    /// True when an interface of this name exists in this network namespace (if_nametoindex(3)).
    public static func interfaceExists(_ name: String) -> Bool { if_nametoindex(name) != 0 }

    /// The journal of the instance using `device` in this network namespace, opened and checked (after
    /// checking the state directory, and creating it if needed).
    public static func journal(device: String) throws(RoutingError) -> FileJournal {
        try FileJournal.open(path: try runtimePath(device: device, suffix: "journal"))
    }

    /// The suffix of the DNS agent's journal (`<netns id>-<device>.dns.journal`), which holds the client's
    /// resolver changes apart from the instance's own journal (docs/ROUTING.md, "DNS").
    public static let dnsJournalSuffix = "dns.journal"

    /// The DNS agent's journal for `device` in this network namespace, opened and checked like `journal`.
    /// Held locked (flock(2)) while the returned journal lives: by a running agent, or by whoever replays
    /// it, so a restart right after `kill -9` waits for the killed client's agent to finish restoring.
    public static func dnsJournal(device: String) throws(RoutingError) -> FileJournal {
        try FileJournal.openLocked(path: try runtimePath(device: device, suffix: dnsJournalSuffix), timeoutSeconds: 10)
    }

    /// `/run/tunvpn/<netns id>-<device>.<suffix>`, after `checkStateDirectory()`.
    public static func runtimePath(device: String, suffix: String) throws(RoutingError) -> String {
        try checkStateDirectory()
        return runtimeName(device: device, suffix: suffix)
    }

    /// `/run/tunvpn/<netns id>-<device>.<suffix>`, without touching the file system.
    public static func runtimeName(device: String, suffix: String) -> String {
        "\(stateDirectory)/\(namespaceID())-\(device).\(suffix)"
    }

    /// Parses the "via X dev Y" part of an `ip route` line.
    static func parseRoute(_ line: Substring) -> RouteLookup? {
        let words = line.split(separator: " ")
        var via: String? = nil
        var dev: String? = nil
        var i = 0
        while i < words.count - 1 {
            if words[i] == "via" { via = String(words[i + 1]) }
            if words[i] == "dev" { dev = String(words[i + 1]) }
            i += 1
        }
        guard let dev else { return nil }
        return RouteLookup(via: via, device: dev)
    }

    /// The IPv4 default route, if any (`ip -4 route show default`).
    public static func defaultRoute() -> RouteLookup? {
        let out = CommandRunner.run(["ip", "-4", "route", "show", "default"])
        guard out.succeeded, let line = out.stdout.split(separator: "\n").first else { return nil }
        return parseRoute(line)
    }

    /// The IPv6 default route, if any (`ip -6 route show default`, or only those through `device`).
    public static func defaultRoute6(device: String? = nil) -> RouteLookup? {
        let out = CommandRunner.run(["ip", "-6", "route", "show", "default"] + (device.map { ["dev", $0] } ?? []))
        guard out.succeeded else { return nil }
        for line in out.stdout.split(separator: "\n") {
            if let route = parseRoute(line) { return route }
            // `ip route show … dev X` leaves the device out of each line.
            if let device, line.hasPrefix("default") { return RouteLookup(via: parseRoute(line + " dev \(device)")?.via, device: device) }
        }
        return nil
    }

    /// True when this host runs IPv6 and gives it to new devices (`/proc/sys/net/ipv6` exists and
    /// `net.ipv6.conf.default.disable_ipv6` is 0; ip-sysctl.rst).
    public static var ipv6Available: Bool {
        SystemCommandExecutor().readSysctl("net.ipv6.conf.default.disable_ipv6") == "0"
    }

    /// A sysctl's current value (for the plans that restore it), or nil.
    public static func sysctl(_ key: String) -> String? { SystemCommandExecutor().readSysctl(key) }

    /// The host's connected IPv6 networks (`ip -6 route show`: the on-link prefixes of its interfaces,
    /// those without a gateway), as (prefix text, device), without link-local fe80::/64, multicast, and
    /// routes of `excluding` (the tunnel's own device).
    public static func connectedNetworks6(excluding device: String) -> [(network: String, device: String)] {
        let out = CommandRunner.run(["ip", "-6", "route", "show"])
        guard out.succeeded else { return [] }
        return parseLinkRoutes6(out.stdout).filter { $0.device != device }
    }

    /// Parses `ip -6 route show` output: lines that start with an IPv6 prefix (or a bare address, /128),
    /// have "dev NAME" and no "via"; fe80::/10 and ff00::/8 networks are skipped.
    static func parseLinkRoutes6(_ text: String) -> [(network: String, device: String)] {
        text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard let first = words.first, let prefix = IPv6Prefix(first), !words.contains("via"),
                let route = parseRoute(line)
            else { return nil }
            let top = prefix.address.high >> 48
            if top & 0xffc0 == 0xfe80 || top & 0xff00 == 0xff00 { return nil }
            return ("\(prefix.network)/\(prefix.length)", route.device)
        }
    }

    /// The host's connected IPv4 networks (`ip -4 route show scope link`: its LANs and other on-link
    /// routes), as (network text like "192.168.1.0/24", device), skipping `excluding` (the tunnel's own device).
    public static func connectedNetworks(excluding device: String) -> [(network: String, device: String)] {
        let out = CommandRunner.run(["ip", "-4", "route", "show", "scope", "link"])
        guard out.succeeded else { return [] }
        return parseLinkRoutes(out.stdout).filter { $0.device != device }
    }

    /// Parses `ip -4 route show scope link` output: each line starts with the network ("10.0.0.0/24", or
    /// a bare address for a /32), then "dev NAME" somewhere after it. Lines without either are skipped.
    static func parseLinkRoutes(_ text: String) -> [(network: String, device: String)] {
        text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard var network = words.first.map(String.init), let route = parseRoute(line) else { return nil }
            // Route types (e.g. "broadcast 10.0.0.255 ...") come first when present; unicast omits it.
            if network.first?.isNumber != true { return nil }
            if !network.contains("/") { network += "/32" }
            return (network, route.device)
        }
    }

    /// How the kernel reaches `address` now (`ip -4 route get`, or `ip -6` for an IPv6 address), or nil.
    public static func route(to address: String) -> RouteLookup? {
        let out = CommandRunner.run(["ip", address.contains(":") ? "-6" : "-4", "route", "get", address])
        guard out.succeeded, let line = out.stdout.split(separator: "\n").first, !line.hasPrefix("local") else { return nil }
        return parseRoute(line)
    }

    /// True when iptables' filter/FORWARD chain already exists here (Docker, ufw and friends put their
    /// drops there; an nftables accept in our own table cannot override them).
    public static func iptablesForwardChainExists() -> Bool {
        guard CommandRunner.exists("nft") else { return false }
        return CommandRunner.run(["nft", "list", "chain", "ip", "filter", "FORWARD"]).succeeded
    }

    /// The same for ip6tables' filter/FORWARD chain.
    public static func ip6tablesForwardChainExists() -> Bool {
        guard CommandRunner.exists("nft") else { return false }
        return CommandRunner.run(["nft", "list", "chain", "ip6", "filter", "FORWARD"]).succeeded
    }

    /// Checks, before anything changes, that the tools a plan needs exist and that the kernel accepts its
    /// nftables rules (`nft --check` loads them into a transaction that is then aborted).
    public static func preflight(_ plan: Plan) throws(RoutingError) {
        for change in plan.changes {
            switch change {
            case .nftTable(_, let name, let ruleset):
                guard CommandRunner.exists("nft") else {
                    throw RoutingError(step: "preflight", command: "", message: "nft not found: install nftables (apt-get install nftables), or iptables for the fallback")
                }
                let out = CommandRunner.run(["nft", "-c", "-f", "-"], input: change.applyInput ?? ruleset)
                guard out.succeeded else {
                    let why = out.stderr.split(separator: "\n").first.map(String.init) ?? "exit \(out.status)"
                    throw RoutingError(
                        step: "preflight", command: "nft -c -f -",
                        message: "the kernel refused the rules of table \(name) (is NAT support, nf_nat/nft_masq, available?): \(why)")
                }
            case .iptablesRule:
                guard CommandRunner.exists("iptables") else {
                    throw RoutingError(step: "preflight", command: "", message: "iptables not found: install iptables or nftables")
                }
            case .ip6tablesRule:
                guard CommandRunner.exists("ip6tables") else {
                    throw RoutingError(
                        step: "preflight", command: "",
                        message: "ip6tables not found: install iptables (it has ip6tables) or nftables, or start with --no-ipv6")
                }
            case .route:
                guard CommandRunner.exists("ip") else {
                    throw RoutingError(step: "preflight", command: "", message: "ip not found: install iproute2")
                }
            case .resolvectl:
                guard CommandRunner.exists("resolvectl") else {
                    throw RoutingError(step: "preflight", command: "", message: "resolvectl not found: install systemd-resolved, or start with --no-dns")
                }
            case .sysctl, .device, .resolvConf: break
            }
        }
    }
}

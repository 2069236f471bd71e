// The fixture of every end-to-end suite that runs the real `tunvpn` binary: a topology, a directory of
// keys and logs, and the tunvpn processes started in the namespaces as an operator would start them.
// Every process log is printed (its last lines) when the lab closes, so a failing test shows what
// tunvpn said.
//
// Two kinds of lab, the same type:
// - `TunnelLab.standard()` (or `TunnelLab(topology)` for a test's own topology): the tunnel only.
//   The server runs with `--no-nat` and the clients with `--no-routes`, and the tests add the routes and
//   the forwarding sysctl themselves (`routeClientToInternetHost`).
// - `TunnelLab.routed()`: the LAN–client–router–server–internet line of RoutedTopology.swift, where
//   tunvpn makes its own host changes (routes, nftables tables, ip_forward), the server NATing out of s1.
// - Either dual stack (`standard(dualStack: true)`, `routed(dualStack: true)`): IPv6 on every link
//   (Topology.swift, RoutedTopology.swift), the server given an IPv6 tunnel prefix beside the IPv4 one
//   (`--address 10.8.0.1/16 --address fd00:8::1/64`) and listening on its default `[::]:51820`; with
//   `underlay6`, the clients reach it over IPv6 (`--endpoint [S's s0 IPv6 address]:51820`).

import Foundation
import Testing
import TestSupport

final class TunnelLab {
    static let port = 51820
    static let serverTunnelAddress = "10.8.0.1"
    static let clientTunnelAddress = "10.8.0.2"
    /// The IPv6 tunnel prefix a dual-stack lab's server is given, its own address and the first client's.
    static let tunnelPrefix6 = "fd00:8::/64"
    static let serverTunnelAddress6 = "fd00:8::1"
    static let clientTunnelAddress6 = "fd00:8::2"
    static let webPort = 8080

    let topology: Topology
    let directory: TemporaryDirectory
    /// Arguments every `startServer` and `startClient` adds: what tunvpn may change in its namespaces.
    let serverDefaults: [String]
    let clientDefaults: [String]
    /// Whether the lab's links carry IPv6 too and the server an IPv6 tunnel prefix.
    let dualStack: Bool
    /// Whether clients reach the server over IPv6 (S's s0 IPv6 address).
    let underlay6: Bool
    private var processes: [(name: String, process: BackgroundProcess)] = []

    /// A lab on `topology` (which it closes if the lab cannot be made). By default tunvpn changes only its
    /// device: `--no-nat` for the server, `--no-routes` for the clients. `dualStack` gives the server an
    /// IPv6 tunnel prefix and its default listening address; `underlay6` points the clients at S's s0
    /// IPv6 address (both need a topology with IPv6 addresses).
    init(
        _ topology: Topology, serverDefaults: [String] = ["--no-nat"], clientDefaults: [String] = ["--no-routes"],
        dualStack: Bool = false, underlay6: Bool = false
    ) throws {
        self.topology = topology
        self.serverDefaults = serverDefaults
        self.clientDefaults = clientDefaults
        self.dualStack = dualStack || underlay6
        self.underlay6 = underlay6
        do { directory = try TemporaryDirectory() } catch {
            topology.close()
            throw error
        }
    }

    /// A lab on the standard client–server–internet topology (dual stack if asked, Topology.swift).
    static func standard(dualStack: Bool = false, underlay6: Bool = false) throws -> TunnelLab {
        try TunnelLab(
            Topology.clientServerInternet(dualStack: dualStack || underlay6), dualStack: dualStack, underlay6: underlay6)
    }

    /// A lab on the routed topology (Topology.lanClientRouterServerInternet), where tunvpn makes its own
    /// host changes: full-tunnel routes for the client, forwarding and NAT out of s1 for the server.
    static func routed(enableIPv6: Bool = false, dualStack: Bool = false, underlay6: Bool = false) throws -> TunnelLab
    {
        try TunnelLab(
            .lanClientRouterServerInternet(enableIPv6: enableIPv6, dualStack: dualStack || underlay6),
            serverDefaults: ["--egress", "s1"], clientDefaults: [], dualStack: dualStack, underlay6: underlay6)
    }

    /// Runs `body` with the lab, then prints the process logs, stops everything and removes the
    /// namespaces and files, however `body` ends. It holds the end-to-end gate (`EndToEndGate`) meanwhile:
    /// `alone` for a test that compares throughput and needs the cores to itself.
    func use<T>(alone: Bool = false, _ body: (TunnelLab) throws -> T) throws -> T {
        defer { close() }
        return try EndToEndGate.enter(alone: alone) { try body(self) }
    }

    func path(_ name: String) -> String { directory.path + "/" + name }

    subscript(host: String) -> NetworkNamespace { topology[host] }

    // MARK: Addresses of the routed topology

    var k: Int { topology.subnetIndex }
    var serverUnderlay: String { topology.address("S", "s0") }
    var serverEgress: String { topology.address("S", "s1") }
    var clientUnderlay: String { topology.address("C", "c0") }
    var router: String { topology.address("R", "r0") }
    var internetHost: String { topology.address("H", "h0") }
    /// The IPv6 addresses of the same ends, in a dual-stack lab.
    var serverUnderlay6: String { topology.address6("S", "s0") }
    var serverEgress6: String { topology.address6("S", "s1") }
    var clientUnderlay6: String { topology.address6("C", "c0") }
    var internetHost6: String { topology.address6("H", "h0") }
    /// The server's address the clients use, as `--endpoint` writes it (`[v6]` in an IPv6 underlay).
    var serverEndpointHost: String { underlay6 ? "[\(serverUnderlay6)]" : serverUnderlay }

    // MARK: Keys and the allow-list

    /// `tunvpn keygen --out DIR --name NAME`; returns the public key (base64).
    @discardableResult
    func keygen(_ name: String) throws -> String {
        try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", path("keys"), "--name", name])
        return try String(contentsOfFile: path("keys/\(name).pub"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes the server's allow-list (`keys/clients` format) and returns its path.
    @discardableResult
    func writeAllowList(_ lines: [String]) throws -> String {
        let file = path("keys/clients")
        let text = lines.joined(separator: "\n") + "\n"
        print("+ cat > \(file) <<EOF\n\(text)EOF")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Keys for the server and the client, and an allow-list holding the client.
    func makeKeys() throws {
        try keygen("server")
        let clientKey = try keygen("client")
        try writeAllowList(["\(clientKey)  # the test's client"])
    }

    // MARK: Command lines

    /// `tunvpn server` with the lab's keys, port, tunnel address and device, before any defaults. A
    /// dual-stack lab's server listens on its default address (`[::]:51820`, one socket for both
    /// families) and gets the IPv6 prefix fd00:8::/64 beside 10.8.0.0/16.
    var serverArguments: [String] {
        let listen = dualStack ? [] : ["--listen", "0.0.0.0:\(Self.port)"]
        let addresses =
            ["--address", "\(Self.serverTunnelAddress)/16"]
            + (dualStack ? ["--address", "\(Self.serverTunnelAddress6)/64"] : [])
        return ["server", "--key", path("keys/server.key")] + listen + addresses + [
            "--clients", path("keys/clients"), "--dev", "tun0",
        ]
    }

    /// `tunvpn client` with key `key` and the server key file `serverKey`, towards `endpoint` (an address
    /// of the server's underlay, an IPv6 one with or without brackets; by default S's s0, over IPv6 in an
    /// `underlay6` lab), before any defaults.
    func clientArguments(key: String = "client", serverKey: String = "server", endpoint: String? = nil) -> [String] {
        let host = endpoint.map { $0.contains(":") && !$0.hasPrefix("[") ? "[\($0)]" : $0 } ?? serverEndpointHost
        return [
            "client", "--key", path("keys/\(key).key"), "--peer-key", path("keys/\(serverKey).pub"),
            "--endpoint", "\(host):\(Self.port)", "--dev", "tun0",
        ]
    }

    // MARK: Processes

    /// Starts `tunvpn server` in `host` and waits until its UDP socket is bound (which it does only after
    /// its host changes are made). `logName` names its log file.
    @discardableResult
    func startServer(in host: String = "S", extra: [String] = [], logLevel: String = "debug", logName: String = "server")
        throws -> BackgroundProcess
    {
        let server = try start(logName, in: host, serverArguments + serverDefaults + ["--log-level", logLevel] + extra)
        let bound = try topology[host].waitForListener(port: Self.port, udp: true)
        try #require(bound, "tunvpn server did not bind UDP port \(Self.port) within 10 s; its log:\n\(server.log)")
        return server
    }

    /// Starts `tunvpn client` in `host` with key `key` and the server key file `serverKey`, towards
    /// `endpoint` (by default S's s0). `logName` defaults to `client-<host>`.
    func startClient(
        in host: String = "C", key: String = "client", serverKey: String = "server", endpoint: String? = nil,
        extra: [String] = [], logLevel: String = "debug", wrapper: [String] = [], logName: String? = nil
    ) throws -> BackgroundProcess {
        try start(
            logName ?? "client-\(host)", in: host, wrapper: wrapper,
            clientArguments(key: key, serverKey: serverKey, endpoint: endpoint) + clientDefaults
                + ["--log-level", logLevel] + extra)
    }

    /// Starts the client in C as `nobody` with CAP_NET_ADMIN alone (setpriv, ambient and bounding sets), as
    /// an operator would run it unprivileged: a persistent tun0 owned by nobody, the key readable by it, and
    /// — since /dev/net/tun is 0600 on some machines — a 0666 node of the same device (10, 200) bound over
    /// /dev/net/tun in a mount namespace of the client's own.
    func startClientAsNobody(extra: [String] = []) throws -> BackgroundProcess {
        try self["C"].ip("tuntap", "add", "dev", "tun0", "mode", "tun", "user", "nobody")
        chmod(path("keys"), 0o755)
        let pw = try #require(getpwnam("nobody"))
        try #require(chown(path("keys/client.key"), pw.pointee.pw_uid, pw.pointee.pw_gid) == 0)
        let tun = path("net-tun")
        try #require(try runCommand("mknod", ["-m", "666", tun, "c", "10", "200"]).status == 0)
        return try startClient(
            endpoint: topology.address("S", "s0"), extra: extra,
            wrapper: [
                "unshare", "--mount", "--propagation", "private", "sh", "-c", #"mount --bind "$0" /dev/net/tun && exec "$@""#, tun,
                "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all,+net_admin",
                "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin",
            ])
    }

    /// Starts the server in S and the client in C (with `extra`) and waits for the tunnel; returns both.
    func startTunnel(client extra: [String] = []) throws -> (server: BackgroundProcess, client: BackgroundProcess) {
        let server = try startServer()
        let client = try startClient(extra: extra)
        try waitForTunnelUp(client)
        return (server, client)
    }

    /// Starts tunvpn with `arguments` in `host`, behind `wrapper` (e.g. a `setpriv …` prefix) if given.
    func start(_ name: String, in host: String, wrapper: [String] = [], _ arguments: [String]) throws -> BackgroundProcess {
        try spawn(name, in: host, wrapper + [TestBinaries.tunvpn] + arguments)
    }

    /// Starts `command` in `host`, logging to `<name>.log` (`<name>-<n>.log` when a process of that name
    /// was started before); `close` stops it and prints its log.
    func spawn(_ name: String, in host: String, _ command: [String]) throws -> BackgroundProcess {
        let file = processes.contains { $0.name == name } ? "\(name)-\(processes.count)" : name
        let process = try topology[host].spawn(command, logFile: path("\(file).log"))
        processes.append((name, process))
        return process
    }

    /// Runs `tunvpn ARGUMENTS` to completion inside `host` (`down`, `--dry-run`).
    func tunvpn(in host: String, _ arguments: [String]) throws -> CommandResult {
        try topology[host].exec([TestBinaries.tunvpn] + arguments, timeout: 30)
    }

    /// Sends SIGKILL to `process` (a tunvpn started by this lab) and waits for it to be gone.
    func kill9(_ process: BackgroundProcess) {
        print("+ kill -KILL \(process.pid)  # \(shellQuoted(process.command))")
        process.sendSignal(SIGKILL)
        #expect(process.waitForExit(timeout: 5), "\(process) survived SIGKILL for 5 s")
        #expect(process.endedBySignal == true)
    }

    /// Waits for the client's `tunnel up` line (logged once its routes and rules are in place) and returns
    /// the tunnel address it names (10.8.x.y).
    @discardableResult
    func waitForTunnelUp(_ client: BackgroundProcess, timeout: Double = 15) throws -> String {
        let up = client.waitForLog(containing: "tunnel up", timeout: timeout)
        try #require(up, "no `tunnel up` from the client within \(timeout) s; its log:\n\(client.log)")
        let line = try #require(client.log.split(separator: "\n").first { $0.contains("tunnel up") })
        let address = line.split(whereSeparator: { " ,=:/\"".contains($0) }).first { $0.hasPrefix("10.8.") }
        return String(try #require(address, "no 10.8.x.y address in \(line)"))
    }

    /// On the standard topology, where tunvpn changes only its device: routes the internet host's link
    /// (10.200.k.0/24) into C's tunnel, turns on forwarding in S, routes the tunnel pool back from H via
    /// S, and expects a ping from C to reach H. Returns the internet host's address.
    func routeClientToInternetHost(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try self["C"].ip("route", "add", "10.200.\(k).0/24", "dev", "tun0")
        try self["S"].sysctl("net.ipv4.ip_forward", "1")
        try self["H"].ip("route", "add", "10.8.0.0/16", "via", serverEgress)
        #expect(try self["C"].waitForPing(internetHost), "no ping from C to H", sourceLocation: sourceLocation)
        return internetHost
    }

    /// Expects `transfer`, of the file `path(name)` into `path(name + ".received")`, to have moved all of
    /// its `megabytes` MB intact.
    func expectIntact(
        _ transfer: TransferReport, _ name: String, megabytes: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(transfer.senderSucceeded, "\(transfer)", sourceLocation: sourceLocation)
        #expect(transfer.bytesReceived == megabytes << 20, "\(transfer)", sourceLocation: sourceLocation)
        #expect(
            try TestFiles.sha256(of: path(name)) == TestFiles.sha256(of: path(name + ".received")),
            "\(name).received differs from \(name)", sourceLocation: sourceLocation)
    }

    // MARK: The device

    /// The IPv4 addresses (with prefix length) configured on `device` in `host`.
    func addresses(of device: String, in host: String) throws -> [String] {
        let out = try topology[host].ip("-4", "-o", "address", "show", "dev", device).stdout
        return out.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.firstIndex(of: "inet").map { String(fields[$0 + 1]) }
        }
    }

    /// The global IPv6 addresses (with prefix length) configured on `device` in `host` (no link-local).
    func addresses6(of device: String, in host: String) throws -> [String] {
        let out = try topology[host].ip("-6", "-o", "address", "show", "dev", device, "scope", "global").stdout
        return out.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.firstIndex(of: "inet6").map { String(fields[$0 + 1]) }
        }
    }

    /// The transmit queue length (`qlen`) of `device` in `host`, as `ip link show` reports it.
    func queueLength(of device: String, in host: String) throws -> Int? {
        let fields = try topology[host].ip("-o", "link", "show", "dev", device).stdout
            .split(whereSeparator: { $0 == " " || $0 == "\\" })
        return fields.firstIndex(of: "qlen").flatMap { $0 + 1 < fields.count ? Int(fields[$0 + 1]) : nil }
    }

    // MARK: The internet host's web server

    /// Starts a python3 web server on the internet host serving `path("www")`; each request is logged
    /// with the peer address it came from (http.server's log format), which is what the test checks. In a
    /// dual-stack lab it listens on `::`, which http.server makes one socket for both families.
    func startWebServer() throws -> BackgroundProcess {
        try FileManager.default.createDirectory(atPath: path("www"), withIntermediateDirectories: true)
        let web = try spawn(
            "web", in: "H",
            [
                "python3", "-u", "-m", "http.server", "\(Self.webPort)", "--bind", dualStack ? "::" : internetHost,
                "--directory", path("www"),
            ])
        let listening = try topology["H"].waitForListener(port: Self.webPort)
        try #require(listening, "python3 http.server did not listen on \(Self.webPort) within 10 s: \(web.log)")
        return web
    }

    /// The peer address of every request `web` logged (`10.200.k.1 - - [date] "GET /x HTTP/1.1" 200 -`),
    /// an IPv4 peer of a dual-stack socket without its `::ffff:` (RFC 4291 §2.5.5.2).
    func requestSources(_ web: BackgroundProcess) -> [String] {
        web.log.split(separator: "\n").filter { $0.contains("\"GET ") }.map { line in
            let source = line.prefix(while: { $0 != " " })
            return String(source.hasPrefix("::ffff:") && source.contains(".") ? source.dropFirst(7) : source)
        }
    }

    /// The URL of `name` on the internet host's web server, over IPv6 if `ipv6`.
    func webURL(_ name: String, ipv6: Bool = false) -> String {
        "http://\(ipv6 ? "[\(internetHost6)]" : internetHost):\(Self.webPort)/\(name)"
    }

    /// Fetches `name` from the internet host's web server from inside `host` with curl, into `output`
    /// (over IPv6, to H's h0 IPv6 address, if `ipv6`).
    func fetch(_ name: String, from host: String, into output: String, ipv6: Bool = false) throws -> Bool {
        try topology[host].exec(
            ["curl", "-sS", "-g", "--max-time", "20", "-o", output, webURL(name, ipv6: ipv6)], timeout: 30
        ).status == 0
    }

    /// Runs `commands` in `host` all at once and waits (at most `timeout` seconds) for every one to end;
    /// returns each one's description and exit status (-1 if it had to be stopped).
    func runAtOnce(_ commands: [(what: String, command: [String])], in host: String, timeout: Double = 10) throws
        -> [(what: String, status: Int32)]
    {
        let started = try commands.enumerated().map { i, probe in
            (probe.what, try topology[host].spawn(probe.command, logFile: path("probe-\(i).log")))
        }
        return started.map { what, process in
            let ended = process.waitForExit(timeout: timeout)
            let status = ended ? process.exitStatus ?? -1 : process.terminate()
            let output = process.log.split(separator: "\n").joined(separator: "; ")
            print("  \(what): exit status \(status)\(output.isEmpty ? "" : ": " + output)")
            return (what, ended ? status : -1)
        }
    }

    // MARK: What the underlay carries

    /// tcpdump's lines for frames in `capture` that are neither ARP nor tunvpn UDP between the client's and
    /// the server's underlay addresses (to or from the server's port; the IPv6 ones in an `underlay6`
    /// lab). With `leavingFrom` (a MAC address), only frames sent from that address count: what arrives
    /// from elsewhere is not a leak. With `allowingNeighborDiscovery`, IPv6 neighbour discovery and MLD
    /// (IPv6's ARP, which carries no data) are let through as ARP is.
    func framesOutsideTheTunnel(
        _ capture: CaptureResult, leavingFrom mac: String? = nil, allowingNeighborDiscovery: Bool = false
    ) -> [String] {
        let (client, server) = underlay6 ? (clientUnderlay6, serverUnderlay6) : (clientUnderlay, serverUnderlay)
        var offending: [String] = []
        for (i, frame) in capture.frames.enumerated() where frame.kind != .arp {
            if let mac, frame.ethernetSource != mac { continue }
            if allowingNeighborDiscovery && frame.isNeighborDiscoveryOrMLD { continue }
            let toServer =
                frame.source == client && frame.destination == server && frame.destinationPort == UInt16(Self.port)
            let fromServer =
                frame.source == server && frame.destination == client && frame.sourcePort == UInt16(Self.port)
            if !(frame.isUDP && (toServer || fromServer)) { offending.append(capture.line(i)) }
        }
        return offending
    }

    // MARK: Closing

    /// Prints the last lines of each process log, stops every process and removes namespaces and files.
    func close() {
        for (name, process) in processes {
            process.terminate()
            let lines = process.log.split(separator: "\n", omittingEmptySubsequences: false)
            print("--- \(name) log (\(process.logFile), last \(min(lines.count, 40)) of \(lines.count) lines) ---")
            print(lines.suffix(40).joined(separator: "\n"))
        }
        processes = []
        // An instance that gave up root cannot delete its emptied journal, lock and socket files from the
        // host's /run/tunvpn, and a killed one may leave a journal; they are keyed by these namespaces,
        // which are about to go, so `tunvpn down` (root) removes them now rather than leaving them forever.
        for host in topology.plan.hosts { _ = try? topology[host].exec([TestBinaries.tunvpn, "down"]) }
        topology.close()
        directory.remove()
    }
}

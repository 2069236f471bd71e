// `tunvpn demo`'s steps: the whole VPN on one machine, in throwaway network namespaces, shown step by step.
//
//   lan host       l0 192.168.77.2                       default route via the client
//        │
//   client         lan0 192.168.77.1, c0 172.31.1.2      tunvpn client --gateway (0/1 and 128/1 into tun0)
//        │         underlay: only UDP to 172.31.2.2:51820 may cross it
//   router         r0 172.31.1.1, r1 172.31.2.1          forwards; has no route to 198.18.0.0/24
//        │
//   server         s0 172.31.2.2, s1 198.18.0.1          tunvpn server --egress s1 (MASQUERADE)
//        │
//   internet host  i0 198.18.0.2                         no route beyond its link: sees only the server
//
// Every namespace is dual stack: each link also carries a /64 of the documentation prefix 2001:db8::/32
// (RFC 3849), numbered like its IPv4 subnet (lan 2001:db8:77::/64, client–router 2001:db8:1::/64,
// router–server 2001:db8:2::/64, server–internet 2001:db8:18::/64), with IPv6 default routes where the
// IPv4 ones are, except the server's, which leads out of s1 to the internet host: its IPv6 way out. The
// router has no IPv6 route to 2001:db8:18::/64 either. The client's full tunnel also takes ::/1 and
// 8000::/1; the server gives it an address of its IPv6 tunnel prefix (a unique local /64 derived from
// its public key). A last step runs the client again against a server without an IPv6 way out.
//
// Each namespace is named tvdemo-<pid>-<role>. The demo generates keys with the binary's own code,
// starts this very binary (/proc/self/exe) as server and client, and checks what the issue asks the
// tunnel to do: full-tunnel routes, a ping and an HTTP fetch to the internet host over both families,
// MASQUERADE (the internet host sees 198.18.0.1 and 2001:db8:18::1), gateway mode for the LAN host, an
// underlay that carries only ciphertext, counters, and, with a server that has no IPv6 way out, IPv6
// refused at once inside the client with nothing leaving outside the tunnel. `DemoLab` removes it all again on every way out. Nothing in the root
// namespace changes.
//
// DNS: the client and the LAN host get their own /etc/netns/<ns>/resolv.conf (pointing at the LAN
// resolver, dnsmasq on the LAN host) before anything runs in them, so `ip netns exec` shows them that
// file and the host's /etc/resolv.conf is never touched (ip-netns(8)). The server pushes its own
// resolver, dnsmasq on its tunnel address 10.8.0.1 knowing internet.tunvpn.test; the demo resolves and
// fetches that name through the tunnel, shows the LAN resolver got no query from the client while the
// tunnel was up (a query sent straight to it is refused by the client's leak block), and compares the
// client's resolv.conf after teardown with its bytes from before.

import Control
import Crypto
import Glibc
import NamespaceLab
import Platform

/// The steps of one demo run, in order, and the checks they make.
final class DemoSteps {
    let lab: DemoLab
    var checksPassed = 0
    var lan = "", client = "", router = "", server = "", internet = ""
    var serverProcess: SpawnedProcess?
    var clientProcess: SpawnedProcess?
    /// The client's own resolv.conf (/etc/netns/<client>/resolv.conf) and the copy of its bytes before
    /// any client ran; the two resolvers' query logs; the LAN resolver's queries from the client before
    /// the tunnel came up.
    var clientResolvConf = "", resolvConfCopy = "", tunnelQueryLog = "", lanQueryLog = ""
    var lanQueriesBefore = 0

    static let port = 51820
    static let diagram = [
        "lan host       l0 192.168.77.2                       default route via the client",
        "     │",
        "client         lan0 192.168.77.1, c0 172.31.1.2      runs `tunvpn client --gateway`",
        "     │         underlay: should carry nothing but UDP to 172.31.2.2:\(port)",
        "router         r0 172.31.1.1, r1 172.31.2.1          forwards; has no route to 198.18.0.0/24",
        "     │",
        "server         s0 172.31.2.2, s1 198.18.0.1          runs `tunvpn server --egress s1`",
        "     │",
        "internet host  i0 198.18.0.2                         no route beyond its link: sees only the server",
        "",
        "and IPv6 on every link: 2001:db8:77::/64 (lan), 2001:db8:1::/64 (client–router), 2001:db8:2::/64",
        "(router–server), 2001:db8:18::/64 (server–internet); the server's IPv6 default route leads out of s1",
    ]
    /// The internet host's and the server's egress IPv6 addresses, and the client's underlay one.
    static let internet6 = "2001:db8:18::2"
    static let egress6 = "2001:db8:18::1"
    static let client6 = "2001:db8:1::2"
    /// The server's tunnel address, where its resolver (dnsmasq) listens, and the LAN's resolver.
    static let tunnelResolver = "10.8.0.1"
    static let lanResolver = "192.168.77.2"
    static let pattern = "74756e76706e"  // "tunvpn" in hex, the ping payload to look for

    init(lab: DemoLab) { self.lab = lab }

    func run() throws(DemoStop) {
        say(
            "tunvpn demo: a VPN between throwaway network namespaces named \(lab.prefix)*; nothing outside them changes."
        )
        say()
        for line in Self.diagram { say("  " + line) }
        let binary = try ownExecutable()
        lab.binary = binary
        try buildNetwork()
        try writeKeys()
        try startTunnel(binary)
        try showRoutes()
        try pingThroughTunnel()
        try fetchThroughTunnel()
        try resolveThroughTunnel()
        try captureUnderlay()
        try showCounters()
        try runWithoutIPv6Egress(binary)
    }

    // MARK: Checks

    func check(_ ok: Bool, _ passed: String, else failed: @autoclosure () -> String) throws(DemoStop) {
        guard ok else {
            say("  FAILED: \(failed())")
            throw .failed(failed())
        }
        self.passed(passed)
    }

    /// Counts and prints a check that passed (one whose failure already threw).
    func passed(_ what: String) {
        checksPassed += 1
        say("  ok: \(what)")
    }

    func step(_ title: String) {
        say()
        say(title)
    }

    // MARK: 1. The network

    func buildNetwork() throws(DemoStop) {
        step("1. Building the network: five namespaces joined by veth pairs")
        // Each veth is created inside a namespace with its peer moved straight into the other one.
        let plan = LabPlan(
            prefix: lab.prefix, hosts: ["lan", "client", "router", "server", "internet"],
            links: [
                VethLink(
                    .init("lan", "l0", "192.168.77.2/24", "2001:db8:77::2/64"),
                    .init("client", "lan0", "192.168.77.1/24", "2001:db8:77::1/64")),
                VethLink(
                    .init("client", "c0", "172.31.1.2/24", "2001:db8:1::2/64"),
                    .init("router", "r0", "172.31.1.1/24", "2001:db8:1::1/64")),
                VethLink(
                    .init("router", "r1", "172.31.2.1/24", "2001:db8:2::1/64"),
                    .init("server", "s0", "172.31.2.2/24", "2001:db8:2::2/64")),
                VethLink(
                    .init("server", "s1", "198.18.0.1/24", "\(Self.egress6)/64"),
                    .init("internet", "i0", "198.18.0.2/24", "\(Self.internet6)/64")),
            ], enableIPv6: true)
        try lab.build(plan)
        (lan, client, router, server, internet) = (
            plan.namespace("lan"), plan.namespace("client"), plan.namespace("router"), plan.namespace("server"),
            plan.namespace("internet")
        )
        try lab.mustRun(["ip", "-n", lan, "route", "add", "default", "via", "192.168.77.1"])
        try lab.mustRun(["ip", "-n", client, "route", "add", "default", "via", "172.31.1.1"])
        try lab.mustRun(["ip", "-n", server, "route", "add", "default", "via", "172.31.2.1"])
        try lab.mustRun(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        try lab.mustRun(["ip", "-n", lan, "-6", "route", "add", "default", "via", "2001:db8:77::1"])
        try lab.mustRun(["ip", "-n", client, "-6", "route", "add", "default", "via", "2001:db8:1::1"])
        try lab.mustRun(["ip", "-n", server, "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1"])
        try lab.mustRun(["ip", "-n", server, "-6", "route", "add", "default", "via", Self.internet6])
        try lab.mustRun(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        say("  made \(lab.prefix){lan,client,router,server,internet}; the router forwards, the others do not (yet)")
        say("  the server's IPv6 default route leads out of s1 to \(Self.internet6): it has an IPv6 way out")
        let underlay = try lab.run(in: client, ["ping", "-c", "1", "-W", "2", "172.31.2.2"])
        try check(
            underlay.succeeded, "the client reaches the server's underlay address 172.31.2.2 through the router",
            else: "the client cannot ping the server at 172.31.2.2 over the underlay: \(firstLine(underlay))")
        let before = try lab.run(in: client, ["ping", "-c", "1", "-W", "1", "198.18.0.2"])
        try check(
            !before.succeeded,
            "without the tunnel the client cannot reach the internet host 198.18.0.2 (\(pingVerdict(before)))",
            else: "the client reaches 198.18.0.2 without the tunnel, so the demo would prove nothing")
        let underlay6 = try lab.run(in: client, ["ping", "-c", "1", "-W", "2", "2001:db8:2::2"])
        try check(
            underlay6.succeeded, "over IPv6 too, at 2001:db8:2::2",
            else: "the client cannot ping the server at 2001:db8:2::2 over the IPv6 underlay: \(firstLine(underlay6))")
        let before6 = try lab.run(in: client, ["ping", "-c", "1", "-W", "1", Self.internet6])
        try check(
            !before6.succeeded,
            "nor the internet host's \(Self.internet6) over IPv6 (\(pingVerdict(before6)))",
            else: "the client reaches \(Self.internet6) without the tunnel, so the demo would prove nothing")
        for (name, owner) in [(client, "client"), (server, "server")] {
            // The journal is keyed by the namespace's cookie, which only code inside it can read.
            guard let binary = lab.binary,
                case let out = CommandRunner.run(["ip", "netns", "exec", name, binary, "down", "--dev", "tun0", "--print-journal-path"]),
                out.succeeded, let path = out.stdout.split(separator: "\n").first
            else { throw .failed("cannot find the journal path of \(name)") }
            lab.journals.append((owner, name, String(path)))
        }
    }

    // MARK: 2. Keys

    /// The real path of this binary, which the namespaces run as server and client.
    func ownExecutable() throws(DemoStop) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw .failed("cannot read /proc/self/exe: \(String(cString: strerror(errno)))") }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func writeKeys() throws(DemoStop) {
        step("2. Generating keys in \(lab.directory) (mode 0700), as `tunvpn keygen` does")
        var publicKeys: [String] = []
        for name in ["server", "client"] {
            let key = PrivateKey()
            do {
                try KeyFiles.write(key.base64 + "\n", to: "\(lab.directory)/\(name).key", mode: 0o600, overwrite: false)
                try KeyFiles.write(
                    key.publicKey.base64 + "\n", to: "\(lab.directory)/\(name).pub", mode: 0o644, overwrite: false)
            } catch {
                throw .failed("writing the demo's keys: \(error)")
            }
            say("  \(name).key and \(name).pub: public key \(key.publicKey.base64)")
            publicKeys.append(key.publicKey.base64)
        }
        do {
            try KeyFiles.write(
                "\(publicKeys[1])  # the demo's client\n", to: "\(lab.directory)/clients", mode: 0o644, overwrite: false
            )
            try KeyFiles.ensureDirectory("\(lab.directory)/www")
            try KeyFiles.write(
                "hello from the internet host\n", to: "\(lab.directory)/www/index.html", mode: 0o644, overwrite: false)
        } catch {
            throw .failed("writing the demo's files: \(error)")
        }
        say("  clients: the allow-list, holding the client's public key")
    }

    // MARK: 3. Server and client

    func startTunnel(_ binary: String) throws(DemoStop) {
        step("3. Starting the server and the client (this binary: \(binary))")
        for journal in lab.journals {
            say("  the \(journal.owner) will record each host change it makes in \(journal.path) first")
        }
        let dir = lab.directory
        try startLANResolver()
        try startServerAndClient(binary, run: "")
        // The web server the fetches go to, on the internet host.
        let web = try lab.start(
            "http", in: internet,
            ["python3", "-u", "-m", "http.server", "80", "--bind", "::", "--directory", "\(dir)/www"])
        _ = try lab.waitForLog(web, containing: "Serving HTTP", seconds: 10, what: "the internet host's web server")
        say(
            "  the internet host serves http://198.18.0.2/ and http://[\(Self.internet6)]/ (python3 -m http.server, pid \(web.pid))"
        )
    }

    /// Starts the server (with `--egress s1`) and the client (`--gateway`) and waits for the tunnel; `run`
    /// tells the logs of a second run apart.
    func startServerAndClient(_ binary: String, run: String) throws(DemoStop) {
        let dir = lab.directory
        let server = try lab.start(
            "server" + run, in: self.server,
            [
                binary, "server", "--key", "\(dir)/server.key", "--clients", "\(dir)/clients", "--egress", "s1",
                "--dns", Self.tunnelResolver, "--dns-search", "tunvpn.test",
            ])
        serverProcess = server
        let listening = try lab.waitForLog(server, containing: "server listening", seconds: 10, what: "the server")
        say("  server (pid \(server.pid)): \(logMessage(listening))")
        if run.isEmpty { try startTunnelResolver() }
        let client = try lab.start(
            "client" + run, in: self.client,
            [
                binary, "client", "--key", "\(dir)/client.key", "--peer-key", "\(dir)/server.pub",
                "--endpoint", "172.31.2.2:\(Self.port)", "--gateway",
            ])
        clientProcess = client
        let up = try lab.waitForLog(client, containing: "tunnel up", seconds: 10, what: "the client")
        passed("the handshake completed; the client (pid \(client.pid)) says \(logMessage(up))")
        let method = try lab.waitForLog(client, containing: "DNS: ", seconds: 5, what: "the client's DNS")
        say("  the client says \(logMessage(method))")
        let dns = try lab.waitForLog(client, containing: "method, resolvers ", seconds: 5, what: "the client's DNS")
        say("  and then \(logMessage(dns))")
    }

    /// Gives the client (and the LAN host) its own resolv.conf pointing at the LAN resolver, before
    /// anything runs there (DemoLab.installResolvConf refuses to go on if the namespace would see the host's
    /// file), and starts the LAN resolver: dnsmasq on the LAN host, which would answer internet.tunvpn.test
    /// with a wrong address (192.0.2.80, RFC 5737), so a leaked lookup would show.
    func startLANResolver() throws(DemoStop) {
        let text = "# \(client)'s own resolv.conf, written by tunvpn demo: the LAN's resolver\nnameserver \(Self.lanResolver)\n"
        clientResolvConf = try lab.installResolvConf(client, text)
        try lab.installResolvConf(lan, "nameserver \(Self.lanResolver)\n")
        resolvConfCopy = "\(lab.directory)/client-resolv.conf.before"
        do {
            try KeyFiles.write(
                String(decoding: resolvConfBytes(clientResolvConf), as: UTF8.self), to: resolvConfCopy, mode: 0o644,
                overwrite: false)
        } catch {
            throw .failed("copying \(clientResolvConf): \(error)")
        }
        say("  \(clientResolvConf): the client's own resolv.conf (`ip netns exec` mounts it over /etc/resolv.conf; the host's is never touched):")
        for line in lab.readFile(clientResolvConf).split(separator: "\n") { say("    " + line) }
        lanQueryLog = "\(lab.directory)/dnsmasq-lan.queries"
        try startResolver(
            "dnsmasq-lan", in: lan, address: Self.lanResolver, queryLog: lanQueryLog,
            records: [("lan.tunvpn.test", [Self.lanResolver]), ("internet.tunvpn.test", ["192.0.2.80"])])
        say("  $ getent hosts lan.tunvpn.test     (in the client, before the tunnel)")
        let out = try lab.run(in: client, ["getent", "hosts", "lan.tunvpn.test"])
        let answer = out.stdout.split(separator: "\n").first.map(String.init) ?? ""
        if out.succeeded { say("    " + answer.trimmingTrailingSpaces) }
        lanQueriesBefore = queries(lanQueryLog, from: "192.168.77.1").count
        try check(
            out.succeeded && answer.hasPrefix(Self.lanResolver) && lanQueriesBefore > 0,
            "the LAN resolver (dnsmasq at \(Self.lanResolver)) answers the client and logs its queries (\(lanQueriesBefore) so far)",
            else: "the client's lookup through the LAN resolver failed: \(lastLine(out))")
    }

    /// Starts the tunnel resolver: dnsmasq in the server's namespace on its tunnel address, knowing the
    /// internet host by name.
    func startTunnelResolver() throws(DemoStop) {
        tunnelQueryLog = "\(lab.directory)/dnsmasq-tunnel.queries"
        try startResolver(
            "dnsmasq-tunnel", in: server, address: Self.tunnelResolver, queryLog: tunnelQueryLog,
            records: [("internet.tunvpn.test", ["198.18.0.2", Self.internet6])])
        say("  the server's resolver: dnsmasq on its tunnel address \(Self.tunnelResolver), knowing internet.tunvpn.test")
    }

    /// Starts dnsmasq (DnsmasqPlan: no upstream, no /etc/hosts, in the foreground, stopped by its pid with
    /// the other processes) and waits until it logs that it started.
    func startResolver(
        _ label: String, in ns: String, address: String, queryLog: String, records: [(name: String, addresses: [String])]
    ) throws(DemoStop) {
        let argv = DnsmasqPlan.arguments(
            address: address, records: records, queryLog: queryLog, pidFile: "\(lab.directory)/\(label).pid")
        let process = try lab.start(label, in: ns, argv)
        let deadline = SpawnedProcess.monotonicNanoseconds() + 5_000_000_000
        while !lab.readFile(queryLog).contains("started, version") {
            guard process.isRunning, SpawnedProcess.monotonicNanoseconds() < deadline else {
                throw .failed(
                    "dnsmasq did not start in \(ns): \(lab.lastLines(of: process.logPath, count: 1).first ?? "no output")")
            }
            try DemoSignals.pause(nanoseconds: 20_000_000)
        }
    }

    /// The names dnsmasq logged queries for from `from` (`query[A] NAME from ADDR`).
    func queries(_ log: String, from: String) -> [String] {
        lab.readFile(log).split(separator: "\n").compactMap { line in
            guard let q = line.firstRange(of: "query[") else { return nil }
            let words = line[q.lowerBound...].split(separator: " ")
            guard words.count >= 4, words[2] == "from", words[3] == from else { return nil }
            return String(words[1])
        }
    }

    func resolvConfBytes(_ path: String) -> [UInt8] {
        (try? KeyFiles.readSmallFile(path, what: "resolv.conf", limit: 1 << 20).text) ?? []
    }

    // MARK: 4. Routes

    func showRoutes() throws(DemoStop) {
        step("4. The client's routes: all IPv4 and IPv6 goes to tun0, except the tunnel's own UDP to the server")
        say("  $ ip -n \(client) route")
        let out = try lab.run(["ip", "-n", client, "route"])
        let lines = out.stdout.split(separator: "\n").map { String($0).trimmingTrailingSpaces }
        for line in lines { say("    " + line) }
        let has = { (prefix: String) in lines.contains { $0.hasPrefix(prefix) } }
        try check(
            has("0.0.0.0/1 dev tun0") && has("128.0.0.0/1 dev tun0"),
            "0.0.0.0/1 and 128.0.0.0/1 via tun0 override the default route, which stays as it was",
            else: "the client has no 0.0.0.0/1 and 128.0.0.0/1 routes via tun0")
        try check(
            has("172.31.2.2 via 172.31.1.1 dev c0"),
            "172.31.2.2 (the server) is still reached via the router, so tunnel frames never loop into tun0",
            else: "the client has no host route to the server 172.31.2.2 via 172.31.1.1")
        say("  $ ip -n \(client) -6 route")
        let out6 = try lab.run(["ip", "-n", client, "-6", "route"])
        let lines6 = out6.stdout.split(separator: "\n").map { String($0).trimmingTrailingSpaces }
        for line in lines6 { say("    " + line) }
        try check(
            lines6.contains { $0.hasPrefix("::/1 dev tun0") } && lines6.contains { $0.hasPrefix("8000::/1 dev tun0") },
            "::/1 and 8000::/1 via tun0 do the same for IPv6: no IPv6 packet takes the LAN's default route",
            else: "the client has no ::/1 and 8000::/1 routes via tun0")
        let address6 = try lab.run(["ip", "-n", client, "-6", "-o", "address", "show", "dev", "tun0", "scope", "global"])
        let tunnel6 = address6.stdout.split(separator: " ").drop { $0 != "inet6" }.dropFirst().first.map(String.init)
        try check(
            tunnel6 != nil, "tun0 has the IPv6 tunnel address \(tunnel6 ?? "") from the server's unique local prefix",
            else: "the client's tun0 has no global IPv6 address")
    }

    // MARK: 5. Ping

    func pingThroughTunnel() throws(DemoStop) {
        step("5. Ping from the client to the internet host, through the tunnel")
        say("  $ ping -c 3 -i 0.2 198.18.0.2     (in the client)")
        let out = try lab.run(in: client, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"])
        for line in out.stdout.split(separator: "\n")
        where line.contains("bytes from") || line.contains("packets transmitted") {
            say("    " + line)
        }
        try check(
            out.succeeded && out.stdout.contains(" 0% packet loss"), "3 of 3 replies came back",
            else: "ping from the client to 198.18.0.2 through the tunnel: \(pingVerdict(out))")
        say("  $ ping -c 3 -i 0.2 \(Self.internet6)     (in the client: IPv6)")
        let out6 = try lab.run(in: client, ["ping", "-c", "3", "-i", "0.2", "-W", "2", Self.internet6])
        for line in out6.stdout.split(separator: "\n")
        where line.contains("bytes from") || line.contains("packets transmitted") {
            say("    " + line)
        }
        try check(
            out6.succeeded && out6.stdout.contains(" 0% packet loss"), "3 of 3 IPv6 replies came back through the tunnel",
            else: "ping from the client to \(Self.internet6) through the tunnel: \(pingVerdict(out6))")
    }

    // MARK: 6. HTTP

    func fetchThroughTunnel() throws(DemoStop) {
        step("6. HTTP from the client, and from the LAN host behind it (gateway mode), to the internet host")
        for (ns, who, host, egress) in [
            (client, "client", "198.18.0.2", "198.18.0.1"), (lan, "lan", "198.18.0.2", "198.18.0.1"),
            (client, "client6", "[\(Self.internet6)]", Self.egress6),
        ] {
            let url = "http://\(host)/?from=\(who)"
            let whoText = who == "lan" ? "LAN host" : who == "client6" ? "client, over IPv6" : "client"
            say("  $ python3 -c 'urllib.request.urlopen(\"\(url)\")'     (in the \(whoText))")
            let code =
                "import sys, urllib.request\nr = urllib.request.urlopen(sys.argv[1], timeout=5)\nprint(r.status, r.read().decode().strip())"
            let out = try lab.run(in: ns, ["python3", "-c", code, url])
            let answer = out.stdout.split(separator: "\n").first.map(String.init) ?? ""
            if out.succeeded { say("    \(answer)") }
            try check(
                out.succeeded && answer.hasPrefix("200 "), "the \(whoText) got the page",
                else: "fetching \(url) from the \(whoText): \(lastLine(out))")
            // The web server listens on ::, one socket for both families: an IPv4 peer is logged in its
            // IPv4-mapped form (RFC 4291 §2.5.5.2).
            let seen =
                lab.readFile("\(lab.directory)/http.log").split(separator: "\n")
                .last { $0.contains("GET /?from=\(who) ") }
                .flatMap { $0.split(separator: " ").first }
                .map { $0.hasPrefix("::ffff:") && $0.contains(".") ? String($0.dropFirst(7)) : String($0) }
                ?? "(no request logged)"
            try check(
                seen == egress,
                "the internet host saw the request come from \(seen), the server's own address (MASQUERADE)",
                else: "the internet host saw the \(who) request come from \(seen), not from the server's \(egress)")
        }
    }

    // MARK: 7. DNS

    func resolveThroughTunnel() throws(DemoStop) {
        step("7. DNS: the server pushes its resolver; the client's lookups go through the tunnel and nowhere else")
        say("  $ cat /etc/resolv.conf     (in the client, while the tunnel is up)")
        let conf = try lab.run(in: client, ["cat", "/etc/resolv.conf"])
        for line in conf.stdout.split(separator: "\n") { say("    " + line) }
        try check(
            conf.stdout.contains("nameserver \(Self.tunnelResolver)\n") && !conf.stdout.contains(Self.lanResolver)
                && conf.stdout.contains("search tunvpn.test"),
            "the client's resolv.conf names only the pushed resolver \(Self.tunnelResolver) and search domain",
            else: "the client's resolv.conf is not the pushed one: \(conf.stdout.split(separator: "\n").joined(separator: "; "))")
        say("  $ getent hosts internet.tunvpn.test     (in the client)")
        let lookup = try lab.run(in: client, ["getent", "hosts", "internet.tunvpn.test"])
        let answer = lookup.stdout.split(separator: "\n").first.map { String($0).trimmingTrailingSpaces } ?? ""
        if lookup.succeeded { say("    " + answer) }
        try check(
            lookup.succeeded && (answer.hasPrefix("198.18.0.2 ") || answer.hasPrefix(Self.internet6 + " ")),
            "internet.tunvpn.test resolves to the internet host, answered by the server's resolver",
            else: "getent hosts internet.tunvpn.test in the client: \(answer.isEmpty ? lastLine(lookup) : answer)")
        let url = "http://internet.tunvpn.test/?from=name"
        say("  $ python3 -c 'urllib.request.urlopen(\"\(url)\")'     (in the client)")
        let code =
            "import sys, urllib.request\nr = urllib.request.urlopen(sys.argv[1], timeout=5)\nprint(r.status, r.read().decode().strip())"
        let fetch = try lab.run(in: client, ["python3", "-c", code, url])
        let page = fetch.stdout.split(separator: "\n").first.map(String.init) ?? ""
        if fetch.succeeded { say("    \(page)") }
        try check(
            fetch.succeeded && page.hasPrefix("200 "), "the client fetched the page by name through the tunnel",
            else: "fetching \(url) from the client: \(lastLine(fetch))")
        let asked = lab.readFile(tunnelQueryLog).split(separator: "\n").filter { $0.contains("internet.tunvpn.test from") }
        for line in asked.prefix(2) { say("    tunnel resolver log: " + String(line[(line.firstRange(of: "query[")?.lowerBound ?? line.startIndex)...])) }
        try check(
            !asked.isEmpty, "the server's resolver logged \(asked.count) quer\(asked.count == 1 ? "y" : "ies") for internet.tunvpn.test",
            else: "the server's resolver logged no query for internet.tunvpn.test")

        // A query sent straight to the LAN resolver, past resolv.conf: the leak block rejects it.
        let direct = """
            import socket, sys
            name = b"".join(bytes([len(l)]) + l.encode() for l in sys.argv[2].split("."))
            q = bytes.fromhex("747601000001000000000000") + name + b"\\x00\\x00\\x01\\x00\\x01"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            try:
                s.connect((sys.argv[1], 53)); s.send(q); s.recv(512); print("answered")
            except OSError as e:
                print("no answer:", e)
            """
        say("  $ python3: a DNS query for lan.tunvpn.test straight to \(Self.lanResolver):53     (in the client)")
        let leak = try lab.run(in: client, ["python3", "-c", direct, Self.lanResolver, "lan.tunvpn.test"])
        let result = leak.stdout.split(separator: "\n").first.map(String.init) ?? lastLine(leak)
        say("    " + result)
        try check(
            result.hasPrefix("no answer"), "the leak block refuses DNS to the LAN resolver while the tunnel is up",
            else: "the client's direct query to the LAN resolver: \(result)")
        let lanQueries = queries(lanQueryLog, from: "192.168.77.1").count
        try check(
            lanQueries == lanQueriesBefore,
            "the LAN resolver logged no query from the client while the tunnel was up (\(lanQueriesBefore), all from before it)",
            else: "the LAN resolver logged \(lanQueries - lanQueriesBefore) query(ies) from the client while the tunnel was up")
    }

    // MARK: 8. Capture

    func captureUnderlay() throws(DemoStop) {
        step("8. What the underlay carries: capture on the client's c0 (and, for contrast, inside tun0)")
        say(
            "  $ tcpdump -c 10 -nn -i c0 -X     while   ping -c 5 -p \(Self.pattern) 198.18.0.2     (payload \"tunvpn\" over and over)"
        )
        let wire = try lab.start("capture-c0", in: client, ["tcpdump", "-l", "-c", "10", "-nn", "-i", "c0", "-X"])
        let inside = try lab.start(
            "capture-tun0", in: client, ["tcpdump", "-l", "-c", "4", "-nn", "-i", "tun0", "-X", "icmp"])
        for p in [wire, inside] { _ = try lab.waitForLog(p, containing: "listening on", seconds: 5, what: "tcpdump") }
        let ping = try lab.run(
            in: client, ["ping", "-c", "5", "-i", "0.2", "-W", "2", "-p", Self.pattern, "198.18.0.2"])
        guard ping.succeeded else {
            throw .failed("ping with a payload pattern through the tunnel: \(pingVerdict(ping))")
        }
        for p in [wire, inside] {
            if !p.waitForExit(until: SpawnedProcess.monotonicNanoseconds() + 3_000_000_000) { p.terminate() }
        }
        let onWire = Capture(lab.readFile(wire.logPath))
        let inTunnel = Capture(lab.readFile(inside.logPath))
        for packet in onWire.packets { say("    " + packet.header) }
        if let first = onWire.packets.first {
            say("  the first datagram's bytes (IP and UDP headers, then the frame):")
            for line in first.dump.prefix(4) { say("    " + line) }
        }
        // ARP is the link asking for the router's MAC address again (it carries no data), so it may appear;
        // so may its IPv6 counterpart, neighbour discovery (and multicast listener reports).
        let arp = onWire.packets.filter { $0.isARP || $0.isNeighborDiscovery }
        let datagrams = onWire.packets.filter { !$0.isARP && !$0.isNeighborDiscovery }
        let foreign = datagrams.filter { !$0.isTunnelDatagram(port: Self.port) }
        let arpNote =
            arp.isEmpty ? "" : " (besides \(arp.count) ARP or neighbour discovery packet(s) asking for the router's MAC address)"
        try check(
            !datagrams.isEmpty && foreign.isEmpty,
            "all \(datagrams.count) IP packets on c0 are UDP between 172.31.1.2 and 172.31.2.2:\(Self.port)\(arpNote)",
            else: foreign.first.map { "the underlay carried something other than the tunnel's UDP: \($0.header)" }
                ?? "tcpdump captured no IP packet on c0")
        let needle = Array("tunvpn".utf8)
        let leaked = onWire.packets.filter { $0.bytes.contains(needle) }.count
        let visible = inTunnel.packets.filter { $0.bytes.contains(needle) }.count
        try check(
            visible > 0,
            "inside tun0 the ping payload is in clear text (\"tunvpn\" in \(visible) of \(inTunnel.packets.count) packets)",
            else: "the payload pattern was not seen even inside tun0, so the capture proves nothing")
        try check(
            leaked == 0,
            "on c0 the pattern appears in none of the \(onWire.packets.count) packets: the payload is encrypted",
            else: "the ping payload \"tunvpn\" appears in clear text in \(leaked) packet(s) on the underlay")
    }

    // MARK: 9. Counters

    func showCounters() throws(DemoStop) {
        step("9. Counters: SIGUSR1 makes each tunvpn print a stats: line")
        for (label, process) in [("client", clientProcess), ("server", serverProcess)] {
            guard let process else { continue }
            let before = statsLines(process).count
            process.send(SIGUSR1)
            let deadline = SpawnedProcess.monotonicNanoseconds() + 3_000_000_000
            while statsLines(process).count <= before && SpawnedProcess.monotonicNanoseconds() < deadline {
                try DemoSignals.pause(nanoseconds: 20_000_000)
            }
            guard let line = statsLines(process).last, statsLines(process).count > before else {
                throw .failed("the \(label) wrote no stats: line after SIGUSR1")
            }
            say("  \(label): \(Stats(line).summary)")
        }
        say("  (tx/rx bytes count the IP packets carried inside the tunnel, before encryption and after decryption)")
    }

    func statsLines(_ process: SpawnedProcess) -> [Substring] {
        lab.readFile(process.logPath).split(separator: "\n").filter { $0.hasPrefix("stats: ") }
    }

    // MARK: 10. A server without an IPv6 way out

    /// Runs the client again against the server restarted without its IPv6 default route: the server says
    /// in the handshake that it has no IPv6 egress, so the client answers each IPv6 packet for the outside
    /// world itself, with an ICMPv6 destination unreachable (administratively prohibited, RFC 4443 §3.1),
    /// at once; IPv4 still crosses the tunnel, and nothing leaves the client outside it.
    func runWithoutIPv6Egress(_ binary: String) throws(DemoStop) {
        step("10. Again, with a server that has no IPv6 way out: IPv6 is refused at once, and nothing leaks")
        for (label, process) in [("client", clientProcess), ("server", serverProcess)] {
            guard let process else { continue }
            let status = process.terminate()
            try check(
                status == 0, "stopped the \(label) (SIGTERM, exit status 0)",
                else: "the \(label) exited with status \(status) on SIGTERM")
        }
        say("  $ ip -n \(server) -6 route del default     (the server's only IPv6 way out)")
        try lab.mustRun(["ip", "-n", server, "-6", "route", "del", "default"])
        try startServerAndClient(binary, run: "-2")

        say("  capturing on the client's c0 and on the internet host's i0 meanwhile")
        // --immediate-mode: each packet is printed as it arrives, not when a buffer block fills or times out,
        // so none is still waiting in the kernel when tcpdump is stopped (pcap(3PCAP)).
        let wire = try lab.start("capture-c0-2", in: client, ["tcpdump", "-l", "--immediate-mode", "-nn", "-i", "c0"])
        let far = try lab.start(
            "capture-i0", in: internet, ["tcpdump", "-l", "--immediate-mode", "-nn", "-i", "i0", "ip6"])
        for p in [wire, far] { _ = try lab.waitForLog(p, containing: "listening on", seconds: 5, what: "tcpdump") }

        say("  $ ping -c 1 \(Self.internet6)     (in the client)")
        let pingStart = SpawnedProcess.monotonicNanoseconds()
        let ping = try lab.run(in: client, ["ping", "-c", "1", "-W", "3", Self.internet6])
        let pingSeconds = Double(SpawnedProcess.monotonicNanoseconds() - pingStart) / 1e9
        let answer = (ping.stdout + "\n" + ping.stderr).split(separator: "\n")
            .first { $0.contains("Destination unreachable") }.map(String.init)
        if let answer { say("    " + answer) }
        try check(
            !ping.succeeded && answer != nil && pingSeconds < 1,
            "answered at once (\(String(format: "%.3f", pingSeconds)) s, ping included) by the client itself, from inside tun0",
            else: "ping -6 from the client was not refused at once: \(pingVerdict(ping)) after \(pingSeconds) s")

        let connect = """
            import socket, sys, time
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.settimeout(5)
            t = time.monotonic()
            try:
                s.connect((sys.argv[1], 80))
                print("connected")
            except OSError as e:
                print("%.3f %s" % (time.monotonic() - t, e))
            """
        say("  $ python3: connect to [\(Self.internet6)]:80 over TCP     (in the client)")
        let tcp = try lab.run(in: client, ["python3", "-c", connect, Self.internet6])
        let result = tcp.stdout.split(separator: "\n").first.map(String.init) ?? lastLine(tcp)
        say("    " + result)
        let tcpSeconds = result.split(separator: " ").first.flatMap { Double($0) } ?? 99
        try check(
            tcpSeconds < 1 && !result.contains("timed out"),
            "the TCP connection failed after \(String(format: "%.3f", tcpSeconds)) s instead of timing out (Linux reports administratively prohibited as EACCES): applications fall back to IPv4 at once",
            else: "the IPv6 TCP connection did not fail at once: \(result)")
        let v4 = try lab.run(in: client, ["ping", "-c", "1", "-W", "2", "198.18.0.2"])
        try check(
            v4.succeeded, "IPv4 to 198.18.0.2 still crosses the tunnel",
            else: "ping 198.18.0.2 through the tunnel failed: \(pingVerdict(v4))")

        for p in [wire, far] { p.terminate(graceSeconds: 2) }
        let onWire = Capture(lab.readFile(wire.logPath))
        let foreign = onWire.packets.filter {
            !$0.isARP && !$0.isNeighborDiscovery && !$0.isTunnelDatagram(port: Self.port)
        }
        let datagrams = onWire.packets.count { $0.isTunnelDatagram(port: Self.port) }
        try check(
            foreign.isEmpty && datagrams > 0,
            "c0 carried \(datagrams) tunnel datagram(s) and nothing else (ARP and neighbour discovery aside): nothing left outside the tunnel",
            else: foreign.first.map { "the client sent something outside the tunnel: \($0.header)" }
                ?? "tcpdump saw no tunnel datagram on c0")
        let reached = Capture(lab.readFile(far.logPath)).packets.filter { !$0.isNeighborDiscovery }
        try check(
            reached.isEmpty, "the internet host saw no IPv6 packet from the client's side",
            else: "the internet host saw IPv6: \(reached.first?.header ?? "")")
    }

    // MARK: 11. After the processes stopped

    /// Runs once `DemoLab.stopProcesses()` has sent SIGTERM and reaped everything: both tunvpn processes
    /// exited with status 0, said they removed their host changes, left nothing to undo, and `tunvpn down`
    /// removes the files they could not delete under /run/tunvpn once they ran as an unprivileged user.
    func checkCleanExit() throws(DemoStop) {
        for (label, process) in [("client", clientProcess), ("server", serverProcess)] {
            guard let process else { continue }
            let removed = lab.readFile(process.logPath).split(separator: "\n").last {
                $0.contains("removed") && $0.contains("host change")
            }
            try check(
                process.exitStatus == 0,
                "the \(label) exited with status 0 on SIGTERM\(removed.map { " and \(logMessage(String($0)))" } ?? "")",
                else:
                    "the \(label) exited with status \(process.exitStatus ?? -1) on SIGTERM; its log ends with: \(lab.lastLines(of: process.logPath, count: 1).first ?? "")"
            )
        }
        if !clientResolvConf.isEmpty {
            // The client restored the resolv.conf it found, byte for byte (its journal held the original).
            let before = resolvConfBytes(resolvConfCopy)
            let after = resolvConfBytes(clientResolvConf)
            say("  $ sha256sum \(resolvConfCopy) \(clientResolvConf)")
            let sums = try lab.run(["sha256sum", resolvConfCopy, clientResolvConf])
            for line in sums.stdout.split(separator: "\n") { say("    " + line) }
            try check(
                !before.isEmpty && before == after,
                "the client's resolv.conf is byte for byte what it was before the tunnel (\(after.count) bytes)",
                else: "the client's resolv.conf differs from what it was before the tunnel (\(before.count) bytes before, \(after.count) after)")
        }
        for journal in lab.journals {
            var st = stat()
            let empty = lstat(journal.path, &st) != 0 || st.st_size == 0
            try check(
                empty, "nothing left to undo by the \(journal.owner): its journal \(journal.path) is empty",
                else: "the \(journal.owner) left host changes in its journal \(journal.path)")
            // Having given up root, the process could empty its journal but not delete it (or its lock and
            // socket files) from the root-owned state directory; `tunvpn down`, run as root, sweeps them.
            guard let binary = lab.binary else { continue }
            let out = CommandRunner.run(["ip", "netns", "exec", journal.namespace, binary, "down", "--dev", "tun0"])
            try check(
                out.succeeded && !KeyFiles.exists(journal.path),
                "`tunvpn down` in \(journal.namespace) removed the \(journal.owner)'s emptied files",
                else: "`tunvpn down` in \(journal.namespace) left \(journal.path): \(out.stdout)\(out.stderr)")
        }
    }

    /// Prints the end of each tunvpn log (a failure's best explanation) before the teardown removes them.
    static func showLogs(_ lab: DemoLab) {
        for (label, process) in lab.processes where label.hasPrefix("server") || label.hasPrefix("client") {
            say("  the \(label)'s log ends with:")
            for line in lab.lastLines(of: process.logPath, count: 5) { say("    " + line) }
        }
    }

    // MARK: Text helpers

    func firstLine(_ out: CommandOutput) -> String {
        let text = out.stderr.isEmpty ? out.stdout : out.stderr
        return text.split(separator: "\n").first.map(String.init) ?? "exit status \(out.status)"
    }

    func lastLine(_ out: CommandOutput) -> String {
        let text = out.stderr.isEmpty ? out.stdout : out.stderr
        return text.split(separator: "\n").last.map(String.init) ?? "exit status \(out.status)"
    }

    /// ping's own words for what happened ("From 172.31.1.1 icmp_seq=1 Destination Net Unreachable", or
    /// for IPv6 "… Destination unreachable: No route").
    func pingVerdict(_ out: CommandOutput) -> String {
        let lines = (out.stdout + "\n" + out.stderr).split(separator: "\n")
        let line =
            lines.first { $0.lowercased().contains("unreachable") || $0.hasPrefix("ping:") }
            ?? lines.first { $0.contains("packet loss") }
        return line.map(String.init) ?? "exit status \(out.status)"
    }

    /// The message part of a swift-log line ("… info tunvpn: [Engine] tunnel up: …" → "tunnel up: …").
    func logMessage(_ line: String) -> String {
        guard let bracket = line.firstRange(of: "] ") else { return line }
        return String(line[bracket.upperBound...])
    }
}

extension String {
    var trimmingTrailingSpaces: String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}

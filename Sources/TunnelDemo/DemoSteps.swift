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
// Each namespace is named tvdemo-<pid>-<role>. The demo generates keys with the binary's own code,
// starts this very binary (/proc/self/exe) as server and client, and checks what the issue asks the
// tunnel to do: full-tunnel routes, a ping and an HTTP fetch to the internet host, MASQUERADE (the
// internet host sees 198.18.0.1), gateway mode for the LAN host, an underlay that carries only
// ciphertext, and counters. `DemoLab` removes it all again on every way out. Nothing in the root
// namespace changes.

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
    ]
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
        try captureUnderlay()
        try showCounters()
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
                VethLink(.init("lan", "l0", "192.168.77.2/24"), .init("client", "lan0", "192.168.77.1/24")),
                VethLink(.init("client", "c0", "172.31.1.2/24"), .init("router", "r0", "172.31.1.1/24")),
                VethLink(.init("router", "r1", "172.31.2.1/24"), .init("server", "s0", "172.31.2.2/24")),
                VethLink(.init("server", "s1", "198.18.0.1/24"), .init("internet", "i0", "198.18.0.2/24")),
            ])
        try lab.build(plan)
        (lan, client, router, server, internet) = (
            plan.namespace("lan"), plan.namespace("client"), plan.namespace("router"), plan.namespace("server"),
            plan.namespace("internet")
        )
        try lab.mustRun(["ip", "-n", lan, "route", "add", "default", "via", "192.168.77.1"])
        try lab.mustRun(["ip", "-n", client, "route", "add", "default", "via", "172.31.1.1"])
        try lab.mustRun(["ip", "-n", server, "route", "add", "default", "via", "172.31.2.1"])
        try lab.mustRun(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        say("  made \(lab.prefix){lan,client,router,server,internet}; the router forwards, the others do not (yet)")
        let underlay = try lab.run(in: client, ["ping", "-c", "1", "-W", "2", "172.31.2.2"])
        try check(
            underlay.succeeded, "the client reaches the server's underlay address 172.31.2.2 through the router",
            else: "the client cannot ping the server at 172.31.2.2 over the underlay: \(firstLine(underlay))")
        let before = try lab.run(in: client, ["ping", "-c", "1", "-W", "1", "198.18.0.2"])
        try check(
            !before.succeeded,
            "without the tunnel the client cannot reach the internet host 198.18.0.2 (\(pingVerdict(before)))",
            else: "the client reaches 198.18.0.2 without the tunnel, so the demo would prove nothing")
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
        let server = try lab.start(
            "server", in: self.server,
            [binary, "server", "--key", "\(dir)/server.key", "--clients", "\(dir)/clients", "--egress", "s1"])
        serverProcess = server
        let listening = try lab.waitForLog(server, containing: "server listening", seconds: 10, what: "the server")
        say("  server (pid \(server.pid)): \(logMessage(listening))")
        let client = try lab.start(
            "client", in: self.client,
            [
                binary, "client", "--key", "\(dir)/client.key", "--peer-key", "\(dir)/server.pub",
                "--endpoint", "172.31.2.2:\(Self.port)", "--gateway",
            ])
        clientProcess = client
        let up = try lab.waitForLog(client, containing: "tunnel up", seconds: 10, what: "the client")
        passed("the handshake completed; the client (pid \(client.pid)) says \(logMessage(up))")
        // The web server the fetches go to, on the internet host.
        let web = try lab.start(
            "http", in: internet,
            ["python3", "-u", "-m", "http.server", "80", "--bind", "198.18.0.2", "--directory", "\(dir)/www"])
        _ = try lab.waitForLog(web, containing: "Serving HTTP", seconds: 10, what: "the internet host's web server")
        say("  the internet host serves http://198.18.0.2/ (python3 -m http.server, pid \(web.pid))")
    }

    // MARK: 4. Routes

    func showRoutes() throws(DemoStop) {
        step("4. The client's routes: all IPv4 goes to tun0, except the tunnel's own UDP to the server")
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
    }

    // MARK: 6. HTTP

    func fetchThroughTunnel() throws(DemoStop) {
        step("6. HTTP from the client, and from the LAN host behind it (gateway mode), to the internet host")
        for (ns, who) in [(client, "client"), (lan, "lan")] {
            let url = "http://198.18.0.2/?from=\(who)"
            say(
                "  $ python3 -c 'urllib.request.urlopen(\"\(url)\")'     (in the \(who == "lan" ? "LAN host" : "client"))"
            )
            let code =
                "import sys, urllib.request\nr = urllib.request.urlopen(sys.argv[1], timeout=5)\nprint(r.status, r.read().decode().strip())"
            let out = try lab.run(in: ns, ["python3", "-c", code, url])
            let answer = out.stdout.split(separator: "\n").first.map(String.init) ?? ""
            if out.succeeded { say("    \(answer)") }
            try check(
                out.succeeded && answer.hasPrefix("200 "), "the \(who == "lan" ? "LAN host" : "client") got the page",
                else: "fetching \(url) from the \(who == "lan" ? "LAN host" : "client"): \(lastLine(out))")
            let seen =
                lab.readFile("\(lab.directory)/http.log").split(separator: "\n")
                .last { $0.contains("GET /?from=\(who) ") }
                .flatMap { $0.split(separator: " ").first }.map(String.init) ?? "(no request logged)"
            try check(
                seen == "198.18.0.1",
                "the internet host saw the request come from \(seen), the server's own address (MASQUERADE)",
                else: "the internet host saw the \(who) request come from \(seen), not from the server's 198.18.0.1")
        }
    }

    // MARK: 7. Capture

    func captureUnderlay() throws(DemoStop) {
        step("7. What the underlay carries: capture on the client's c0 (and, for contrast, inside tun0)")
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
        // ARP is the link asking for the router's MAC address again (it carries no data), so it may appear.
        let arp = onWire.packets.filter { $0.isARP }
        let datagrams = onWire.packets.filter { !$0.isARP }
        let foreign = datagrams.filter { !$0.isTunnelDatagram(port: Self.port) }
        let arpNote = arp.isEmpty ? "" : " (besides \(arp.count) ARP packet(s) asking for the router's MAC address)"
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

    // MARK: 8. Counters

    func showCounters() throws(DemoStop) {
        step("8. Counters: SIGUSR1 makes each tunvpn print a stats: line")
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

    // MARK: 9. After the processes stopped

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
        for (label, process) in lab.processes where label == "server" || label == "client" {
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

    /// ping's own words for what happened ("From 172.31.1.1 icmp_seq=1 Destination Net Unreachable").
    func pingVerdict(_ out: CommandOutput) -> String {
        let lines = (out.stdout + "\n" + out.stderr).split(separator: "\n")
        let line =
            lines.first { $0.contains("Unreachable") || $0.hasPrefix("ping:") }
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

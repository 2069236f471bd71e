// End-to-end tests of DNS (docs/ROUTING.md, "DNS"; docs/PROTOCOL.md, "The DNS block"): the server pushes
// its resolver, the client applies it by the resolv.conf method and restores the file byte for byte in
// every teardown path, and in full-tunnel mode no query leaves outside the tunnel.
//
// Topology: the routed lab (TunnelLab.routed(): L ── C ── R ── S ── H, see RoutingEndToEndTests.swift).
// The tunnel resolver is dnsmasq in S on the server's tunnel address 10.8.0.1, knowing
// internet.tunvpn.test (H's address); the LAN resolver is dnsmasq in L on l0, knowing printer.lan. The
// client's namespace C gets its own /etc/netns/C/resolv.conf (naming the LAN resolver) before anything
// starts there, and `NamespaceResolvConf.requireIsolated` refuses to go on unless C sees that file, so
// the host's /etc/resolv.conf is never read or written; /etc/netns/C goes when the test ends.

import Foundation
import TestSupport
import Testing

@Suite(
    .serialized,
    .needsRoot("needs root: it creates network namespaces, TUN devices, nftables tables and /etc/netns/NAME"))
struct DNSEndToEndTests {
    /// The client's resolv.conf before the tunnel: the LAN's resolver, a search domain, an options line,
    /// and no final newline (so a text round trip that adds one would show).
    func original(_ lab: TunnelLab) -> String {
        "# the LAN's resolver\nnameserver \(lab.topology.address("L", "l0"))\nsearch home.lan\noptions timeout:1 attempts:1"
    }

    /// Runs `body` in a routed lab whose client namespace has its own resolv.conf (`text`), removed at the end.
    /// The two resolvers of the leak tests: the tunnel's (dnsmasq on the server's tunnel address, knowing the
    /// internet host) and the LAN's (on L, knowing a printer). The caller stops both.
    func startResolvers(_ lab: TunnelLab) throws -> (tunnel: Dnsmasq, lan: Dnsmasq) {
        let tunnel = try Dnsmasq(
            in: lab["S"], address: TunnelLab.serverTunnelAddress, records: [("internet.tunvpn.test", lab.internetHost)],
            directory: lab.directory.path, name: "dnsmasq-tunnel")
        do {
            let lan = try Dnsmasq(
                in: lab["L"], address: lab.topology.address("L", "l0"), records: [("printer.lan", "10.110.\(lab.k).9")],
                directory: lab.directory.path, name: "dnsmasq-lan")
            return (tunnel, lan)
        } catch {
            tunnel.stop()
            throw error
        }
    }

    func withLab(_ text: ((TunnelLab) -> String)? = nil, _ body: (TunnelLab) throws -> Void) throws {
        try TunnelLab.routed().use { lab in
            let c = lab["C"]
            try NamespaceResolvConf.install(c, text?(lab) ?? original(lab))
            defer { NamespaceResolvConf.remove(c) }
            try NamespaceResolvConf.requireIsolated(c)
            try lab.makeKeys()
            try body(lab)
        }
    }

    var serverDNS: [String] { ["--dns", TunnelLab.serverTunnelAddress, "--dns-search", "tunvpn.test"] }

    func resolvConf(_ lab: TunnelLab) -> String {
        String(decoding: NamespaceResolvConf.bytes(lab["C"]) ?? [], as: UTF8.self)
    }

    /// The client's resolv.conf while the tunnel is up: tunvpn's comment, the pushed resolver and search
    /// domain, and the original's options line.
    func expectTunnelResolvConf(_ lab: TunnelLab, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(
            resolvConf(lab) == """
                # written by tunvpn for tun0; the original comes back when tunvpn stops (or at `tunvpn down`)
                nameserver 10.8.0.1
                search tunvpn.test
                options timeout:1 attempts:1

                """, sourceLocation: sourceLocation)
    }

    @Test func theResolvConfIsRestoredByteForByteAfterSIGTERMKill9AndDownAndKill9AndRestart() throws {
        try withLab { lab in
            let before = try #require(NamespaceResolvConf.bytes(lab["C"]))
            try lab.startServer(extra: serverDNS)

            // SIGTERM: the client undoes its journal on the way out.
            var client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            expectTunnelResolvConf(lab)
            #expect(client.log.contains("DNS: resolv.conf method, resolvers 10.8.0.1, search tunvpn.test"))
            #expect(client.terminate() == 0)
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before, "restored after SIGTERM")

            // kill -9 of the client and its DNS agent, then `tunvpn down`: the file stays tunvpn's until down
            // replays the agent's journal.
            client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            try kill9WithAgent(lab, client)
            expectTunnelResolvConf(lab)
            let down = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before, "restored by tunvpn down")

            // kill -9, then a new start: it replays the journal first, and its own stop restores the original
            // (not the file the killed run wrote).
            client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            try kill9WithAgent(lab, client)
            client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            #expect(client.log.contains("restored 1 DNS change(s) left by a previous run"), "the restart restored the killed run's file")
            expectTunnelResolvConf(lab)
            #expect(client.terminate() == 0)
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before, "restored after kill -9 and a restart")
        }
    }

    /// The PID of the client's DNS agent, from the client's log.
    func agentPID(_ client: BackgroundProcess) throws -> pid_t {
        let line = try #require(client.log.split(separator: "\n").first { $0.contains("DNS agent pid ") }, "\(client.log)")
        let word = line.split(separator: "DNS agent pid ").last?.split(separator: " ").first
        return try #require(word.flatMap { pid_t($0) }, "no pid in \(line)")
    }

    /// The `Name:\tvalue` fields of /proc/PID/status, or nil once the process is gone or a zombie.
    func status(_ pid: pid_t) -> [String: String]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields["State"]?.hasPrefix("Z") == true ? nil : fields
    }

    /// kill -9 of the client's whole process group as a shell would do it: the agent (by its PID), then
    /// the client; the agent's journal is left for `down` or the next start.
    func kill9WithAgent(_ lab: TunnelLab, _ client: BackgroundProcess) throws {
        let agent = try agentPID(client)
        #expect(status(agent)?["PPid"] == "\(client.pid)", "pid \(agent) is the client's agent")
        print("+ kill -KILL \(agent)  # the client's DNS agent")
        kill(agent, SIGKILL)
        #expect(waitUntil(timeout: 5) { status(agent) == nil }, "the agent survived SIGKILL")
        lab.kill9(client)
    }

    @Test func theClientRunsUnprivilegedItsAgentWithoutCapabilitiesAndKill9OfTheClientAloneRestoresAtOnce() throws {
        try withLab { lab in
            let before = try #require(NamespaceResolvConf.bytes(lab["C"]))
            try lab.startServer(extra: serverDNS)
            let client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            expectTunnelResolvConf(lab)

            // The client: its default user, not uid 0. The agent: uid 0, no capability at all, no_new_privs.
            let daemon = try #require(status(client.pid))
            let uids = daemon["Uid"]?.split(separator: "\t").map(String.init) ?? []
            #expect(uids.count == 4 && !uids.contains("0"), "client Uid: \(daemon["Uid"] ?? "")")
            #expect(daemon["CapEff"] == "0000000000001000", "the client keeps CAP_NET_ADMIN alone")
            let agent = try agentPID(client)
            let agentStatus = try #require(status(agent))
            #expect(agentStatus["PPid"] == "\(client.pid)")
            #expect(agentStatus["Uid"]?.split(separator: "\t").allSatisfy { $0 == "0" } == true, "agent Uid: \(agentStatus["Uid"] ?? "")")
            for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                #expect(agentStatus[set] == "0000000000000000", "agent \(set): \(agentStatus[set] ?? "")")
            }
            #expect(agentStatus["NoNewPrivs"] == "1")
            let ps = try lab["C"].exec(["ps", "-o", "pid=,user=,comm=", "-p", "\(client.pid),\(agent)"])
            print(ps.stdout)

            // kill -9 of the client alone: the agent sees its end close, restores the file and exits.
            lab.kill9(client)
            let restored = waitUntil(timeout: 3) { NamespaceResolvConf.bytes(lab["C"]) == before && status(agent) == nil }
            #expect(restored, "restored within 3 s of kill -9, agent gone; client log:\n\(client.log)")
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before)
            #expect(status(agent) == nil, "the agent exited")
            #expect(client.log.contains("the client's end closed; restoring DNS"), "\(client.log)")
            // Nothing of DNS is left for `down` (the leak block and device are the client's own journal's).
            let down = try lab.tunvpn(in: "C", ["down", "--dev", "tun0"])
            #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before)
        }
    }

    @Test func aSymlinkedResolvConfStaysTheSameSymlinkWithItsTargetRestored() throws {
        try TunnelLab.routed().use { lab in
            let c = lab["C"]
            // /etc/netns/C/resolv.conf -> upstream.conf beside it; `ip netns exec` mounts the target over
            // /etc/resolv.conf, so the client writes in place (EBUSY) and the link itself stays.
            let dir = NamespaceResolvConf.directory(c)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { NamespaceResolvConf.remove(c) }
            let text = original(lab) + "\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/upstream.conf"))
            try FileManager.default.createSymbolicLink(atPath: NamespaceResolvConf.path(c), withDestinationPath: "upstream.conf")
            try NamespaceResolvConf.requireIsolated(c)
            try lab.makeKeys()
            try lab.startServer(extra: serverDNS)
            let client = try lab.startClient()
            try lab.waitForTunnelUp(client)
            expectTunnelResolvConf(lab)
            #expect(client.terminate() == 0)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: NamespaceResolvConf.path(c)) == "upstream.conf")
            #expect(NamespaceResolvConf.bytes(c) == Array(text.utf8))
        }
    }

    @Test func theDryRunPrintsTheDNSStepsAndChangesNothing() throws {
        try withLab { lab in
            let before = try #require(NamespaceResolvConf.bytes(lab["C"]))
            let stateBefore = try lab["C"].hostState()
            let run = try lab.tunvpn(in: "C", lab.clientArguments() + ["--dry-run", "--dns", "10.8.0.53"])
            #expect(run.status == 0 && run.stderr == "", "\(run.stderr)")
            #expect(run.stdout.contains("""
                # DNS (resolv.conf method), applied at each handshake: the resolvers of --dns (below) and the server's search domains
                # /etc/resolv.conf: the original is saved in the journal and restored at exit; its options lines are kept
                tunvpn-resolv-conf write /etc/resolv.conf <<'EOF'
                # written by tunvpn for tun0; the original comes back when tunvpn stops (or at `tunvpn down`)
                nameserver 10.8.0.53
                EOF
                nft -f - <<'EOF'
                table inet tunvpn_dns_tun0 {}
                """), "\(run.stdout)")
            let split = try lab.tunvpn(in: "C", lab.clientArguments() + ["--dry-run", "--route", "10.200.\(lab.k).0/24"])
            #expect(split.stdout.hasSuffix(
                "# DNS (resolv.conf method), applied at each handshake: the server's resolvers and search domains\n"), "\(split.stdout)")
            #expect(NamespaceResolvConf.bytes(lab["C"]) == before)
            #expect(try lab["C"].hostState() == stateBefore)
        }
    }

    /// 50 lookups of names in the pushed domain, and the address of internet.tunvpn.test, from C.
    func lookUp(_ lab: TunnelLab, count: Int) throws -> String {
        let script = "for i in $(seq \(count)); do getent hosts name$i.tunvpn.test; done; getent hosts internet.tunvpn.test"
        return try lab["C"].exec(["sh", "-c", script], timeout: 60).stdout
    }

    @Test(arguments: ["nftables", "iptables"])
    func inFullTunnelModeEveryLookupReachesTheTunnelResolverAndNoneTheLANs(firewall: String) throws {
        try withLab { lab in
            try lab.startServer(extra: serverDNS)
            let (tunnelResolver, lanResolver) = try startResolvers(lab)
            defer {
                tunnelResolver.stop()
                lanResolver.stop()
            }
            // The LAN resolver answers C before the tunnel.
            #expect(try lab["C"].exec(["getent", "hosts", "printer.lan"]).stdout.contains("10.110.\(lab.k).9"))
            let before = lanResolver.queries.count

            let underlay = try Capture(in: lab["C"], interface: "c0", file: lab.path("c0.pcap"))
            let client = try lab.startClient(extra: ["--firewall", firewall])
            try lab.waitForTunnelUp(client)
            let show = try lab.tunvpn(in: "C", ["show"])
            #expect(show.stdout.contains("  dns: resolvers 10.8.0.1, search tunvpn.test (resolv.conf)\n"), "\(show.stdout)")
            if firewall == "iptables" {
                let rules = try lab["C"].exec(["iptables-save", "-t", "filter"]).stdout
                #expect(rules.contains("--dports 53,853") && rules.contains("tunvpn:tun0"), "\(rules)")
            }
            let answers = try lookUp(lab, count: 50)
            #expect(answers.contains("\(lab.internetHost)") && answers.contains("internet.tunvpn.test"), "\(answers)")
            // A query sent straight to the LAN resolver is refused on the spot (the leak block rejects it in
            // the output hook: send(2) fails with EPERM), and never sent.
            let direct = try lab["C"].exec([
                "python3", "-c",
                """
                import socket
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
                s.connect(("\(lanResolver.address)", 53))
                try:
                    s.send(b"\\x12\\x34\\x01\\x00\\x00\\x01" + bytes(6) + b"\\x07printer\\x03lan\\x00\\x00\\x01\\x00\\x01")
                    s.recv(512); print("answered")
                except (PermissionError, ConnectionRefusedError): print("refused")
                except socket.timeout: print("timeout")
                """,
            ])
            #expect(direct.stdout.contains("refused"), "\(direct.stdout)\(direct.stderr)")
            let result = try underlay.stop()
            #expect(client.terminate() == 0)
            // The leak block went with the tunnel.
            #expect(!(try lab["C"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn_dns")))
            #expect(!(try lab["C"].exec(["iptables-save"]).stdout.contains("tunvpn:tun0")))
            #expect(!(try lab["C"].exec(["ip6tables-save"]).stdout.contains("tunvpn:tun0")))

            let asked = Set(tunnelResolver.queries.map(\.name))
            let missing = (1...50).map { "name\($0).tunvpn.test" }.filter { !asked.contains($0) }
            #expect(missing.isEmpty, "not asked of the tunnel resolver: \(missing)")
            #expect(tunnelResolver.queries.allSatisfy { $0.from == TunnelLab.clientTunnelAddress }, "\(tunnelResolver.queries.map(\.from))")
            #expect(lanResolver.queries.count == before, "the LAN resolver was asked: \(lanResolver.queries.dropFirst(before).map(\.name))")
            let dnsFrames = result.frames.enumerated().filter { _, f in
                [f.sourcePort, f.destinationPort].contains(53) || [f.sourcePort, f.destinationPort].contains(853)
            }
            #expect(dnsFrames.isEmpty, "DNS on the underlay: \(dnsFrames.map { result.line($0.offset) })")
            // The block goes with the tunnel: the LAN resolver answers again.
            #expect(try lab["C"].exec(["getent", "hosts", "printer.lan"]).stdout.contains("10.110.\(lab.k).9"))
        }
    }

    @Test func inSplitTunnelModeOtherNamesStillReachTheLANResolver() throws {
        try withLab { lab in
            try lab.startServer(extra: serverDNS)
            let (tunnelResolver, lanResolver) = try startResolvers(lab)
            defer {
                tunnelResolver.stop()
                lanResolver.stop()
            }
            let client = try lab.startClient(extra: ["--route", "10.200.\(lab.k).0/24"])
            try lab.waitForTunnelUp(client)
            #expect(resolvConf(lab).contains("nameserver 10.8.0.1\nnameserver \(lanResolver.address)\n"), "\(resolvConf(lab))")
            let tunnelName = try lab["C"].exec(["getent", "hosts", "internet.tunvpn.test"]).stdout
            #expect(tunnelName.contains(lab.internetHost), "\(tunnelName)")
            let lanName = try lab["C"].exec(["getent", "hosts", "printer.lan"]).stdout
            #expect(lanName.contains("10.110.\(lab.k).9"), "\(lanName)")
            #expect(lanResolver.queries.contains { $0.name == "printer.lan" })
            // The tunnel resolver answered internet.tunvpn.test's A record itself (it refuses the AAAA it
            // does not have, which glibc then asks the next resolver, the LAN's).
            #expect(tunnelResolver.queries.contains { $0.type == "A" && $0.name == "internet.tunvpn.test" })
            #expect(!lanResolver.queries.contains { $0.type == "A" && $0.name == "internet.tunvpn.test" }, "\(lanResolver.queries)")
            // No leak block in split-tunnel mode.
            let tables = try lab["C"].exec(["nft", "list", "tables"]).stdout
            #expect(!tables.contains("tunvpn_dns_tun0"), "\(tables)")
            #expect(client.terminate() == 0)
        }
    }
}

// A client's DNS steps: what `--dry-run` prints is what a tunnel-up applies (the resolv.conf step with the
// file it writes, the leak block), the settings in force (--dns replaces the pushed resolvers, --no-dns
// applies nothing), and when the leak block is planned.

import Control
import Engine
import Foundation
import Logging
import Platform
import Routing
import Testing
import TestSupport
import Transport

/// Records commands as a shell shows them and reads a fixed resolv.conf without options lines.
final class DNSRecorder: CommandExecutor {
    var lines: [String] = []
    func run(_ command: [String], input: String?) -> String? {
        lines.append(command.map(shellQuote).joined(separator: " ") + (input.map { " <<'EOF'\n" + $0 + "EOF" } ?? ""))
        return nil
    }
    func readSysctl(_ key: String) -> String? { "0" }
    func readFile(_ path: String) -> SavedFile? { .file(Array("nameserver 192.168.1.1\n".utf8)) }
}

@Suite struct DNSDryRunTests {
    let pushed = DNSSettings(resolvers: [.v4(IPv4Address(10, 8, 0, 1))], searchDomains: ["corp.example"])

    func client(_ configure: (inout ClientConfiguration) -> Void = { _ in }) -> ClientConfiguration {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        configure(&c)
        return c
    }

    @Test func theResolvConfStepAndTheLeakBlockAreAppliedAsTheDryRunPrintsThem() throws {
        let c = client()
        let plans = [ClientDaemon.dnsPlan(c, dns: pushed, method: .resolvConf), try ClientDaemon.dnsLeakPlan(c)]
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let instance = InstanceFiles(device: "tun0", lock: nil, journal: try FileJournal.open(path: dir.path + "/netns-1-tun0.journal"))
        let recorder = DNSRecorder()
        for plan in plans {
            try HostSetup.apply(plan, to: instance, executor: recorder, preflight: false, logger: Logger(label: "test"))
        }
        let script = plans.map(\.script).joined()
        // The dry run's comment line says what the journal keeps; the rest is exactly what was run.
        let comment = "# /etc/resolv.conf: the original is saved in the journal and restored at exit; its options lines are kept\n"
        #expect(script.hasPrefix(comment))
        #expect(recorder.lines.map { $0 + "\n" }.joined() == String(script.dropFirst(comment.count)))
        #expect(script.contains("nameserver 10.8.0.1\nsearch corp.example\nEOF\n"))
        #expect(script.contains("table inet tunvpn_dns_tun0"))
        // The journal holds the original first, then the table's undo.
        let undo = try instance.journal?.entries().map(\.undo) ?? []
        #expect(undo == [
            ["tunvpn-resolv-conf", "restore", "/etc/resolv.conf", "file"], ["nft", "delete", "table", "inet", "tunvpn_dns_tun0"],
        ])
    }

    @Test func theClientsResolversReplaceThePushedOnesAndNoDnsAppliesNothing() throws {
        let own = client { $0.dns = [.v6(IPv6Address("fd00::53")!)] }
        #expect(ClientDaemon.dnsInForce(own, pushed: pushed) == DNSSettings(resolvers: [.v6(IPv6Address("fd00::53")!)], searchDomains: ["corp.example"]))
        #expect(ClientDaemon.dnsInForce(client(), pushed: pushed) == pushed)
        let none = client { $0.noDNS = true }
        #expect(ClientDaemon.dnsInForce(none, pushed: pushed) == .none)
        #expect(ClientDaemon.dnsPlan(none, dns: ClientDaemon.dnsInForce(none, pushed: pushed), method: .resolvConf).changes.isEmpty)
        #expect(try ClientDaemon.dnsLeakPlan(none).changes.isEmpty)
        #expect(ClientDaemon.dnsPlan(client(), dns: .none, method: .resolvConf).changes.isEmpty, "a server that pushes nothing")
    }

    @Test func theLeakBlockIsForTheFullTunnelWithoutTheKillSwitch() throws {
        #expect(try ClientDaemon.dnsLeakPlan(client()).changes.count == 1)
        #expect(try ClientDaemon.dnsLeakPlan(client { $0.lockdown = true }).changes.isEmpty, "the kill switch drops it already")
        #expect(try ClientDaemon.dnsLeakPlan(client { $0.routes = [IPv4Prefix("10.0.0.0/8")!] }).changes.isEmpty, "split tunnel")
        #expect(try ClientDaemon.dnsLeakPlan(client { $0.routes = nil }).changes.isEmpty, "--no-routes")
        let iptables = try ClientDaemon.dnsLeakPlan(client { $0.tunnel.firewall = "iptables" })
        #expect(iptables.changes.allSatisfy { if case .nftTable = $0 { false } else { true } } && !iptables.changes.isEmpty)
        // systemd-resolved in split-tunnel mode: only the pushed domains, no default route.
        let split = ClientDaemon.dnsPlan(client { $0.routes = [IPv4Prefix("10.0.0.0/8")!] }, dns: pushed, method: .systemdResolved)
        #expect(split.script == "resolvectl dns tun0 10.8.0.1\nresolvectl domain tun0 corp.example\nresolvectl default-route tun0 false\n")
        let full = ClientDaemon.dnsPlan(client(), dns: pushed, method: .systemdResolved)
        #expect(full.script == "resolvectl dns tun0 10.8.0.1\nresolvectl domain tun0 '~.' corp.example\nresolvectl default-route tun0 true\n")
    }
}

/// The DNS settings in force in `show` and `--json`.
@Suite struct DNSStatusTests {
    static let tunnel = ClientTunnelSnapshot(
        address: IPv4Prefix("10.8.0.2/16")!, address6: nil, ipv6Egress: false, ipv6Disabled: false,
        dns: ClientDNSSnapshot(method: "resolv.conf", resolvers: ["10.8.0.1", "fd00:8::1"], search: ["corp.example"]))

    static func client(_ tunnel: ClientTunnelSnapshot) -> EngineSnapshot {
        EngineSnapshot(
            role: "client", publicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", listenPort: 40000, device: "tun0",
            suites: [], peers: [], counters: [], tunnel: tunnel)
    }

    @Test func showNamesTheResolversTheSearchDomainsAndTheMethod() {
        let text = StatusText.render(Self.client(Self.tunnel), now: 1_000_000_000)
        #expect(text.contains("\n  dns: resolvers 10.8.0.1 fd00:8::1, search corp.example (resolv.conf)\n"), "\(text)")
        var none = Self.tunnel
        none.dns = nil
        #expect(!StatusText.render(Self.client(none), now: 1_000_000_000).contains("dns:"))
    }

    @Test func theJSONCarriesThemAndReadsBack() throws {
        let json = StatusDocument.json(Self.client(Self.tunnel))
        #expect(json.contains(#""dns":{"method":"resolv.conf","resolvers":["10.8.0.1","fd00:8::1"],"search":["corp.example"]}"#), "\(json)")
        #expect(try StatusDocument.snapshot(fromJSON: Array(json.utf8)).tunnel == Self.tunnel)
    }
}

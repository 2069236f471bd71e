// The DNS steps of a client's plan (docs/ROUTING.md, "DNS"): the exact resolvectl argument lists of the
// systemd-resolved method (checked here because PID 1 is not systemd on the test machines), the resolv.conf
// rendering, the journal round trip of the original file (bytes or symbolic link) through an in-memory
// file system, the replay policy of the new undo entries, and the leak block.

import Testing

@testable import Routing

/// An executor with an in-memory file system for the resolv.conf steps, recording every command.
final class FileExecutor: CommandExecutor {
    var files: [String: SavedFile] = [:]
    var ran: [[String]] = []
    var inputs: [String?] = []
    var failWrites = false

    func run(_ command: [String], input: String?) -> String? {
        ran.append(command)
        inputs.append(input)
        if command.first == ResolvConf.program {
            if command.count == 3, command[1] == "write" {
                if failWrites { return "disk full" }
                files[command[2]] = .file(Array((input ?? "").utf8))
                return nil
            }
            guard let (path, saved) = ResolvConf.saved(in: JournalEntry(undo: command, input: input)) else { return "bad step" }
            files[path] = saved
            return nil
        }
        return nil
    }

    func readSysctl(_ key: String) -> String? { "0" }

    func readFile(_ path: String) -> SavedFile? {
        guard let f = files[path] else { return .absent }
        if case .symlink(let target, _) = f, case .file(let bytes)? = files[target] { return .symlink(target: target, content: bytes) }
        return f
    }
}

@Suite struct DNSPlanTests {
    func input(_ method: DNSMethod, full: Bool, search: [String] = ["corp.example", "lab.test"]) -> DNSPlanInput {
        DNSPlanInput(tunDevice: "tun0", method: method, resolvers: ["10.8.0.1", "fd00:8::1"], search: search, fullTunnel: full)
    }

    @Test func systemdResolvedInFullTunnelModeTakesEveryQueryWithTheRoutingDomainAndDefaultRoute() {
        let plan = Planner.dns(input(.systemdResolved, full: true))
        #expect(plan.changes.map(\.applyCommand) == [
            ["resolvectl", "dns", "tun0", "10.8.0.1", "fd00:8::1"],
            ["resolvectl", "domain", "tun0", "~.", "corp.example", "lab.test"],
            ["resolvectl", "default-route", "tun0", "true"],
        ])
        #expect(Set(plan.changes.map { $0.undoCommand() }) == [["resolvectl", "revert", "tun0"]])
    }

    @Test func systemdResolvedInSplitTunnelModeTakesOnlyThePushedDomains() {
        #expect(Planner.dns(input(.systemdResolved, full: false)).changes.map(\.applyCommand) == [
            ["resolvectl", "dns", "tun0", "10.8.0.1", "fd00:8::1"],
            ["resolvectl", "domain", "tun0", "corp.example", "lab.test"],
            ["resolvectl", "default-route", "tun0", "false"],
        ])
        // No search domains in split mode: the link gets its servers and no domain at all.
        #expect(Planner.dns(input(.systemdResolved, full: false, search: [])).changes.map(\.applyCommand) == [
            ["resolvectl", "dns", "tun0", "10.8.0.1", "fd00:8::1"],
            ["resolvectl", "default-route", "tun0", "false"],
        ])
    }

    @Test func theSystemdResolvedStepsAreJournaledOnceAndUndoneByRevert() throws {
        let executor = FileExecutor()
        let journal = MemoryJournal()
        try PlanExecutor(executor: executor, journal: journal).apply(Planner.dns(input(.systemdResolved, full: true)))
        #expect(journal.lines == ["resolvectl\trevert\ttun0"])
        executor.ran = []
        try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(executor.ran == [["resolvectl", "revert", "tun0"]])
        // After a crash the TUN device is gone, and so are its settings: not a failure.
        #expect(PlanExecutor.isAlreadyGone("Failed to resolve interface \"tun0\": No such device"))
    }

    @Test func theNewResolvConfNamesTunvpnTheResolversTheSearchListAndKeepsTheOptionsLines() {
        let original = Array("# from DHCP\nnameserver 192.168.1.1\nsearch home.lan\noptions edns0 trust-ad\n  options\tndots:2\noptionsx no\n".utf8)
        let text = ResolvConf.render(
            ResolvConfSettings(device: "tun0", nameservers: ["10.8.0.1", "fd00:8::1"], search: ["corp.example"]), original: original)
        #expect(text == """
            # written by tunvpn for tun0; the original comes back when tunvpn stops (or at `tunvpn down`)
            nameserver 10.8.0.1
            nameserver fd00:8::1
            search corp.example
            options edns0 trust-ad
              options\tndots:2

            """)
        // Split tunnel: the original's nameservers follow the tunnel's, three in all (resolv.conf(5)).
        let split = ResolvConf.render(
            ResolvConfSettings(device: "tun0", nameservers: ["10.8.0.1"], search: [], keepNameservers: true),
            original: Array("nameserver 192.168.1.1\nnameserver 192.168.1.2\nnameserver 192.168.1.3\n".utf8))
        #expect(split.hasSuffix("nameserver 10.8.0.1\nnameserver 192.168.1.1\nnameserver 192.168.1.2\n"))
        #expect(ResolvConf.render(ResolvConfSettings(device: "tun0", nameservers: ["10.8.0.1"], search: []), original: nil)
            == "# written by tunvpn for tun0; the original comes back when tunvpn stops (or at `tunvpn down`)\nnameserver 10.8.0.1\n")
    }

    @Test func theOriginalBytesGoToTheJournalFirstAndComeBackExactly() throws {
        let executor = FileExecutor()
        // Bytes a text round trip would lose: no final newline, a CR, a tab, a percent sign, invalid UTF-8.
        let original: [UInt8] = Array("nameserver 192.168.1.1\r\noptions rotate\t# 100%\n".utf8) + [0xff, 0xfe, 0x41]
        executor.files["/etc/resolv.conf"] = .file(original)
        let journal = MemoryJournal()
        let plan = Planner.dns(input(.resolvConf, full: true))
        try PlanExecutor(executor: executor, journal: journal).apply(plan)
        #expect(executor.ran.map { $0.joined(separator: " ") } == ["tunvpn-resolv-conf write /etc/resolv.conf"])
        #expect(journal.lines.count == 1)
        let line = try #require(journal.lines.first)
        let entry = try #require(JournalEntry(encoded: Substring(line)))
        #expect(ResolvConf.saved(in: entry)?.saved == .file(original))
        #expect(ReplayPolicy.refusal(entry) == nil)
        guard case .file(let written)? = executor.files["/etc/resolv.conf"] else { Issue.record("not written"); return }
        #expect(String(decoding: written, as: UTF8.self).contains("nameserver 10.8.0.1\nnameserver fd00:8::1\nsearch corp.example lab.test\noptions rotate\t# 100%\n"))
        // A later handshake with other settings rewrites the file; the journal keeps the first original.
        try PlanExecutor(executor: executor, journal: journal).apply(
            Planner.dns(DNSPlanInput(tunDevice: "tun0", method: .resolvConf, resolvers: ["10.9.0.1"], search: [], fullTunnel: true)))
        #expect(journal.lines.count == 1)
        guard case .file(let rewritten)? = executor.files["/etc/resolv.conf"] else { Issue.record("not written"); return }
        #expect(String(decoding: rewritten, as: UTF8.self).hasSuffix("nameserver 10.9.0.1\noptions rotate\t# 100%\n"))
        try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(executor.files["/etc/resolv.conf"] == .file(original), "byte for byte")
        #expect(journal.lines.isEmpty)
    }

    @Test func aSymbolicLinkComesBackAsTheSameLink() throws {
        let executor = FileExecutor()
        executor.files["/etc/resolv.conf"] = .symlink(target: "../run/resolvconf/resolv.conf", content: nil)
        executor.files["../run/resolvconf/resolv.conf"] = .file(Array("nameserver 192.168.1.1\noptions edns0\n".utf8))
        let journal = MemoryJournal()
        try PlanExecutor(executor: executor, journal: journal).apply(Planner.dns(input(.resolvConf, full: false)))
        let line = try #require(journal.lines.first)
        let entry = try #require(JournalEntry(encoded: Substring(line)))
        #expect(entry.undo == ["tunvpn-resolv-conf", "restore", "/etc/resolv.conf", "symlink", "../run/resolvconf/resolv.conf"])
        guard case .file(let written)? = executor.files["/etc/resolv.conf"] else { Issue.record("not written"); return }
        #expect(String(decoding: written, as: UTF8.self).hasSuffix("options edns0\n"), "the options read through the link")
        try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(executor.files["/etc/resolv.conf"] == .symlink(target: "../run/resolvconf/resolv.conf", content: nil))
    }

    @Test func aMissingFileIsRemovedAgainAndAFailedWriteRestoresTheOriginal() throws {
        let executor = FileExecutor()
        let journal = MemoryJournal()
        try PlanExecutor(executor: executor, journal: journal).apply(Planner.dns(input(.resolvConf, full: true)))
        #expect(journal.lines == ["tunvpn-resolv-conf\trestore\t/etc/resolv.conf\tabsent"])
        try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(executor.files["/etc/resolv.conf"] == .absent)

        let failing = FileExecutor()
        failing.files["/etc/resolv.conf"] = .file(Array("nameserver 1.1.1.1\n".utf8))
        failing.failWrites = true
        let journal2 = MemoryJournal()
        #expect(throws: RoutingError(step: "replace /etc/resolv.conf", command: "tunvpn-resolv-conf write /etc/resolv.conf", message: "disk full")) {
            try PlanExecutor(executor: failing, journal: journal2).apply(Planner.dns(input(.resolvConf, full: true)))
        }
        #expect(failing.files["/etc/resolv.conf"] == .file(Array("nameserver 1.1.1.1\n".utf8)))
        #expect(failing.ran.last == ["tunvpn-resolv-conf", "restore", "/etc/resolv.conf", "file"], "put back in any case")
        #expect(journal2.lines.isEmpty)
    }

    @Test func onlyRestoresOfEtcResolvConfAndResolvectlRevertAreReplayed() {
        let ok = [
            JournalEntry(undo: ["resolvectl", "revert", "tun0"]),
            ResolvConf.restoreEntry(path: "/etc/resolv.conf", saved: .file([1, 2, 3])),
            ResolvConf.restoreEntry(path: "/etc/resolv.conf", saved: .symlink(target: "/run/x", content: nil)),
            ResolvConf.restoreEntry(path: "/etc/resolv.conf", saved: .absent),
        ]
        for e in ok { #expect(ReplayPolicy.refusal(e) == nil, "\(e.undo)") }
        let refused: [(JournalEntry, String)] = [
            (ResolvConf.restoreEntry(path: "/etc/shadow", saved: .file([1])), "tunvpn-resolv-conf restores only /etc/resolv.conf"),
            (JournalEntry(undo: ["tunvpn-resolv-conf", "write", "/etc/resolv.conf"], input: "x"),
             "tunvpn-resolv-conf is replayed only as `restore PATH file|symlink TARGET|absent` with hex input"),
            (JournalEntry(undo: ["tunvpn-resolv-conf", "restore", "/etc/resolv.conf", "file"], input: "zz"),
             "tunvpn-resolv-conf is replayed only as `restore PATH file|symlink TARGET|absent` with hex input"),
            (JournalEntry(undo: ["resolvectl", "dns", "tun0", "1.2.3.4"]), "resolvectl is replayed only as `resolvectl revert DEVICE`"),
            (JournalEntry(undo: ["resolvectl", "revert", "tun0;x"]), "resolvectl is replayed only as `resolvectl revert DEVICE`"),
        ]
        for (e, reason) in refused { #expect(ReplayPolicy.refusal(e) == reason, "\(e.undo)") }
    }

    @Test func theLeakBlockRejectsDNSOutOfEveryDeviceButTheTunnelAndLoopback() {
        let nft = Planner.dnsLeakBlock(tunDevice: "tun0", firewall: .nftables, ipv6: true)
        #expect(nft.changes == [.nftTable(family: "inet", name: "tunvpn_dns_tun0", ruleset: """
            table inet tunvpn_dns_tun0 {
            \tchain output {
            \t\ttype filter hook output priority filter - 15; policy accept;
            \t\toifname { "lo", "tun0" } accept
            \t\tmeta l4proto { tcp, udp } th dport { 53, 853 } reject
            \t}
            \tchain forward {
            \t\ttype filter hook forward priority filter - 15; policy accept;
            \t\toifname "tun0" accept
            \t\tmeta l4proto { tcp, udp } th dport { 53, 853 } reject
            \t}
            }

            """)])
        #expect(nft.changes[0].undoCommand() == ["nft", "delete", "table", "inet", "tunvpn_dns_tun0"])
        let ipt = Planner.dnsLeakBlock(tunDevice: "tun0", firewall: .iptables, ipv6: true)
        #expect(ipt.changes.map { $0.applyCommand.joined(separator: " ") } == [
            "iptables -t filter -I OUTPUT 1 -p udp -m multiport --dports 53,853 ! -o tun0 ! -d 127.0.0.0/8 -m comment --comment tunvpn:tun0 -j REJECT",
            "ip6tables -t filter -I OUTPUT 1 -p udp -m multiport --dports 53,853 ! -o tun0 ! -d ::1/128 -m comment --comment tunvpn:tun0 -j REJECT",
            "iptables -t filter -I OUTPUT 1 -p tcp -m multiport --dports 53,853 ! -o tun0 ! -d 127.0.0.0/8 -m comment --comment tunvpn:tun0 -j REJECT",
            "ip6tables -t filter -I OUTPUT 1 -p tcp -m multiport --dports 53,853 ! -o tun0 ! -d ::1/128 -m comment --comment tunvpn:tun0 -j REJECT",
            "iptables -t filter -I FORWARD 1 -p udp -m multiport --dports 53,853 ! -o tun0 ! -d 127.0.0.0/8 -m comment --comment tunvpn:tun0 -j REJECT",
            "ip6tables -t filter -I FORWARD 1 -p udp -m multiport --dports 53,853 ! -o tun0 ! -d ::1/128 -m comment --comment tunvpn:tun0 -j REJECT",
            "iptables -t filter -I FORWARD 1 -p tcp -m multiport --dports 53,853 ! -o tun0 ! -d 127.0.0.0/8 -m comment --comment tunvpn:tun0 -j REJECT",
            "ip6tables -t filter -I FORWARD 1 -p tcp -m multiport --dports 53,853 ! -o tun0 ! -d ::1/128 -m comment --comment tunvpn:tun0 -j REJECT",
        ])
        #expect(Planner.dnsLeakBlock(tunDevice: "tun0", firewall: .iptables, ipv6: false).changes.count == 4)
    }

    @Test func theDryRunShowsTheResolvConfStepWithWhatItWrites() {
        let plan = Planner.dns(DNSPlanInput(tunDevice: "tun0", method: .resolvConf, resolvers: ["10.8.0.1"], search: ["corp.example"], fullTunnel: true))
        #expect(plan.script == """
            # /etc/resolv.conf: the original is saved in the journal and restored at exit; its options lines are kept
            tunvpn-resolv-conf write /etc/resolv.conf <<'EOF'
            # written by tunvpn for tun0; the original comes back when tunvpn stops (or at `tunvpn down`)
            nameserver 10.8.0.1
            search corp.example
            EOF

            """)
    }
}

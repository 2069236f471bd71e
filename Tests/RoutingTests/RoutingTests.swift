// Plans, the journal format, and applying/undoing plans through a journal with a scripted executor.

import Testing

@testable import Routing

/// Records commands; fails the ones whose text contains `failOn`.
final class ScriptedExecutor: CommandExecutor {
    var ran: [String] = []
    var failOn: String?
    var sysctls: [String: String] = ["net.ipv4.ip_forward": "0"]

    func run(_ command: [String], input: String?) -> String? {
        let line = command.joined(separator: " ")
        ran.append(line)
        if let failOn, line.contains(failOn) { return "RTNETLINK answers: File exists" }
        if command.first == "sysctl", let kv = command.last, let eq = kv.firstIndex(of: "=") {
            sysctls[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        return nil
    }

    func readSysctl(_ key: String) -> String? { sysctls[key] }
}

final class MemoryJournal: JournalStore {
    var lines: [String] = []
    var removed = false
    func append(_ entry: JournalEntry) throws(RoutingError) { lines.append(entry.encoded) }
    func entries() throws(RoutingError) -> [JournalEntry] { lines.compactMap { JournalEntry(encoded: Substring($0)) } }
    func remove() throws(RoutingError) {
        lines = []
        removed = true
    }
}

@Suite struct RoutingTests {
    let fullTunnel = ClientPlanInput(
        tunDevice: "tun0", serverAddress: "203.0.113.7", serverRoute: RouteLookup(via: "192.168.1.1", device: "eth0"),
        routes: [], gateway: false, mtu: 1420)

    @Test func everyServerOfAClientGetsItsHostRouteOnTheOldGateway() {
        var input = fullTunnel
        input.otherServers = [
            ("198.51.100.9", RouteLookup(via: "192.168.2.1", device: "eth1")), ("203.0.113.7", RouteLookup(via: "192.168.1.1", device: "eth0")),
            ("192.0.2.5", nil), ("10.9.9.9", RouteLookup(via: nil, device: "tun0")),
        ]
        #expect(Planner.client(input).changes.prefix(4).map { $0.applyCommand.joined(separator: " ") } == [
            "ip -4 route add 203.0.113.7/32 via 192.168.1.1 dev eth0",
            "ip -4 route add 198.51.100.9/32 via 192.168.2.1 dev eth1",
            "ip -4 route add 0.0.0.0/1 dev tun0",
            "ip -4 route add 128.0.0.0/1 dev tun0",
        ])
        #expect(Planner.serverHostRoute("2001:db8::7", RouteLookup(via: "fe80::1", device: "eth0")).applyCommand == [
            "ip", "-6", "route", "add", "2001:db8::7/128", "via", "fe80::1", "dev", "eth0",
        ])
    }

    @Test func aFullTunnelRoutesBothHalvesOfIPv4AndKeepsTheServerOnTheOldGateway() {
        let plan = Planner.client(fullTunnel)
        #expect(plan.changes.prefix(3).map { $0.applyCommand.joined(separator: " ") } == [
            "ip -4 route add 203.0.113.7/32 via 192.168.1.1 dev eth0",
            "ip -4 route add 0.0.0.0/1 dev tun0",
            "ip -4 route add 128.0.0.0/1 dev tun0",
        ])
        // Without --gateway the client needs no firewall rules: its own TCP takes its MSS from tun0's MTU
        // and the server clamps what it forwards.
        #expect(plan.changes.count == 3)
    }

    @Test func aSplitTunnelRoutesOnlyTheGivenNetworksAndNoRoutesAddsNone() {
        var input = fullTunnel
        input.routes = ["10.0.0.0/8"]
        #expect(Planner.client(input).changes.compactMap { if case .route(let d, _, _) = $0 { return d } else { return nil } } == [
            "203.0.113.7/32", "10.0.0.0/8",
        ])
        input.routes = nil
        #expect(Planner.client(input).changes.allSatisfy { if case .route = $0 { return false } else { return true } })
    }

    @Test func gatewayModeTurnsOnForwardingAndMasqueradesIntoTheTunnel() {
        var input = fullTunnel
        input.gateway = true
        let plan = Planner.client(input)
        #expect(plan.changes.contains(.sysctl(key: "net.ipv4.ip_forward", value: "1")))
        guard case .nftTable(let family, let name, let ruleset) = plan.changes.last else { Issue.record("no table"); return }
        #expect(family == "ip" && name == "tunvpn_tun0")
        #expect(ruleset.contains("oifname \"tun0\" masquerade"))
        #expect(ruleset.contains("tcp option maxseg size set rt mtu"), "forwarded SYNs are MSS-clamped")
    }

    @Test func theServerForwardsMasqueradesTheTunnelNetworkAndAcceptsTunnelTrafficFirst() {
        let input = ServerPlanInput(tunDevice: "tun0", tunnelNetwork: "10.8.0.0/16", egressDevice: "eth0", mtu: 1420, iptablesForwardExists: true)
        let plan = Planner.server(input)
        #expect(plan.changes.first == .sysctl(key: "net.ipv4.ip_forward", value: "1"))
        guard case .nftTable(_, _, let ruleset) = plan.changes[1] else { Issue.record("no table"); return }
        #expect(ruleset.contains("ip saddr 10.8.0.0/16 oifname \"eth0\" masquerade"))
        #expect(ruleset.contains("iifname \"tun0\" accept"))
        // With an iptables FORWARD chain present, tagged accepts go to its top.
        #expect(plan.changes[2].applyCommand.joined(separator: " ")
            == "iptables -t filter -I FORWARD 1 -i tun0 -m comment --comment tunvpn:tun0 -j ACCEPT")
        #expect(plan.changes[2].undoCommand().joined(separator: " ")
            == "iptables -t filter -D FORWARD -i tun0 -m comment --comment tunvpn:tun0 -j ACCEPT")
    }

    @Test func theIptablesFallbackTagsEveryRule() {
        var input = ServerPlanInput(tunDevice: "tun0", tunnelNetwork: "10.8.0.0/16", egressDevice: "eth0", mtu: 1420, iptablesForwardExists: false)
        input.firewall = .iptables
        let rules = Planner.server(input).changes.filter { if case .iptablesRule = $0 { return true } else { return false } }
        #expect(rules.count == 5)
        #expect(rules.allSatisfy { $0.applyCommand.contains("tunvpn:tun0") })
        #expect(rules.contains { $0.applyCommand.contains("MASQUERADE") && $0.applyCommand.contains("10.8.0.0/16") })
    }

    @Test func dryRunPrintsEachStepAsACommand() {
        var input = fullTunnel
        input.gateway = true
        let script = Planner.client(input).script
        #expect(script.hasPrefix("ip -4 route add 203.0.113.7/32 via 192.168.1.1 dev eth0\nip -4 route add 0.0.0.0/1 dev tun0\n"))
        #expect(script.contains("nft -f - <<'EOF'\ntable ip tunvpn_tun0 {}\ndelete table ip tunvpn_tun0\ntable ip tunvpn_tun0 {"))
        #expect(script.hasSuffix("}\nEOF\n"))
    }

    @Test func journalEntriesRoundTripEvenWithTabsNewlinesAndPercents() {
        let e = JournalEntry(undo: ["nft", "delete", "table", "ip", "a\tb%c\nd"], input: "line1\nline2\t%")
        #expect(JournalEntry(encoded: Substring(e.encoded)) == e)
        #expect(!e.encoded.contains("\n"))
        #expect(JournalEntry(encoded: "bad%zzescape") == nil)
    }

    @Test func applyingJournalsEveryUndoBeforeTheChangeAndTeardownUndoesInReverse() throws {
        let executor = ScriptedExecutor()
        let journal = MemoryJournal()
        var input = fullTunnel
        input.gateway = true
        let plan = Planner.client(input)
        try PlanExecutor(executor: executor, journal: journal).apply(plan)
        #expect(journal.lines.count == plan.changes.count)
        #expect(executor.sysctls["net.ipv4.ip_forward"] == "1")
        executor.ran = []
        let result = try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(result.undone == plan.changes.count && result.failures.isEmpty)
        #expect(executor.ran == plan.changes.reversed().map { c -> String in
            c.undoCommand(previousValue: "0").joined(separator: " ")
        })
        #expect(executor.sysctls["net.ipv4.ip_forward"] == "0", "the sysctl is restored to the value read before")
        #expect(journal.removed)
    }

    @Test func aFailureHalfWayRollsBackTheEarlierStepsAndNamesTheFailedOne() {
        let executor = ScriptedExecutor()
        executor.failOn = "128.0.0.0/1"
        let journal = MemoryJournal()
        do {
            try PlanExecutor(executor: executor, journal: journal).apply(Planner.client(fullTunnel))
            Issue.record("expected a failure")
        } catch {
            #expect(error.step == "add route 128.0.0.0/1 dev tun0")
            #expect(error.command == "ip -4 route add 128.0.0.0/1 dev tun0")
            #expect(error.description == "add route 128.0.0.0/1 dev tun0 failed: `ip -4 route add 128.0.0.0/1 dev tun0`: RTNETLINK answers: File exists")
        }
        #expect(executor.ran == [
            "ip -4 route add 203.0.113.7/32 via 192.168.1.1 dev eth0",
            "ip -4 route add 0.0.0.0/1 dev tun0",
            "ip -4 route add 128.0.0.0/1 dev tun0",
            // The failed step changed nothing, so only the two before it are undone, newest first.
            "ip -4 route del 0.0.0.0/1 dev tun0",
            "ip -4 route del 203.0.113.7/32 via 192.168.1.1 dev eth0",
        ])
        #expect(journal.removed && journal.lines.isEmpty)
    }

    @Test func teardownAfterACrashIgnoresChangesThatWereNeverMade() throws {
        let journal = MemoryJournal()
        journal.lines = [JournalEntry(undo: ["ip", "-4", "route", "del", "0.0.0.0/1", "dev", "tun0"]).encoded]
        final class Gone: CommandExecutor {
            func run(_ command: [String], input: String?) -> String? { "RTNETLINK answers: No such process" }
            func readSysctl(_ key: String) -> String? { nil }
        }
        let result = try PlanExecutor(executor: Gone(), journal: journal).tearDown()
        #expect(result.undone == 1 && result.failures.isEmpty)
    }
}

@Suite struct LockdownTests {
    @Test func aClientWithSeveralServersLetsTheFramesOfEachThrough() {
        let plan = Planner.lockdown(
            tunDevice: "tun0", servers: [("203.0.113.7", 51820), ("2001:db8::7", 443), ("203.0.113.7", 51820)])
        guard case .nftTable(_, _, let ruleset) = plan.changes.first, plan.changes.count == 1 else {
            Issue.record("expected one table")
            return
        }
        #expect(ruleset.split(separator: "\n").filter { $0.contains("ip daddr 203.0.113.7 udp dport 51820 accept") }.count == 1, "once, though named twice")
        #expect(ruleset.contains("ip6 daddr 2001:db8::7 udp dport 443 accept"))
        #expect(ruleset.contains("ip6 saddr 2001:db8::7 udp sport 443 accept"))
        #expect(ruleset.contains("ip saddr 203.0.113.7 udp sport 51820 accept"))
        #expect(ruleset.contains("nd-neighbor-solicit"), "an IPv6 server: neighbour discovery is let through")
        #expect(Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820) == Planner.lockdown(tunDevice: "tun0", servers: [("203.0.113.7", 51820)]))
    }

    @Test func theKillSwitchDropsEverythingButLoopbackTheTunnelAndFramesToTheServer() {
        let plan = Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820)
        guard case .nftTable(let family, let name, let ruleset) = plan.changes.first, plan.changes.count == 1 else {
            Issue.record("expected one table")
            return
        }
        #expect(family == "inet", "IPv4 and IPv6 alike")
        #expect(name == "tunvpn_lock_tun0")
        for chain in ["output", "input", "forward"] {
            #expect(ruleset.contains("chain \(chain) {\n\t\ttype filter hook \(chain) priority filter - 20; policy drop;"))
        }
        #expect(ruleset.contains("ip daddr 203.0.113.7 udp dport 51820 accept"))
        #expect(ruleset.contains("ip saddr 203.0.113.7 udp sport 51820 accept"))
        #expect(ruleset.contains("oifname \"lo\" accept") && ruleset.contains("oifname \"tun0\" accept"))
        #expect(plan.changes[0].undoCommand() == ["nft", "delete", "table", "inet", "tunvpn_lock_tun0"])
    }
}

@Suite struct JournalEscapingTests {
    @Test func carriageReturnsAndCombiningMarksSurviveTheRoundTrip() {
        // FuzzJournal's findings: "\r" before the line's "\n", and a tab followed by a combining mark.
        for args in [["\r"], ["\t\u{301}"], ["a%\u{301}", "\n\u{301}x"], ["é\r\n"]] {
            let e = JournalEntry(undo: args)
            #expect(!e.encoded.unicodeScalars.contains { $0 == "\r" || $0 == "\n" })
            #expect(JournalEntry(encoded: Substring(e.encoded)) == e, "\(args)")
        }
        let lines = [JournalEntry(undo: ["\r"]), JournalEntry(undo: ["\r"])].map { $0.encoded + "\n" }.joined()
        #expect(lines.split(separator: "\n").compactMap { JournalEntry(encoded: $0) } == [JournalEntry(undo: ["\r"]), JournalEntry(undo: ["\r"])])
    }
}

@Suite struct ReplayPolicyTests {
    /// Every undo command the planner produces, for every role and backend.
    var plannedUndos: [JournalEntry] {
        let client = ClientPlanInput(
            tunDevice: "tun0", serverAddress: "203.0.113.7", serverRoute: RouteLookup(via: "192.168.1.1", device: "eth0"),
            routes: [], gateway: true, mtu: 1420)
        var iptablesClient = client
        iptablesClient.firewall = .iptables
        let server = ServerPlanInput(
            tunDevice: "tun0", tunnelNetwork: "10.8.0.0/16", egressDevice: "eth0", mtu: 1420, iptablesForwardExists: true)
        var iptablesServer = server
        iptablesServer.firewall = .iptables
        let plans = [
            Planner.client(client), Planner.client(iptablesClient), Planner.server(server), Planner.server(iptablesServer),
            Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820),
        ]
        return plans.flatMap { $0.changes.map { JournalEntry(undo: $0.undoCommand(previousValue: "0")) } }
    }

    @Test func everyUndoThePlannerWritesIsAccepted() {
        let undos = plannedUndos
        #expect(undos.count > 15)
        for entry in undos { #expect(ReplayPolicy.refusal(entry) == nil, "\(entry.undo)") }
        // The apply command of a table, replayed by a rollback of an older journal format, is accepted too.
        let table = Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820).changes[0]
        #expect(ReplayPolicy.refusal(JournalEntry(undo: table.applyCommand, input: table.applyInput)) == nil)
        #expect(ReplayPolicy.refusal(JournalEntry(undo: ["ip", "-6", "rule", "del", "pref", "100"])) == nil)
        #expect(ReplayPolicy.refusal(JournalEntry(undo: ["ip", "address", "del", "10.8.0.1/16", "dev", "tun0"])) == nil)
    }

    @Test func commandsOfOtherShapesAreRefusedWithTheirReason() {
        let refused: [(JournalEntry, String)] = [
            (JournalEntry(undo: ["touch", "/tmp/x"]), "touch is not one of ip, nft, iptables, ip6tables, sysctl, resolvectl, tunvpn-resolv-conf"),
            (JournalEntry(undo: ["/usr/sbin/ip", "route", "del", "0.0.0.0/1"]), "/usr/sbin/ip is not one of ip, nft, iptables, ip6tables, sysctl, resolvectl, tunvpn-resolv-conf"),
            (JournalEntry(undo: ["ip", "netns", "exec", "x", "touch", "/tmp/x"]), "ip with netns is never replayed"),
            (JournalEntry(undo: ["ip", "-batch", "/tmp/cmds"]), "ip with -batch is never replayed"),
            (JournalEntry(undo: ["ip", "-b", "/tmp/cmds"]), "ip with -b is never replayed"),
            (JournalEntry(undo: ["ip", "-force", "route", "del", "0.0.0.0/1"]), "ip with -force is never replayed"),
            (JournalEntry(undo: ["ip", "-n", "other", "route", "del", "0.0.0.0/1"]), "ip with -n is never replayed"),
            (JournalEntry(undo: ["ip", "monitor"]), "ip is replayed only with route, rule, address or link"),
            (JournalEntry(undo: ["ip", "route", "del", "0.0.0.0/1"], input: "x"), "ip takes no input"),
            (JournalEntry(undo: ["nft", "-f", "/etc/evil.nft"]), "nft is replayed only as `nft delete table FAMILY NAME` or `nft -f -`"),
            (JournalEntry(undo: ["nft", "flush", "ruleset"]), "nft is replayed only as `nft delete table FAMILY NAME` or `nft -f -`"),
            (JournalEntry(undo: ["nft", "delete", "table", "inet", "x;flush ruleset"]), "nft delete table: bad table name"),
            (JournalEntry(undo: ["nft", "delete", "table", "evil", "x"]), "nft delete table: unknown family evil"),
            (JournalEntry(undo: ["nft", "-f", "-"], input: "flush ruleset\n"), "nft -f - input must start with a table statement"),
            (
                JournalEntry(undo: ["nft", "-f", "-"], input: "table ip t {}\ninclude \"/etc/evil.nft\"\n"),
                "nft input with include is never replayed"
            ),
            (
                JournalEntry(undo: ["nft", "-f", "-"], input: "table ip t { include \"/etc/evil.nft\" }\n"),
                "nft input with include is never replayed"
            ),
            (JournalEntry(undo: ["iptables", "--modprobe=/tmp/x", "-t", "nat", "-D", "POSTROUTING"]), "iptables with --modprobe is never replayed"),
            (JournalEntry(undo: ["sysctl", "-w", "kernel.core_pattern=|/tmp/x"]), "sysctl is replayed only for net.* keys with plain values"),
            (JournalEntry(undo: ["sysctl", "-w", "net.a/../../../etc/x=1"]), "sysctl is replayed only for net.* keys with plain values"),
            (JournalEntry(undo: ["sysctl", "-p", "/tmp/x"]), "sysctl is replayed only as `sysctl -w net.KEY=VALUE`"),
        ]
        for (entry, reason) in refused { #expect(ReplayPolicy.refusal(entry) == reason, "\(entry.undo)") }
    }

    @Test func teardownRunsNoRefusedEntryAndReportsIt() throws {
        let executor = ScriptedExecutor()
        let journal = MemoryJournal()
        journal.lines = [
            JournalEntry(undo: ["ip", "-4", "route", "del", "0.0.0.0/1", "dev", "tun0"]).encoded,
            JournalEntry(undo: ["touch", "/tmp/x"]).encoded,
        ]
        let result = try PlanExecutor(executor: executor, journal: journal).tearDown()
        #expect(executor.ran == ["ip -4 route del 0.0.0.0/1 dev tun0"])
        #expect(result.undone == 2)
        #expect(result.failures == ["`touch /tmp/x`: not run: touch is not one of ip, nft, iptables, ip6tables, sysctl, resolvectl, tunvpn-resolv-conf"])
        #expect(journal.lines.isEmpty)
    }
}

@Suite struct KillSwitchContinuityTests {
    let lockdown = Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820)

    @Test func aTableIsReplacedInOneTransactionThatNeverLeavesItOut() {
        guard case .nftTable = lockdown.changes[0], let input = lockdown.changes[0].applyInput else {
            Issue.record("expected a table")
            return
        }
        #expect(lockdown.changes[0].applyCommand == ["nft", "-f", "-"])
        #expect(input.hasPrefix("table inet tunvpn_lock_tun0 {}\ndelete table inet tunvpn_lock_tun0\ntable inet tunvpn_lock_tun0 {\n"))
    }

    /// A restart with --lockdown over a crashed run's journal: the leftovers go, the kill switch is kept,
    /// and its new version replaces it; no `nft delete table` of it runs before the new table is loaded.
    @Test func aRestartWithLockdownNeverDeletesTheKillSwitchBeforeTheNewOneIsLoaded() throws {
        let executor = ScriptedExecutor()
        let journal = MemoryJournal()
        let previous = PlanExecutor(executor: executor, journal: journal)
        try previous.apply(lockdown)
        try previous.apply(Planner.client(
            ClientPlanInput(
                tunDevice: "tun0", serverAddress: "203.0.113.7", serverRoute: RouteLookup(via: "192.168.1.1", device: "eth0"),
                routes: [], gateway: false, mtu: 1420)))
        #expect(journal.lines.count == 4)
        executor.ran = []

        // What `HostSetup.removeLeftovers` and then `HostSetup.apply` do for `tunvpn client --lockdown`.
        let (undone, failures) = try previous.tearDown(keeping: [Planner.lockdownUndo(device: "tun0")])
        #expect(undone == 3 && failures.isEmpty)
        #expect(journal.lines == [JournalEntry(undo: Planner.lockdownUndo(device: "tun0")).encoded], "the kill switch stays journaled")
        try previous.apply(lockdown)

        let deletion = "nft delete table inet tunvpn_lock_tun0"
        #expect(!executor.ran.contains(deletion), "\(executor.ran)")
        #expect(executor.ran.last == "nft -f -", "the new table is loaded by one transaction")
        #expect(executor.ran.dropLast().allSatisfy { $0.hasPrefix("ip -4 route del") }, "\(executor.ran)")
        #expect(journal.lines.count == 1, "one undo for the table, not two")

        // A plain stop removes it.
        executor.ran = []
        #expect(try previous.tearDown().undone == 1)
        #expect(executor.ran == [deletion])
    }

    @Test func aStartWithoutLockdownRemovesTheOldKillSwitch() throws {
        let executor = ScriptedExecutor()
        let journal = MemoryJournal()
        try PlanExecutor(executor: executor, journal: journal).apply(lockdown)
        executor.ran = []
        #expect(try PlanExecutor(executor: executor, journal: journal).tearDown().undone == 1)
        #expect(executor.ran == ["nft delete table inet tunvpn_lock_tun0"])
        #expect(journal.lines.isEmpty)
    }
}

@Suite struct IPv6PlanTests {
    let server = ServerPlanInput(
        tunDevice: "tun0", tunnelNetwork: "10.8.0.0/16", egressDevice: "eth0", mtu: 1420, iptablesForwardExists: false,
        tunnelNetwork6: "fd00:8::/64", egressDevice6: "eth1", ip6tablesForwardExists: false,
        egressRouterAdvertisements: RouterAdvertisements(device: "eth1", acceptRA: "1"))
    let client = ClientPlanInput(
        tunDevice: "tun0", serverAddress: "2001:db8::7", serverRoute: RouteLookup(via: "fe80::1", device: "eth0"),
        routes: [], gateway: false, mtu: 1420, ipv6: true)

    func commands(_ plan: Plan) -> [String] { plan.changes.map { $0.applyCommand.joined(separator: " ") } }
    func table(_ plan: Plan, _ family: String) -> String? {
        for case .nftTable(let f, _, let ruleset) in plan.changes where f == family { return ruleset }
        return nil
    }

    @Test func aDualStackServerForwardsAndMasqueradesIPv6OutOfTheIPv6EgressInAnIp6TableBesideTheIpOne() throws {
        let plan = Planner.server(server)
        #expect(commands(plan).prefix(5) == [
            "sysctl -w net.ipv4.ip_forward=1", "nft -f -",
            "sysctl -w net.ipv6.conf.eth1.accept_ra=2", "sysctl -w net.ipv6.conf.all.forwarding=1", "nft -f -",
        ])
        #expect(plan.changes.count == 5)
        let v4 = try #require(table(plan, "ip"))
        let v6 = try #require(table(plan, "ip6"))
        #expect(v4.contains("ip saddr 10.8.0.0/16 oifname \"eth0\" masquerade") && !v4.contains("ip6"))
        #expect(v6.hasPrefix("table ip6 tunvpn_tun0 {"))
        #expect(v6.contains("ip6 saddr fd00:8::/64 oifname \"eth1\" masquerade"))
        #expect(v6.contains("iifname \"tun0\" accept") && v6.contains("oifname \"tun0\" ct state established,related accept"))
        #expect(v6.contains("iifname \"tun0\" tcp flags syn / syn,rst tcp option maxseg size set rt mtu"), "MTU - 60 for IPv6")
        #expect(plan.changes.last?.undoCommand() == ["nft", "delete", "table", "ip6", "tunvpn_tun0"])
        #expect(plan.changes[2].undoCommand(previousValue: "1") == ["sysctl", "-w", "net.ipv6.conf.eth1.accept_ra=1"])
    }

    @Test func acceptRAIsLeftAloneWhenItIsZeroAndIPv6IsUntouchedWithoutAnIPv6Network() {
        var input = server
        input.egressRouterAdvertisements = RouterAdvertisements(device: "eth1", acceptRA: "0")
        #expect(!commands(Planner.server(input)).contains { $0.contains("accept_ra") }, "0: the operator wants none")
        input.egressRouterAdvertisements = RouterAdvertisements(device: "eth1", acceptRA: "2")
        #expect(commands(Planner.server(input)).contains("sysctl -w net.ipv6.conf.eth1.accept_ra=2"), "a killed run's 2 may be undone before the step")
        input.egressRouterAdvertisements = RouterAdvertisements(device: "eth1.100", acceptRA: "1")
        #expect(!commands(Planner.server(input)).contains { $0.contains("accept_ra") }, "a dotted name has no dotted sysctl key")
        input.tunnelNetwork6 = nil
        let plan = Planner.server(input)
        #expect(commands(plan) == ["sysctl -w net.ipv4.ip_forward=1", "nft -f -"])
        #expect(table(plan, "ip6") == nil)
    }

    @Test func theIptablesBackendTagsIp6tablesRulesTheSameWayAndUndoesThem() {
        var input = server
        input.firewall = .iptables
        let plan = Planner.server(input)
        let v6 = plan.changes.filter { if case .ip6tablesRule = $0 { return true } else { return false } }
        #expect(v6.count == 5)
        #expect(v6.allSatisfy { $0.applyCommand.first == "ip6tables" && $0.applyCommand.contains("tunvpn:tun0") })
        #expect(v6.contains { $0.applyCommand == [
            "ip6tables", "-t", "nat", "-I", "POSTROUTING", "1", "-s", "fd00:8::/64", "-o", "eth1", "-m", "comment", "--comment",
            "tunvpn:tun0", "-j", "MASQUERADE",
        ] })
        #expect(v6.contains { $0.applyCommand.contains("--clamp-mss-to-pmtu") && $0.applyCommand.contains("mangle") })
        #expect(v6.map { $0.undoCommand().prefix(5).joined(separator: " ") }.contains("ip6tables -t nat -D POSTROUTING"))
        #expect(commands(plan).contains("sysctl -w net.ipv6.conf.all.forwarding=1"))
        // With nft and an ip6tables FORWARD chain (Docker), the accepts go there too.
        var nft = server
        nft.ip6tablesForwardExists = true
        #expect(commands(Planner.server(nft)).suffix(2) == [
            "ip6tables -t filter -I FORWARD 1 -i tun0 -m comment --comment tunvpn:tun0 -j ACCEPT",
            "ip6tables -t filter -I FORWARD 2 -o tun0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment tunvpn:tun0 -j ACCEPT",
        ])
    }

    @Test func aFullTunnelTakesBothHalvesOfIPv6AndKeepsAnIPv6ServerOnTheOldGateway() {
        let plan = Planner.client(client)
        #expect(commands(plan) == [
            "ip -6 route add 2001:db8::7/128 via fe80::1 dev eth0",
            "ip -4 route add 0.0.0.0/1 dev tun0", "ip -4 route add 128.0.0.0/1 dev tun0",
            "ip -6 route add ::/1 dev tun0", "ip -6 route add 8000::/1 dev tun0",
        ])
        #expect(plan.changes[0].undoCommand() == ["ip", "-6", "route", "del", "2001:db8::7/128", "via", "fe80::1", "dev", "eth0"])
        var noIPv6Host = client
        noIPv6Host.ipv6 = false
        noIPv6Host.serverAddress = "203.0.113.7"
        noIPv6Host.serverRoute = RouteLookup(via: "192.168.1.1", device: "eth0")
        #expect(!commands(Planner.client(noIPv6Host)).contains { $0.contains("-6") })
    }

    @Test func aSplitTunnelRoutesIPv6PrefixesAsGiven() {
        var input = client
        input.routes = ["10.0.0.0/8", "2001:db8:100::/48"]
        #expect(commands(Planner.client(input)) == [
            "ip -6 route add 2001:db8::7/128 via fe80::1 dev eth0", "ip -4 route add 10.0.0.0/8 dev tun0",
            "ip -6 route add 2001:db8:100::/48 dev tun0",
        ])
    }

    @Test(arguments: [FirewallBackend.nftables, .iptables])
    func gatewayModeForwardsAndMasqueradesIPv6IntoTheTunnel(firewall: FirewallBackend) throws {
        var input = client
        input.gateway = true
        input.firewall = firewall
        input.routerAdvertisements = RouterAdvertisements(device: "eth0", acceptRA: "1")
        let plan = Planner.client(input)
        let all = commands(plan)
        #expect(all.contains("sysctl -w net.ipv6.conf.all.forwarding=1"))
        let ra = try #require(all.firstIndex(of: "sysctl -w net.ipv6.conf.eth0.accept_ra=2"))
        #expect(ra < all.firstIndex(of: "sysctl -w net.ipv6.conf.all.forwarding=1")!)
        if firewall == .nftables {
            let v6 = try #require(table(plan, "ip6"))
            #expect(v6.contains("oifname \"tun0\" masquerade") && v6.contains("oifname \"tun0\" accept"))
        } else {
            #expect(all.contains("ip6tables -t nat -I POSTROUTING 1 -o tun0 -m comment --comment tunvpn:tun0 -j MASQUERADE"))
            #expect(all.filter { $0.hasPrefix("ip6tables") }.count == 5)
        }
    }

    @Test func theKillSwitchLetsOnlyTheFramesToAnIPv6ServerAndNeighbourDiscoveryOut() {
        let plan = Planner.lockdown(tunDevice: "tun0", server: "2001:db8::7", port: 51820)
        guard case .nftTable(let family, _, let ruleset) = plan.changes.first else {
            Issue.record("expected a table")
            return
        }
        #expect(family == "inet")
        #expect(ruleset.contains("ip6 daddr 2001:db8::7 udp dport 51820 accept"))
        #expect(ruleset.contains("ip6 saddr 2001:db8::7 udp sport 51820 accept"))
        #expect(ruleset.contains("nd-neighbor-solicit") && ruleset.contains("ip6 hoplimit 255 accept"))
        #expect(!ruleset.contains("ip daddr"))
        let v4 = Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820).changes[0]
        if case .nftTable(_, _, let r) = v4 { #expect(!r.contains("icmpv6"), "an IPv4 server needs no neighbour discovery") }
    }

    @Test func theQuietStepTurnsOffLinkLocalAddressesOfTheDevice() {
        #expect(Planner.quietIPv6(device: "tun0") == .sysctl(key: "net.ipv6.conf.tun0.addr_gen_mode", value: "1"))
        #expect(Planner.quietIPv6(device: "tun.1") == nil)
    }

    @Test func theDeviceStepShowsItsIPv6Address() {
        let plan = Plan([.device(DeviceSettings(device: "tun0", address: nil, mtu: 1420, transmitQueueLength: 1000))])
            .withDeviceAddress("10.8.0.2/16", address6: "fd00:8::2/64")
        #expect(plan.script == "ip addr add 10.8.0.2/16 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\nip -6 addr add fd00:8::2/64 dev tun0\n")
    }

    @Test func everyIPv6UndoIsReplayable() {
        var ipt = server
        ipt.firewall = .iptables
        var gw = client
        gw.gateway = true
        gw.routerAdvertisements = RouterAdvertisements(device: "eth0", acceptRA: "1")
        var gwIpt = gw
        gwIpt.firewall = .iptables
        let plans = [Planner.server(server), Planner.server(ipt), Planner.client(gw), Planner.client(gwIpt),
            Planner.lockdown(tunDevice: "tun0", server: "2001:db8::7", port: 51820), Plan([Planner.quietIPv6(device: "tun0")!])]
        for change in plans.flatMap(\.changes) {
            let entry = JournalEntry(undo: change.undoCommand(previousValue: "1"))
            #expect(ReplayPolicy.refusal(entry) == nil, "\(entry.undo)")
        }
    }
}

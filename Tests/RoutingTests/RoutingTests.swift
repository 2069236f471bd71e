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
        #expect(script.contains("nft -f - <<'EOF'\ntable ip tunvpn_tun0 {"))
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

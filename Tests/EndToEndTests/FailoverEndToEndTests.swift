// Client failover end to end (docs/DEPLOYMENT.md, "Client failover"): two `tunvpn server`s with the same
// key and the same allow-list (the client's fixed address in it, so it keeps its address on both), and
// one client given both endpoints, k = subnet index:
//
//     C  c0 10.100.k.2/24 ──── s0 10.100.k.1/24  S1  tun0 10.8.0.1/16, UDP 51820
//        c1 10.101.k.2/24 ──── s0 10.101.k.1/24  S2  tun0 10.8.0.1/16, UDP 51820
//        tun0 10.8.0.7/16
//
// The client pings 10.8.0.1, which each server answers itself. Which server carries the traffic is read
// from its own counters (`tunvpn show --json` in its namespace). Every figure measured is printed (`= …`).
// The name test gives C its own /etc/netns/NAME/hosts (which `ip netns exec` mounts over /etc/hosts),
// written before anything starts in C, rewritten in place to move the name, and removed at the end.

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct FailoverEndToEndTests {
    static let clientAddress = "10.8.0.7"

    static func topology() throws -> Topology {
        try Topology(hosts: ["C", "S1", "S2"]) { k in
            [
                VethLink(.init("C", "c0", "10.100.\(k).2/24"), .init("S1", "s0", "10.100.\(k).1/24")),
                VethLink(.init("C", "c1", "10.101.\(k).2/24"), .init("S2", "s0", "10.101.\(k).1/24")),
            ]
        }
    }

    /// One server key, one allow-list with the client at a fixed address.
    func makeKeys(_ lab: TunnelLab) throws {
        try lab.keygen("server")
        let clientKey = try lab.keygen("client")
        try lab.writeAllowList(["\(clientKey) \(Self.clientAddress)  # the test's client"])
    }

    /// The `rx_packets` counter of the tunvpn running in `host` (nil when none answers).
    func received(_ lab: TunnelLab, in host: String) throws -> UInt64? {
        let show = try lab.tunvpn(in: host, ["show", "--json"])
        guard show.status == 0, let data = show.stdout.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let counters = object["counters"] as? [String: Any]
        else { return nil }
        return (counters["rx_packets"] as? NSNumber)?.uint64Value
    }

    /// The client's `failover` object from `tunvpn show --json`.
    func failover(_ lab: TunnelLab) throws -> [String: Any]? {
        let show = try lab.tunvpn(in: "C", ["show", "--json"])
        guard show.status == 0, let data = show.stdout.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["failover"] as? [String: Any]
    }

    /// Pings 10.8.0.1 from C once every ~0.2 s until a reply comes; returns the seconds from `since` to
    /// that reply, or nil after `timeout` seconds.
    func secondsUntilPingAnswered(_ lab: TunnelLab, since: Date, timeout: Double) throws -> Double? {
        while Date().timeIntervalSince(since) < timeout {
            if try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 1, wait: 1).status == 0 {
                return Date().timeIntervalSince(since)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return nil
    }

    /// Prints one measured value for the test log.
    func report(_ line: String) { print("= \(line)") }

    @Test func theClientMovesToTheSecondServerWhenTheFirstDiesAndReturnsWhenItIsBack() throws {
        let lab = try TunnelLab(try Self.topology(), clientDefaults: ["--no-routes", "--no-dns"])
        try lab.use { lab in
            try makeKeys(lab)
            let k = lab.k
            let first = "10.100.\(k).1:51820"
            let second = "10.101.\(k).1:51820"
            let server1 = try lab.startServer(in: "S1", logName: "server1")
            try lab.startServer(in: "S2", logName: "server2")
            // Failover after 2 s of failed handshakes: with the 15 s in which a silent server is noticed
            // (KEEPALIVE + REKEY_TIMEOUT, docs/PROTOCOL.md) and one handshake, under 20 s in all.
            let client = try lab.startClient(
                endpoint: "10.100.\(k).1", extra: ["--endpoint", second, "--failover-after", "2"])
            #expect(try lab.waitForTunnelUp(client) == Self.clientAddress)
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress))
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 5).status == 0)
            let viaFirst = try #require(try received(lab, in: "S1"))
            #expect(viaFirst >= 5, "the first server carried the pings")
            #expect(try received(lab, in: "S2") == 0, "the second server carried nothing")
            let before = try #require(try failover(lab))
            #expect(before["active"] as? Int == 0)
            #expect(before["switches"] as? Int == 0)
            #expect((before["endpoints"] as? [[String: Any]])?.compactMap { $0["endpoint"] as? String } == [first, second])

            // The first server dies: pings resume through the second.
            lab.kill9(server1)
            let killed = Date()
            let gap = try #require(
                try secondsUntilPingAnswered(lab, since: killed, timeout: 40), "no ping answered within 40 s of the kill")
            report(String(format: "failover gap: %.1f s from SIGKILL of the first server to the first ping answered via the second", gap))
            #expect(gap <= 20)
            #expect(client.log.contains("switching from endpoint 1 to endpoint 2"))
            #expect(try received(lab, in: "S2").map { $0 > 0 } == true)
            let moved = try #require(try failover(lab))
            #expect(moved["active"] as? Int == 1)
            #expect(moved["switches"] as? Int == 1)
            #expect((moved["last_switch"] as? [String: Any])?["reason"] as? String == "no_response")

            // The first comes back (a new process, same key and list): the client's probe finds it and the
            // traffic returns there.
            try lab.startServer(in: "S1", logName: "server1-again")
            let restarted = Date()
            let returned = try waitUntil(timeout: 30, interval: 0.5) {
                (try failover(lab))?["active"] as? Int == 0
            }
            try #require(returned, "the client did not return to the first server within 30 s; its log:\n\(client.log)")
            report(String(format: "return to the first server: %.1f s after it was started again", Date().timeIntervalSince(restarted)))
            #expect(client.log.contains("switching from endpoint 2 to endpoint 1"))
            let secondBefore = try #require(try received(lab, in: "S2"))
            let firstBefore = try #require(try received(lab, in: "S1"))
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 10).status == 0)
            let firstAfter = try #require(try received(lab, in: "S1"))
            let secondAfter = try #require(try received(lab, in: "S2"))
            report("pings after the return: first server +\(firstAfter - firstBefore) packets, second +\(secondAfter - secondBefore)")
            #expect(firstAfter - firstBefore >= 10)
            #expect(secondAfter == secondBefore)
            let back = try #require(try failover(lab))
            #expect(back["switches"] as? Int == 2)
            #expect((back["last_switch"] as? [String: Any])?["reason"] as? String == "preferred_answered")
            let text = try lab.tunvpn(in: "C", ["show"])
            #expect(text.stdout.contains("endpoints: \(first) [in use], \(second)"))
            #expect(text.stdout.contains("endpoint switches: 2"))
        }
    }

    /// A full-tunnel client with --lockdown plans a host route and a kill-switch exception for every
    /// endpoint (what `--dry-run` prints is what it applies: DryRunTests).
    @Test func everyEndpointGetsItsHostRouteAndKillSwitchException() throws {
        let lab = try TunnelLab(try Self.topology(), clientDefaults: ["--no-dns"])
        try lab.use { lab in
            try makeKeys(lab)
            let k = lab.k
            let plan = try lab.tunvpn(
                in: "C", lab.clientArguments(endpoint: "10.100.\(k).1") + ["--endpoint", "10.101.\(k).1:51820", "--lockdown", "--dry-run"])
            try #require(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
            print(plan.stdout)
            #expect(plan.stdout.contains("ip -4 route add 10.100.\(k).1/32 dev c0"))
            #expect(plan.stdout.contains("ip -4 route add 10.101.\(k).1/32 dev c1"))
            for server in ["10.100.\(k).1", "10.101.\(k).1"] {
                #expect(plan.stdout.contains("ip daddr \(server) udp dport 51820 accept"))
                #expect(plan.stdout.contains("ip saddr \(server) udp sport 51820 accept"))
            }
        }
    }

    @Test func aNameThatMovesToAnotherServerIsFollowed() throws {
        let topology = try Self.topology()
        let client = topology["C"]
        let hosts = NamespaceResolvConf.directory(client) + "/hosts"
        defer { NamespaceResolvConf.remove(client) }
        // In place (not a rename): `ip netns exec` bind-mounts this very file over /etc/hosts.
        func writeHosts(_ address: String) throws {
            let text = "127.0.0.1 localhost\n\(address) vpn.failover.test\n"
            print("+ cat > \(hosts) <<EOF\n\(text)EOF")
            let file = try #require(fopen(hosts, "w"))
            fputs(text, file)
            fclose(file)
        }
        try FileManager.default.createDirectory(atPath: NamespaceResolvConf.directory(client), withIntermediateDirectories: true)
        let k = topology.subnetIndex
        try writeHosts("10.100.\(k).1")
        // A full tunnel: the name's new address gets its host route (journaled) when it appears.
        let lab = try TunnelLab(topology, clientDefaults: ["--no-dns"])
        try lab.use { lab in
            try makeKeys(lab)
            let server1 = try lab.startServer(in: "S1", logName: "server1")
            try lab.startServer(in: "S2", logName: "server2")
            let seen = try lab["C"].exec(["getent", "hosts", "vpn.failover.test"], timeout: 10)
            try #require(seen.stdout.contains("10.100.\(k).1"), "C does not see its own hosts file: \(seen.stdout)")
            let process = try lab.startClient(endpoint: "vpn.failover.test")
            #expect(try lab.waitForTunnelUp(process) == Self.clientAddress)
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress))
            #expect(try received(lab, in: "S1").map { $0 > 0 } == true)

            // The name moves to the second server and the first goes away: the handshake that follows
            // resolves the name again and reaches the second.
            try writeHosts("10.101.\(k).1")
            lab.kill9(server1)
            let killed = Date()
            let gap = try #require(
                try secondsUntilPingAnswered(lab, since: killed, timeout: 45), "no ping answered within 45 s; log:\n\(process.log)")
            report(String(format: "name moved: pings answered via the second server %.1f s after the first was killed", gap))
            #expect(process.log.contains("vpn.failover.test now resolves to 10.101.\(k).1:51820"))
            #expect(process.log.contains("add route 10.101.\(k).1/32 dev c1"))
            #expect(try received(lab, in: "S2").map { $0 > 0 } == true)
            func hostRoutes() throws -> [Substring] {
                try lab["C"].exec(["ip", "-4", "route"], timeout: 10).stdout.split(separator: "\n").filter {
                    $0.hasPrefix("10.100.\(k).1 ") || $0.hasPrefix("10.101.\(k).1 ")
                }
            }
            #expect(try hostRoutes().count == 2, "a host route to each address the name had")
            // Stopped, the client undoes both, the one of the start and the one added on the way.
            _ = process.terminate()
            #expect(try hostRoutes().isEmpty)
        }
    }
}

// `--dry-run` and the applied changes come from one plan: each daemon's plan is applied through a recording
// command executor and a recording device, and what they were asked to do, written as a shell would show
// it, is exactly the script `--dry-run` prints.

import Control
import Crypto
import Foundation
import Logging
import Platform
import Routing
import Testing
import TestSupport
import Transport

/// Records what it is asked to run, as the command line a shell would show; changes nothing.
final class ScriptRecorder: CommandExecutor, DeviceConfiguring {
    var lines: [String] = []
    func run(_ command: [String], input: String?) -> String? {
        lines.append(command.map(shellQuote).joined(separator: " ") + (input.map { " <<'EOF'\n" + $0 + "EOF" } ?? ""))
        return nil
    }
    func readSysctl(_ key: String) -> String? { "0" }
    func apply(_ settings: DeviceSettings) throws(ControlError) {
        guard let address = settings.address else { throw ControlError("recorder: no address") }
        lines.append("ip addr add \(address) dev \(settings.device)")
        lines.append(
            "ip link set \(settings.device) mtu \(settings.mtu) txqueuelen \(settings.transmitQueueLength) up")
        if let address6 = settings.address6 { lines.append("ip -6 addr add \(address6) dev \(settings.device)") }
    }
    var script: String { lines.map { $0 + "\n" }.joined() }
}

@Suite struct DryRunTests {
    /// Applies `plan` to a journal in a temporary directory, recording every step.
    func applied(_ plans: [Plan]) throws -> String {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let instance = InstanceFiles(
            device: "tun0", lock: nil, journal: try FileJournal.open(path: dir.path + "/netns-1-tun0.journal"))
        let recorder = ScriptRecorder()
        for plan in plans {
            try HostSetup.apply(
                plan, to: instance, device: recorder, executor: recorder, preflight: false, logger: Logger(label: "test"))
        }
        return recorder.script
    }

    @Test(arguments: [false, true])
    func theServersDryRunIsWhatItApplies(noNAT: Bool) throws {
        var c = ServerConfiguration(address: try #require(IPv4Prefix("10.8.0.1/16")))
        c.tunnel.firewall = "nftables"
        c.tunnel.mtu = 1380
        c.tunnel.transmitQueueLength = 2000
        c.egress = "lo"  // exists in every network namespace; the plan only names it
        c.noNAT = noNAT
        let plan = try ServerDaemon.plan(c)
        // On a host with IPv6 the device first gets no link-local address (it goes up after that step).
        let quiet = HostNetwork.ipv6Available ? "sysctl -w net.ipv6.conf.tun0.addr_gen_mode=1\n" : ""
        #expect(plan.script.hasPrefix(quiet + "ip addr add 10.8.0.1/16 dev tun0\nip link set tun0 mtu 1380 txqueuelen 2000 up\n"))
        #expect(noNAT == (plan.changes.count == (quiet.isEmpty ? 1 : 2)))
        #expect(try applied([plan]) == plan.script)
    }

    @Test(arguments: [false, true])
    func aDualStackServersDryRunIsWhatItApplies(noIPv6: Bool) throws {
        var c = ServerConfiguration(address: try #require(IPv4Prefix("10.8.0.1/16")))
        c.address6 = try #require(IPv6Prefix("fd00:8::1/64"))
        c.noIPv6 = noIPv6
        c.tunnel.firewall = "nftables"
        c.egress = "lo"
        let plan = try ServerDaemon.plan(c)
        let withIPv6 = !noIPv6 && HostNetwork.ipv6Available
        #expect(plan.script.contains("ip -6 addr add fd00:8::1/64 dev tun0\n") == withIPv6)
        // lo has no IPv6 default route: no IPv6 egress, so no IPv6 forwarding or NAT.
        #expect(!plan.script.contains("net.ipv6.conf.all.forwarding"))
        #expect(try applied([plan]) == plan.script)
    }

    @Test(arguments: [false, true])
    func theClientsDryRunIsWhatItAppliesOnceTheServerGivesItAnAddress(lockdown: Bool) throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.lockdown = lockdown
        c.routes = [try #require(IPv4Prefix("10.0.0.0/8"))]
        c.routes6 = [try #require(IPv6Prefix("2001:db8:100::/48"))]
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        let dryRun = plans.lockdown.script + plans.tunnel.script
        let quiet = HostNetwork.ipv6Available ? "sysctl -w net.ipv6.conf.tun0.addr_gen_mode=1\n" : ""
        #expect(
            plans.tunnel.script.hasPrefix(
                quiet + "# tun0: address assigned by the server at the handshake\nip link set tun0 mtu 1420 txqueuelen 1000 up\n"))
        #expect(plans.tunnel.script.contains("ip -6 route add 2001:db8:100::/48 dev tun0\n"))
        #expect(lockdown == !plans.lockdown.changes.isEmpty)
        let atHandshake = plans.tunnel.withDeviceAddress("10.8.0.2/16", address6: "fd00:8::2/64")
        #expect(
            try applied([plans.lockdown, atHandshake])
                == dryRun.replacingOccurrences(
                    of: "# tun0: address assigned by the server at the handshake\nip link set tun0 mtu 1420 txqueuelen 1000 up\n",
                    with: "ip addr add 10.8.0.2/16 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\nip -6 addr add fd00:8::2/64 dev tun0\n"))
    }

    @Test func aFullTunnelClientRoutesAllOfIPv6IntoTheTunnelEvenWithNoIPv6() throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.noIPv6 = true
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        let routes = "ip -6 route add ::/1 dev tun0\nip -6 route add 8000::/1 dev tun0\n"
        #expect(plans.tunnel.script.contains(routes) == HostNetwork.ipv6Available)
        c.routes = nil
        #expect(!(try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))).tunnel.script.contains("::/1"))
    }

    @Test func anIPv6ServersKillSwitchLetsItsFramesThrough() throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "[2001:db8::7]:51820")
        c.tunnel.firewall = "nftables"
        c.lockdown = true
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("[2001:db8::7]:51820")))
        #expect(plans.lockdown.script.contains("ip6 daddr 2001:db8::7 udp dport 51820 accept"))
        #expect(plans.lockdown.script.contains("ip6 saddr 2001:db8::7 udp sport 51820 accept"))
        // The host route to the server, if this host has an IPv6 route to it, is an IPv6 /128.
        #expect(!plans.tunnel.script.contains("2001:db8::7/32"))
    }

    @Test func aPlanExecutorRefusesADeviceStep() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let journal = try FileJournal.open(path: dir.path + "/netns-1-tun0.journal")
        let step = Change.device(DeviceSettings(device: "tun0", address: "10.8.0.1/16", mtu: 1420, transmitQueueLength: 1000))
        let recorder = ScriptRecorder()
        #expect(throws: RoutingError.self) { try PlanExecutor(executor: recorder, journal: journal).apply(Plan([step])) }
        #expect(recorder.lines.isEmpty)
        #expect(try journal.entries().isEmpty)
    }
}

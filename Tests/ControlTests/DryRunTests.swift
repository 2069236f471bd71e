// `--dry-run` and the applied changes come from one plan: each daemon's plan is applied through a recording
// command executor and a recording device, and what they were asked to do, written as a shell would show
// it, is exactly the script `--dry-run` prints.

import Control
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
        #expect(plan.script.hasPrefix("ip addr add 10.8.0.1/16 dev tun0\nip link set tun0 mtu 1380 txqueuelen 2000 up\n"))
        #expect(noNAT == (plan.changes.count == 1))
        #expect(try applied([plan]) == plan.script)
    }

    @Test(arguments: [false, true])
    func theClientsDryRunIsWhatItAppliesOnceTheServerGivesItAnAddress(lockdown: Bool) throws {
        var c = ClientConfiguration(peerKeyFile: "server.pub", endpoint: "203.0.113.7:51820")
        c.tunnel.firewall = "nftables"
        c.lockdown = lockdown
        c.routes = [try #require(IPv4Prefix("10.0.0.0/8"))]
        let plans = try ClientDaemon.plans(c, server: try #require(Endpoint("203.0.113.7:51820")))
        let dryRun = plans.lockdown.script + plans.tunnel.script
        #expect(
            plans.tunnel.script.hasPrefix(
                "# tun0: address assigned by the server at the handshake\nip link set tun0 mtu 1420 txqueuelen 1000 up\n"))
        #expect(lockdown == !plans.lockdown.changes.isEmpty)
        let atHandshake = plans.tunnel.withDeviceAddress("10.8.0.2/16")
        #expect(
            try applied([plans.lockdown, atHandshake])
                == dryRun.replacingOccurrences(
                    of: "# tun0: address assigned by the server at the handshake", with: "ip addr add 10.8.0.2/16 dev tun0"))
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

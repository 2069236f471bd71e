// Self-tests of the end-to-end harness in TestSupport (Topology, NetworkNamespace, BackgroundProcess,
// Capture, transfers, the stats parser), without tunvpn: when a tunnel test fails, these say whether
// the harness itself still works.
//
//     C  c0 10.100.k.2/24 ──── s0 10.100.k.1/24  S  s1 10.200.k.1/24 ──── h0 10.200.k.2/24  H

import Foundation
import Testing
import TestSupport

/// Not root-gated: fails when CI asks for the root-only tests (TUNVPN_REQUIRE_ROOT_TESTS=1) but the
/// suite does not run as root, so such a run can never pass with the data path untested.
@Suite struct RootRequirementTests {
    @Test(.enabled(if: RootTests.required, "only when TUNVPN_REQUIRE_ROOT_TESTS=1 (CI)"))
    func requiredRootTestsRunAsRoot() {
        #expect(geteuid() == 0, "TUNVPN_REQUIRE_ROOT_TESTS=1 but the tests do not run as root: run them as root")
    }
}

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces"))
struct HarnessTests {
    @Test func standardTopologyConnectsNeighboursAndCloseRemovesNamespacesAndProcesses() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var names: [String] = []
        var sleeper: BackgroundProcess?
        try Topology.clientServerInternet().use { topology in
            names = ["C", "S", "H"].map { topology[$0].name }
            #expect(names.allSatisfy { $0.hasPrefix("tv\(getpid())n") })
            #expect(try topology["S"].ping(topology.address("H", "h0")).status == 0)
            #expect(try topology["S"].ping(topology.address("C", "c0")).status == 0)
            // Nothing forwards between C and H until a test sets that up.
            #expect(try topology["C"].ping(topology.address("H", "h0"), count: 1).status != 0)
            sleeper = try topology["H"].spawn(["sleep", "600"], logFile: dir.path + "/sleep.log")
            #expect(sleeper?.isRunning == true)
            // `ip netns exec` enters the namespace just after the process starts: wait for it (bounded).
            var inside: [pid_t] = []
            for _ in 0..<100 {
                inside = topology["H"].pids()
                if !inside.isEmpty { break }
                usleep(50_000)
            }
            #expect(inside == [sleeper?.pid].compactMap { $0 })
        }
        let list = try runCommand("/usr/bin/env", ["ip", "netns", "list"]).stdout
        for name in names { #expect(!list.contains(name), "namespace \(name) is left after close()") }
        #expect(sleeper?.isRunning == false)
        #expect(sleeper?.endedBySignal == true)
    }

    @Test func forwardingThroughTheMiddleHostWorksOnceEnabledInItsNamespace() throws {
        try Topology.clientServerInternet().use { topology in
            let k = topology.subnetIndex
            try topology["S"].sysctl("net.ipv4.ip_forward", "1")
            try topology["C"].ip("route", "add", "10.200.\(k).0/24", "via", "10.100.\(k).1")
            try topology["H"].ip("route", "add", "10.100.\(k).0/24", "via", "10.200.\(k).1")
            #expect(try topology["C"].ping(topology.address("H", "h0")).status == 0)
        }
    }

    @Test func captureHoldsCleartextSentOutsideATunnelAndFilesArriveIntact() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try Topology.clientServerInternet().use { topology in
            let client = topology["C"]
            let server = topology["S"]
            let serverAddress = topology.address("S", "s0")
            let capture = try Capture(in: server, interface: "s0", file: dir.path + "/s0.pcap")
            let marker = "harness-marker-\(UUID().uuidString)"
            let receiver = try server.spawn(
                ["sh", "-c", "exec nc -l -p 6000 > \"$1\"", "nc", dir.path + "/marker.out"],
                logFile: dir.path + "/marker.log")
            #expect(try server.waitForListener(port: 6000))
            #expect(try sendText(marker, from: client, to: serverAddress, port: 6000))
            #expect(receiver.waitForExit(timeout: 5))
            #expect(try String(contentsOfFile: dir.path + "/marker.out", encoding: .utf8) == marker)

            try TestFiles.makeRandom(at: dir.path + "/up", megabytes: 2)
            let report = try transferFile(
                dir.path + "/up", from: client, to: serverAddress, port: 6001, receiver: server,
                into: dir.path + "/up.received")
            #expect(report.senderSucceeded && report.bytesReceived == 2 << 20)
            #expect(try TestFiles.sha256(of: dir.path + "/up") == TestFiles.sha256(of: dir.path + "/up.received"))

            try sendUDPDatagram([4, 0, 0, 0, 0xde, 0xad], from: client, to: serverAddress, port: 6002)
            let result = try capture.stop()
            #expect(result.rawBytesContain(Array(marker.utf8)))
            #expect(result.frames.count == result.listing.count)
            // Veth offloads hand tcpdump segments of up to 64 KB, so 2 MB can be a few dozen frames.
            let tcp = result.frames.filter { $0.kind == .ipv4 && $0.ipProtocol == 6 }
            #expect(result.droppedByKernel == 0)
            #expect(tcp.reduce(0) { $0 + $1.data.count } > 2 << 20)
            let udp = result.frames.filter { $0.isUDP && $0.destinationPort == 6002 }
            #expect(udp.count == 1)
            #expect(udp.first?.udpPayload == [4, 0, 0, 0, 0xde, 0xad])
            #expect(udp.first?.source == topology.address("C", "c0"))
            #expect(udp.first?.destination == serverAddress)
            // IPv6 is off, so nothing but ARP and IPv4 is on the wire.
            #expect(result.frames.allSatisfy { $0.kind == .arp || $0.kind == .ipv4 })
        }
    }
}

@Suite struct StatsLineTests {
    @Test func statsLineParsesIntoCountersWithDottedNames() throws {
        let stats = try #require(
            TunvpnStats(line: "stats: rx_packets=12 tx_packets=10 drop.replay=1 handshake.failed.unknownClientKey=0"))
        #expect(stats["rx_packets"] == 12)
        #expect(stats["tx_packets"] == 10)
        #expect(stats["drop.replay"] == 1)
        #expect(stats["handshake.failed.unknownClientKey"] == 0)
        #expect(stats["drop.authentication"] == nil)
    }

    @Test func statsLineAfterALogPrefixParsesAndOtherLinesDoNot() {
        #expect(TunvpnStats(line: "2025-01-01T00:00:00 info tunvpn: stats: rx_bytes=5")?["rx_bytes"] == 5)
        #expect(TunvpnStats(line: "handshake completed with AAAA= 10.8.0.2") == nil)
    }

    @Test func lastCompleteStatsLineOfALogIsFound() {
        let log = "stats: rx_packets=1\nhandshake completed\nstats: rx_packets=2\nstats: rx_pack"
        #expect(TunvpnStats.count(in: log) == 2)
        #expect(TunvpnStats.last(in: log)?["rx_packets"] == 2)
        #expect(TunvpnStats.last(in: "nothing here\n") == nil)
    }
}

/// The plan both the tests' `Topology` and `tunvpn demo` build their namespaces from (NamespaceLab).
@Suite struct LabPlanTests {
    let plan = LabPlan(
        prefix: "tvx-", hosts: ["A", "B"],
        links: [VethLink(.init("A", "a0", "10.1.0.1/24"), .init("B", "b0", "10.1.0.2/24"))])

    @Test func theCommandsMakeEachNamespaceThenTheLinksInsideThemOnly() {
        #expect(
            plan.commands == [
                ["ip", "netns", "add", "tvx-A"], ["ip", "-n", "tvx-A", "link", "set", "lo", "up"],
                ["ip", "netns", "exec", "tvx-A", "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
                ["ip", "netns", "exec", "tvx-A", "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"],
                ["ip", "netns", "add", "tvx-B"], ["ip", "-n", "tvx-B", "link", "set", "lo", "up"],
                ["ip", "netns", "exec", "tvx-B", "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
                ["ip", "netns", "exec", "tvx-B", "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"],
                ["ip", "-n", "tvx-A", "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", "tvx-B"],
                ["ip", "-n", "tvx-A", "address", "add", "10.1.0.1/24", "dev", "a0"], ["ip", "-n", "tvx-A", "link", "set", "a0", "up"],
                ["ip", "-n", "tvx-B", "address", "add", "10.1.0.2/24", "dev", "b0"], ["ip", "-n", "tvx-B", "link", "set", "b0", "up"],
            ])
    }

    @Test func ipv6StaysOnWhenAskedAndAddressesAreFoundByHostAndInterface() {
        var withIPv6 = plan
        withIPv6.enableIPv6 = true
        // IPv6 stays on; what is turned off is the noise and the wait: router solicitations, advertisements, DAD.
        let sysctls = withIPv6.sysctlCommands("A").map { $0.last ?? "" }
        #expect(
            sysctls == [
                "net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
                "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
            ])
        #expect(withIPv6.commands.allSatisfy { !$0.joined(separator: " ").contains("disable_ipv6") })
        #expect(plan.address("B", "b0") == "10.1.0.2")
        #expect(plan.address("B", "a0") == nil)
        #expect(plan.address6("B", "b0") == nil)
    }

    @Test func aDualStackLinkAddsItsIPv6AddressesWithoutDuplicateAddressDetection() {
        let dual = LabPlan(
            prefix: "tvx-", hosts: ["A", "B"],
            links: [
                VethLink(.init("A", "a0", "10.1.0.1/24", "fd00:1::1/64"), .init("B", "b0", "10.1.0.2/24", "fd00:1::2/64")),
                VethLink(.init("A", "a1", ipv6: "fd00:2::1/64"), .init("B", "b1", ipv6: "fd00:2::2/64")),
            ], enableIPv6: true)
        #expect(
            dual.linkCommands(dual.links[0]) == [
                ["ip", "-n", "tvx-A", "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", "tvx-B"],
                ["ip", "-n", "tvx-A", "address", "add", "10.1.0.1/24", "dev", "a0"],
                ["ip", "-n", "tvx-A", "-6", "address", "add", "fd00:1::1/64", "dev", "a0", "nodad"],
                ["ip", "-n", "tvx-A", "link", "set", "a0", "up"],
                ["ip", "-n", "tvx-B", "address", "add", "10.1.0.2/24", "dev", "b0"],
                ["ip", "-n", "tvx-B", "-6", "address", "add", "fd00:1::2/64", "dev", "b0", "nodad"],
                ["ip", "-n", "tvx-B", "link", "set", "b0", "up"],
            ])
        // An IPv6-only end gets no IPv4 address command.
        #expect(dual.linkCommands(dual.links[1]).filter { $0.contains("address") }.count == 2)
        #expect(dual.address6("B", "b0") == "fd00:1::2")
        #expect(dual.address("B", "b1") == nil)
        #expect(dual.address6("B", "b1") == "fd00:2::2")
    }
}

/// The dnsmasq command line both the DNS end-to-end tests and `tunvpn demo` run (NamespaceLab).
@Suite struct DnsmasqPlanTests {
    @Test func dnsmasqAnswersOnlyItsRecordsOnOneAddressInTheForegroundAndLogsQueries() {
        let argv = DnsmasqPlan.arguments(
            address: "10.8.0.1", records: [("internet.tunvpn.test", ["198.18.0.2", "2001:db8:18::2"]), ("lan.test", ["10.1.0.9"])],
            queryLog: "/tmp/x/q.log", pidFile: "/tmp/x/d.pid")
        #expect(
            argv == [
                "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--listen-address=10.8.0.1", "--log-queries", "--log-facility=/tmp/x/q.log", "--pid-file=/tmp/x/d.pid",
                "--user=root", "--host-record=internet.tunvpn.test,198.18.0.2,2001:db8:18::2", "--host-record=lan.test,10.1.0.9",
            ])
    }
}

// End-to-end test of scale: one `tunvpn server` with 1,000 clients from `tunvpn-loadgen`, which
// performs real handshakes from 254 source addresses and a port per client, and a real `tunvpn client`
// whose tunnel keeps working with the 1,000 other peers present.
//
//     generator ns (G)                       server ns (S)                     client ns (C)
//     g0 10.60.k.2/24 ─────────────────────── s0 10.60.k.1/24
//        + 10.61.k.1–254/24 (loadgen sources)    route 10.61.k.0/24 via 10.60.k.2
//                                             s1 10.62.k.1/24 ──────────────── c0 10.62.k.2/24
//                                             tun0 10.8.0.1/16 ⇄ tunnel ⇄      tun0 10.8.0.2/16
//
// Why per-packet cost should not grow with the number of clients: the data path asks the core two
// questions per packet, and both are dictionary lookups. Sending (TUN → UDP), `TunnelState.route` finds
// the peer by the packet's destination in `peerByAddress` ([IPv4Address: Int]); receiving (UDP → TUN),
// `TunnelState.session(forIndex:)` finds the session by the frame's receiver index in `sessions`
// ([UInt32: (Session, peer)]), and `received` then indexes `peers` by that peer's slot. None of them walks
// the peer list, so 1 peer or 1,001 cost the same, apart from cache effects. (The timer thread does walk
// every peer, once per 100 ms tick.) This test checks what can be checked without timing on a shared
// machine: every handshake completes, the server counts them, stays up, and the real client's tunnel
// still carries traffic with 1,001 peers. bench/scale.sh measures TCP throughput with 1 peer and with
// 1,001 and prints the ratio.
//
// The server's CPU time (utime + stime from /proc/PID/stat) is read around the 1,000 handshakes and the
// rate per CPU-second printed, as bench/scale.sh does for bench/RESULTS.md.

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct ScaleEndToEndTests {
    static let clients = 1000

    @Test func aServerCompletesAThousandHandshakesAndItsDataPathKeepsWorking() throws {
        let topology = try Topology(hosts: ["G", "S", "C"]) { k in
            [
                VethLink(.init("G", "g0", "10.60.\(k).2/24"), .init("S", "s0", "10.60.\(k).1/24")),
                VethLink(.init("C", "c0", "10.62.\(k).2/24"), .init("S", "s1", "10.62.\(k).1/24")),
            ]
        }
        try TunnelLab(topology).use(alone: true) { lab in
            let k = topology.subnetIndex
            // 254 more addresses on the generator's veth, one `ip -batch` call.
            let batch = (1...254).map { "address add 10.61.\(k).\($0)/24 dev g0" }.joined(separator: "\n") + "\n"
            try batch.write(toFile: lab.path("sources.batch"), atomically: true, encoding: .utf8)
            try lab["G"].ip("-batch", lab.path("sources.batch"))
            try lab["S"].ip("route", "add", "10.61.\(k).0/24", "via", topology.address("G", "g0"))

            try lab.keygen("server")
            try lab.keygen("client")
            let server = try lab.startServer(extra: ["--allow-any-client"], logLevel: "info")
            let client = try lab.startClient(in: "C", endpoint: topology.address("S", "s1"), logLevel: "info")
            #expect(try lab.waitForTunnelUp(client) == "10.8.0.2")
            #expect(try lab["C"].waitForPing(TunnelLab.serverTunnelAddress))

            // 1. The data path with one peer.
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 20, interval: 0.05).status == 0)

            // 2. 1,000 clients at once (32 in flight), timing the server's CPU.
            let cpuBefore = try cpuSeconds(of: server.pid)
            let started = Date()
            let run = try lab["G"].exec(
                [
                    TestBinaries.loadgen, "--peer-key", lab.path("keys/server.pub"),
                    "--endpoint", "\(topology.address("S", "s0")):\(TunnelLab.port)", "--clients", "\(Self.clients)",
                    "--window", "32", "--sources", "10.61.\(k).0/24", "--timeout", "120",
                ], timeout: 180)
            let wall = Date().timeIntervalSince(started)
            let cpu = try cpuSeconds(of: server.pid) - cpuBefore
            print(run.stdout + run.stderr)
            #expect(run.status == 0, "tunvpn-loadgen failed: \(run.stdout) \(run.stderr)")
            let summary = try #require(LoadGenSummary(run.stdout), "no summary line: \(run.stdout)")
            #expect(summary["attempted"] == Double(Self.clients))
            #expect(summary["completed"] == Double(Self.clients))
            #expect(summary["failed"] == 0)

            // Every generated client, plus the real one, confirmed its session with a keepalive (the server
            // counts a handshake then); the last keepalives may still be in flight as the generator exits.
            var stats = try server.requestStats()
            let deadline = Date().addingTimeInterval(10)
            while (stats["handshakes.completed"] ?? 0) < UInt64(Self.clients + 1) && Date() < deadline {
                usleep(100_000)
                stats = try server.requestStats()
            }
            #expect((stats["handshakes.completed"] ?? 0) >= UInt64(Self.clients + 1))
            #expect(server.isRunning, "the server died under load: \(server.log.suffix(2000))")

            // 3. The data path with 1,001 peers.
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress, count: 20, interval: 0.05).status == 0)

            let completed = summary["completed"] ?? 0
            let elapsed = summary["elapsed"] ?? wall
            print(
                """
                scale: \(Int(completed)) handshakes in \(String(format: "%.2f", elapsed)) s \
                (\(String(format: "%.0f", completed / elapsed))/s wall); server CPU \(String(format: "%.2f", cpu)) s \
                (\(cpu > 0 ? String(format: "%.0f", completed / cpu) : "n/a") handshakes per CPU-second); \
                cookie replies \(Int(summary["cookie_replies"] ?? 0)), retransmissions \(Int(summary["retransmissions"] ?? 0))
                """)
        }
    }

    /// utime + stime of process `pid` in seconds (/proc/PID/stat fields 14 and 15, in clock ticks).
    func cpuSeconds(of pid: pid_t) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis start at 3.
        let after = try #require(stat.lastIndex(of: ")"))
        let fields = stat[stat.index(after: after)...].split(separator: " ")
        let utime = try #require(Double(fields[11]))
        let stime = try #require(Double(fields[12]))
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The `key=value` fields of tunvpn-loadgen's summary line (`elapsed=1.234s` reads as 1.234).
struct LoadGenSummary {
    var fields: [String: Double] = [:]

    init?(_ output: String) {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("loadgen:") }) else { return nil }
        for field in line.split(separator: " ").dropFirst() {
            let parts = field.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = parts[1].hasSuffix("s") ? parts[1].dropLast() : parts[1]
            if let number = Double(value) { fields[String(parts[0])] = number }
        }
    }

    subscript(key: String) -> Double? { fields[key] }
}
